//! A hand-written reader of the raw model for the messages real traffic consists of: well-formed
//! JSON whose strings have no escapes.
//!
//! serde's derived deserializers spend most of their time outside the JSON: visiting every field
//! through several layers of generic calls and moving large structs between them. This reader
//! walks the bytes once and fills the raw structs in place. It accepts a strict subset of what the
//! serde model (`raw`) accepts, and returns `None` for everything else (a string with an escape, a
//! number where an id is not a plain integer, a repeated field, nesting deeper than
//! `MAX_DEPTH`, an array that is not a notification frame, and every kind of error); `decode` then
//! parses the message with serde, which decides. So this reader never rejects anything and never
//! has to explain an error. Where it returns a value, it is the value serde returns: checked by
//! `tests/properties.rs` and the `reader_agrees` fuzz target.

use std::borrow::Cow;

use super::raw::{
    Flag, Id, Int, RawEndpoint, RawMessage, RawNode, RawOrigin, RawPark, RawParty, RawPeer,
    RawRecording, RawSipData, RawStatus, RawUiCallInfo, RawUiValue, Str, Text,
};

/// Deeper nesting is left to serde (which allows 128 levels in the fields it reads).
const MAX_DEPTH: u32 = 64;
/// The longest integer read as an id or a number: always fits an `i64`.
const MAX_INTEGER_DIGITS: usize = 18;

/// Reads a message, or returns `None` when serde must decide.
pub fn read(text: &str) -> Option<RawMessage<'_>> {
    let mut reader = Reader {
        text,
        bytes: text.as_bytes(),
        pos: 0,
        depth: 0,
    };
    let message = match reader.peek_value()? {
        b'{' => {
            let mut node = RawNode::default();
            reader.node(&mut node)?;
            RawMessage::Object(node)
        }
        b'[' => RawMessage::Frame(reader.frame()?),
        _ => return None,
    };
    reader.skip_whitespace();
    (reader.pos == reader.bytes.len()).then_some(message)
}

/// `Option<Option<T>>` results: the outer `None` means "leave it to serde", the inner one is a
/// JSON `null`.
type Nullable<T> = Option<Option<T>>;

struct Reader<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    depth: u32,
}

/// Reads an object whose `{` comes next: each listed key's value into its place, every other key's
/// value skipped. A listed key that appears twice is left to serde, which rejects it. A `value`
/// is returned by its reader; an `object` (or each object of an array of `objects`) is filled in
/// its place, so that large structs are not built aside and moved.
macro_rules! fields {
    (@read $r:ident, $place:expr, value $read:expr) => {
        $place = $read($r)?
    };
    (@read $r:ident, $place:expr, object $fill:expr) => {
        $r.object_into(&mut $place, $fill)?
    };
    (@read $r:ident, $place:expr, objects $fill:expr) => {
        $r.objects_into(&mut $place, $fill)?
    };
    ($reader:expr, { $($key:literal => $place:expr, $how:ident $read:expr;)+ }) => {{
        let mut seen = 0u32;
        $reader.object(|r, key| {
            let mut bit = 1u32;
            $(
                if key == $key {
                    if seen & bit != 0 {
                        return None;
                    }
                    seen |= bit;
                    fields!(@read r, $place, $how $read);
                    return Some(());
                }
                bit <<= 1;
            )+
            let _ = bit;
            r.skip()
        })
    }};
}

impl<'a> Reader<'a> {
    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    /// The first byte of the next value, after whitespace.
    fn peek_value(&mut self) -> Option<u8> {
        self.skip_whitespace();
        self.bytes.get(self.pos).copied()
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if self.bytes[self.pos..].starts_with(word) {
            self.pos += word.len();
            Some(())
        } else {
            None
        }
    }

    /// A `null`, if that is what comes next.
    fn null(&mut self) -> Option<bool> {
        if self.peek_value()? == b'n' {
            self.literal(b"null")?;
            Some(true)
        } else {
            Some(false)
        }
    }

    /// A string without escapes; `pos` is at its opening quote.
    fn string(&mut self) -> Option<&'a str> {
        let start = self.pos + 1;
        let end = start + string_end(&self.bytes[start..])?;
        self.pos = end + 1;
        // Both ends are ASCII quotes, so they are character boundaries of the UTF-8 text.
        self.text.get(start..end)
    }

    /// A non-negative integer of at most `MAX_INTEGER_DIGITS` digits, as written (JSON allows no
    /// leading zeros, so that is how serde formats it too).
    fn plain_integer(&mut self) -> Option<&'a str> {
        let start = self.pos;
        let digits = self.bytes[start..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits == 0 || digits > MAX_INTEGER_DIGITS || (digits > 1 && self.bytes[start] == b'0') {
            return None;
        }
        self.pos += digits;
        if let Some(b'.' | b'e' | b'E') = self.bytes.get(self.pos) {
            return None;
        }
        self.text.get(start..self.pos)
    }

    fn enter(&mut self) -> Option<()> {
        self.depth += 1;
        (self.depth <= MAX_DEPTH).then_some(())
    }

    /// Reads an object whose `{` comes next, handing each key to `field`, which must read its
    /// value.
    fn object(&mut self, mut field: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        if self.peek_value()? != b'{' {
            return None;
        }
        self.enter()?;
        self.pos += 1;
        if self.peek_value()? == b'}' {
            self.pos += 1;
        } else {
            loop {
                if self.peek_value()? != b'"' {
                    return None;
                }
                let key = self.string()?;
                if self.peek_value()? != b':' {
                    return None;
                }
                self.pos += 1;
                field(self, key)?;
                match self.peek_value()? {
                    b',' => self.pos += 1,
                    b'}' => {
                        self.pos += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        self.depth -= 1;
        Some(())
    }

    /// Reads an array whose `[` comes next, calling `element` for each element.
    fn array(&mut self, mut element: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        if self.peek_value()? != b'[' {
            return None;
        }
        self.enter()?;
        self.pos += 1;
        if self.peek_value()? == b']' {
            self.pos += 1;
        } else {
            loop {
                element(self)?;
                match self.peek_value()? {
                    b',' => self.pos += 1,
                    b']' => {
                        self.pos += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        self.depth -= 1;
        Some(())
    }

    /// Skips any JSON value, checking its syntax as serde does for the fields it ignores.
    fn skip(&mut self) -> Option<()> {
        match self.peek_value()? {
            b'"' => self.string().map(drop),
            b'{' => self.object(|r, _| r.skip()),
            b'[' => self.array(Self::skip),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    /// Skips a number: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
    fn number(&mut self) -> Option<()> {
        if self.bytes[self.pos] == b'-' {
            self.pos += 1;
        }
        match self.bytes.get(self.pos)? {
            b'0' => self.pos += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.bytes.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            self.bytes.get(self.pos)?.is_ascii_digit().then_some(())?;
            self.digits();
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.pos) {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.bytes.get(self.pos) {
                self.pos += 1;
            }
            self.bytes.get(self.pos)?.is_ascii_digit().then_some(())?;
            self.digits();
        }
        Some(())
    }

    fn digits(&mut self) {
        while self.bytes.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
    }

    // Values of the raw model's types.

    fn str(&mut self) -> Nullable<Str<'a>> {
        match self.peek_value()? {
            b'"' => Some(Some(Str(Cow::Borrowed(self.string()?)))),
            b'n' => self.literal(b"null").map(|()| None),
            _ => None,
        }
    }

    fn id(&mut self) -> Nullable<Id<'a>> {
        match self.peek_value()? {
            b'"' => Some(Some(Id(Cow::Borrowed(self.string()?)))),
            b'0'..=b'9' => Some(Some(Id(Cow::Owned(self.plain_integer()?.to_owned())))),
            b'n' => self.literal(b"null").map(|()| None),
            _ => None,
        }
    }

    fn text(&mut self) -> Nullable<Text<'a>> {
        self.id().map(|id| id.map(|Id(value)| Text(value)))
    }

    fn flag(&mut self) -> Nullable<Flag> {
        match self.peek_value()? {
            b't' => self.literal(b"true").map(|()| Some(Flag(true))),
            b'f' => self.literal(b"false").map(|()| Some(Flag(false))),
            b'"' => {
                let text = self.string()?;
                if text.eq_ignore_ascii_case("true") {
                    Some(Some(Flag(true)))
                } else if text.eq_ignore_ascii_case("false") {
                    Some(Some(Flag(false)))
                } else {
                    None
                }
            }
            b'n' => self.literal(b"null").map(|()| None),
            _ => None,
        }
    }

    fn int(&mut self) -> Nullable<Int> {
        match self.peek_value()? {
            b'0'..=b'9' => Some(Some(Int(self.plain_integer()?.parse().ok()?))),
            // What serde's `Int` does with a string.
            b'"' => Some(Some(Int(self.string()?.parse().ok()?))),
            b'n' => self.literal(b"null").map(|()| None),
            _ => None,
        }
    }

    /// An optional object, read by `fill` into a fresh `T` in `place`.
    fn object_into<T: Default>(
        &mut self,
        place: &mut Option<T>,
        fill: impl FnOnce(&mut Self, &mut T) -> Option<()>,
    ) -> Option<()> {
        if self.null()? {
            *place = None;
            return Some(());
        }
        fill(self, place.insert(T::default()))
    }

    /// An optional array of objects, each read in place by `fill`.
    fn objects_into<T: Default>(
        &mut self,
        place: &mut Option<Vec<T>>,
        mut fill: impl FnMut(&mut Self, &mut T) -> Option<()>,
    ) -> Option<()> {
        if self.null()? {
            *place = None;
            return Some(());
        }
        let items = place.insert(Vec::new());
        self.array(|r| {
            if items.capacity() == 0 {
                items.reserve_exact(1);
            }
            items.push(T::default());
            let item = items.last_mut()?;
            fill(r, item)
        })
    }

    // The raw model's objects, in the field order of `raw`.

    fn node(&mut self, n: &mut RawNode<'a>) -> Option<()> {
        // `body` and `pn_apns` nest a whole node, boxed.
        let boxed = |r: &mut Self, node: &mut Box<RawNode<'a>>| r.node(node);
        fields!(self, {
            "uuid" => n.uuid, value Self::id;
            "event" => n.event, value Self::str;
            "timestamp" => n.timestamp, value Self::str;
            "subscriptionId" => n.subscription_id, value Self::id;
            "ownerId" => n.owner_id, value Self::id;
            "body" => n.body, object boxed;
            "pn_apns" => n.pn_apns, object boxed;
            "sequence" => n.sequence, value Self::int;
            "sessionId" => n.session_id, value Self::id;
            "telephonySessionId" => n.telephony_session_id, value Self::id;
            "serverId" => n.server_id, value Self::id;
            "eventTime" => n.event_time, value Self::str;
            "origin" => n.origin, object Self::origin;
            "parties" => n.parties, objects Self::party;
            "accountId" => n.account_id, value Self::id;
            "extensionId" => n.extension_id, value Self::id;
        })
    }

    fn origin(&mut self, o: &mut RawOrigin<'a>) -> Option<()> {
        fields!(self, { "type" => o.kind, value Self::str; })
    }

    fn party(&mut self, p: &mut RawParty<'a>) -> Option<()> {
        fields!(self, {
            "id" => p.id, value Self::id;
            "accountId" => p.account_id, value Self::id;
            "extensionId" => p.extension_id, value Self::id;
            "direction" => p.direction, value Self::str;
            "queueCall" => p.queue_call, value Self::flag;
            "to" => p.to, object Self::endpoint;
            "from" => p.from, object Self::endpoint;
            "status" => p.status, object Self::status;
            "missedCall" => p.missed_call, value Self::flag;
            "standAlone" => p.stand_alone, value Self::flag;
            "muted" => p.muted, value Self::flag;
            "conferenceRole" => p.conference_role, value Self::str;
            "ringOutRole" => p.ring_out_role, value Self::str;
            "ringMeRole" => p.ring_me_role, value Self::str;
            "sipData" => p.sip_data, object Self::sip_data;
            "recordings" => p.recordings, objects Self::recording;
            "park" => p.park, object Self::park;
            "uiCallInfo" => p.ui_call_info, object Self::ui_call_info;
        })
    }

    fn endpoint(&mut self, e: &mut RawEndpoint<'a>) -> Option<()> {
        fields!(self, {
            "phoneNumber" => e.phone_number, value Self::text;
            "name" => e.name, value Self::text;
            "extensionId" => e.extension_id, value Self::id;
            "deviceId" => e.device_id, value Self::id;
        })
    }

    fn status(&mut self, s: &mut RawStatus<'a>) -> Option<()> {
        fields!(self, {
            "code" => s.code, value Self::str;
            "reason" => s.reason, value Self::str;
            "description" => s.description, value Self::text;
            "rcc" => s.rcc, value Self::flag;
            "peerId" => s.peer_id, object Self::peer;
        })
    }

    fn peer(&mut self, p: &mut RawPeer<'a>) -> Option<()> {
        fields!(self, {
            "sessionId" => p.session_id, value Self::id;
            "telephonySessionId" => p.telephony_session_id, value Self::id;
            "partyId" => p.party_id, value Self::id;
        })
    }

    fn sip_data(&mut self, s: &mut RawSipData<'a>) -> Option<()> {
        fields!(self, {
            "callId" => s.call_id, value Self::id;
            "toTag" => s.to_tag, value Self::id;
            "fromTag" => s.from_tag, value Self::id;
        })
    }

    fn recording(&mut self, rec: &mut RawRecording<'a>) -> Option<()> {
        fields!(self, {
            "id" => rec.id, value Self::id;
            "active" => rec.active, value Self::flag;
        })
    }

    fn park(&mut self, p: &mut RawPark<'a>) -> Option<()> {
        fields!(self, { "id" => p.id, value Self::id; })
    }

    fn ui_call_info(&mut self, u: &mut RawUiCallInfo<'a>) -> Option<()> {
        fields!(self, {
            "primary" => u.primary, object Self::ui_value;
            "additional" => u.additional, object Self::ui_value;
        })
    }

    fn ui_value(&mut self, v: &mut RawUiValue<'a>) -> Option<()> {
        fields!(self, {
            "type" => v.kind, value Self::str;
            "value" => v.value, value Self::text;
        })
    }

    /// A WebSocket frame `[meta, payload]` whose meta type is `ServerNotification`; any other
    /// array is left to serde, which says why it is not a frame.
    fn frame(&mut self) -> Option<RawNode<'a>> {
        let mut kind = None;
        let mut payload = None;
        let mut elements = 0;
        self.array(|r| {
            elements += 1;
            match elements {
                1 => r.object(|r, key| {
                    if key == "type" {
                        // serde keeps the last `type`; a value that is not a string is left to it.
                        if r.peek_value()? != b'"' {
                            return None;
                        }
                        kind = Some(r.string()?);
                        Some(())
                    } else {
                        r.skip()
                    }
                }),
                2 => {
                    let mut node = RawNode::default();
                    r.node(&mut node)?;
                    payload = Some(node);
                    Some(())
                }
                _ => None,
            }
        })?;
        if kind != Some("ServerNotification") {
            return None;
        }
        payload
    }
}

/// The offset of the closing quote of a string without escapes, or `None` if a backslash, a
/// control character or the end of the input comes first.
fn string_end(bytes: &[u8]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    let scanned = {
        let mut offset = 0;
        while let Some(chunk) = bytes.get(offset..offset + 16) {
            let chunk: &[u8; 16] = chunk.try_into().ok()?;
            if let Some(at) = sse2::first_special(chunk) {
                let at = offset + at;
                return (bytes[at] == b'"').then_some(at);
            }
            offset += 16;
        }
        offset
    };
    #[cfg(not(target_arch = "x86_64"))]
    let scanned = 0;
    for (i, &b) in bytes[scanned..].iter().enumerate() {
        match b {
            b'"' => return Some(scanned + i),
            b'\\' | 0..=0x1f => return None,
            _ => {}
        }
    }
    None
}

/// Sixteen bytes per step: most strings in a notification end within the first (SSE2 is part of
/// every x86-64 CPU).
#[cfg(target_arch = "x86_64")]
mod sse2 {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };

    /// The index of the first quote, backslash or control character in `chunk`.
    #[inline]
    pub(super) fn first_special(chunk: &[u8; 16]) -> Option<usize> {
        // SAFETY: `chunk` is 16 readable bytes, loaded unaligned; SSE2 is part of the x86-64
        // baseline, so every x86-64 CPU runs these instructions.
        let mask = unsafe {
            let x = _mm_loadu_si128(chunk.as_ptr().cast());
            let quote = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'"' as i8));
            let backslash = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'\\' as i8));
            // Unsigned x <= 0x1f exactly where min(x, 0x1f) == x.
            let control = _mm_cmpeq_epi8(_mm_min_epu8(x, _mm_set1_epi8(0x1f)), x);
            _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), control))
        };
        (mask != 0).then(|| mask.trailing_zeros() as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serde(text: &str) -> Option<RawMessage<'_>> {
        serde_json::from_str(text).ok()
    }

    #[test]
    fn string_end_finds_the_quote_at_every_offset() {
        for len in 0..40 {
            let mut s = "a".repeat(len);
            s.push('"');
            s.push_str("tail");
            assert_eq!(string_end(s.as_bytes()), Some(len), "len {len}");
        }
    }

    #[test]
    fn string_end_leaves_escapes_and_control_characters_to_serde() {
        for bad in ["\\", "\n", "\u{1}", "\t", "\u{1f}"] {
            for len in 0..20 {
                let s = format!("{}{bad}xx\"", "é".repeat(len));
                assert_eq!(string_end(s.as_bytes()), None, "{s:?}");
            }
            // At every offset, on both sides of each 16-byte step.
            for len in 0..40 {
                let s = format!("{}{bad}xx\"", "a".repeat(len));
                assert_eq!(string_end(s.as_bytes()), None, "{s:?}");
            }
        }
        // Bytes from 0x20 up, and every byte of multi-byte characters, are string content.
        let content: String = (0x20u8..0x7f)
            .map(char::from)
            .filter(|c| !matches!(c, '"' | '\\'))
            .chain("éü€😀".chars())
            .collect();
        let s = format!("{content}\"tail");
        assert_eq!(string_end(s.as_bytes()), Some(content.len()));
        assert_eq!(string_end(b"no closing quote"), None);
        assert_eq!(string_end("ünïcødé\"".as_bytes()), Some("ünïcødé".len()));
    }

    #[test]
    fn agrees_with_serde_on_the_shapes() {
        let cases = [
            r#"{"uuid":"1","body":{"telephonySessionId":"s-1","sequence":3,"parties":[{"id":"p","status":{"code":"Setup"},"missedCall":"True"}]}}"#,
            r#" [ {"type":"ServerNotification","x":[1,2.5e-3,{"y":null}]} , {"uuid":12,"body":{"parties":[]}} ] "#,
            r#"{"pn_apns":{"body":{"sessionId":7}},"uuid":"u"}"#,
            r#"{"telephonySessionId":"s","parties":null,"origin":{"type":"Call"},"unknown":{"a":[true,false,null,-0.0]}}"#,
        ];
        for case in cases {
            let fast = read(case).unwrap_or_else(|| panic!("read {case}"));
            assert_eq!(Some(fast), serde(case), "{case}");
        }
    }

    #[test]
    fn leaves_the_unusual_to_serde() {
        let cases = [
            r#"{"uuid":"a\"b"}"#,
            r#"{"uuid":"1","uuid":"2"}"#,
            r#"{"uuid":1.5}"#,
            r#"{"uuid":-1}"#,
            r#"{"sequence":01}"#,
            r#"{"a":1,}"#,
            r#"{"a":[1,]}"#,
            r#"{"a":1.}"#,
            r#"{"a":-}"#,
            r#"{"a":1e}"#,
            r#"{"a":tru}"#,
            r#"{"a":1} x"#,
            r#"[{"type":"Other"},{}]"#,
            r#"[{"type":"ServerNotification"},{},{}]"#,
            r#"[{"type":"ServerNotification"}]"#,
            r#"[]"#,
            r#"null"#,
            r#"{"missedCall":"yes"}"#,
            r#"{"parties":[null]}"#,
            r#"{"body":[]}"#,
            r#"{"uuid":"1234567890123456789012"}"#,
            r#"{"uuid":1234567890123456789012}"#,
        ];
        for case in cases {
            // A rejection by the reader is always safe; what matters is that it never accepts
            // what serde rejects, or reads something else.
            if let Some(fast) = read(case) {
                assert_eq!(Some(fast), serde(case), "{case}");
            }
        }
        assert!(read(r#"{"uuid":"a\"b"}"#).is_none());
        assert!(read(r#"{"uuid":1.5}"#).is_none());
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(read(&format!(r#"{{"x":{deep}}}"#)).is_none());
    }
}

//! What a dead letter carries: the original key, value, headers and timestamp of the rejected
//! message, plus headers that say why it was rejected and where it came from. A value too large
//! for the producer to send is cut to fit, and a header says how large it was: the whole message is
//! still in the input topic at the source partition and offset.

use std::collections::BTreeMap;

use rdkafka::message::{Header, Headers, OwnedHeaders};

use super::clients::OutgoingRecord;
use crate::core::budget::RECORD_OVERHEAD;
use crate::core::Rejection;

/// Header names on dead-letter records.
pub mod header {
    pub const STAGE: &str = "callstream.error.stage";
    pub const CODE: &str = "callstream.error.code";
    pub const REASON: &str = "callstream.error.reason";
    pub const PATH: &str = "callstream.error.path";
    pub const SOURCE_TOPIC: &str = "callstream.source.topic";
    pub const SOURCE_PARTITION: &str = "callstream.source.partition";
    pub const SOURCE_OFFSET: &str = "callstream.source.offset";
    /// The rejected message's timestamp (milliseconds since the epoch), when it had one. The dead
    /// letter's own timestamp is the same, except where the dead-letter topic would not take it
    /// (an old backlog against `message.timestamp.before.max.ms`) or stamps its append time.
    pub const SOURCE_TIMESTAMP: &str = "callstream.source.timestamp";
    pub const VERSION: &str = "callstream.version";
    /// Present when the value was cut to fit the producer's record size limit: the original
    /// value's length in bytes.
    pub const VALUE_TRUNCATED: &str = "callstream.value.truncated";
    /// Present when the original key and headers were left out, too large to fit: their size in
    /// bytes.
    pub const ORIGINAL_DROPPED: &str = "callstream.original.dropped";
    /// Every header callstream adds.
    pub const ALL: [&str; 11] = [
        STAGE,
        CODE,
        REASON,
        PATH,
        SOURCE_TOPIC,
        SOURCE_PARTITION,
        SOURCE_OFFSET,
        SOURCE_TIMESTAMP,
        VERSION,
        VALUE_TRUNCATED,
        ORIGINAL_DROPPED,
    ];
}

/// Where a rejected message was read.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

/// The longest reason or path a dead letter carries, in bytes. Both can quote the input (a whole
/// `event` value, say), which would otherwise make the headers alone too large to send.
pub const MAX_TEXT_BYTES: usize = 1024;

/// How far the reason and the path give way, under a record limit of a few kilobytes, before
/// the rejected message itself is cut: a dead letter that holds the whole message can be replayed.
const MIN_TEXT_BYTES: usize = 256;

/// How many bytes of the reason and of the path a dead letter carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextCaps {
    pub reason: usize,
    pub path: usize,
}

impl TextCaps {
    pub const FULL: TextCaps = TextCaps {
        reason: MAX_TEXT_BYTES,
        path: MAX_TEXT_BYTES,
    };
    const NONE: TextCaps = TextCaps { reason: 0, path: 0 };

    /// `room` bytes shared by texts of these lengths: each keeps what it has, up to
    /// `MAX_TEXT_BYTES`; short of room, the path gets up to half and the reason the rest.
    fn within(room: usize, reason_len: usize, path_len: usize) -> TextCaps {
        let reason_wanted = reason_len.min(MAX_TEXT_BYTES);
        let path_wanted = path_len.min(MAX_TEXT_BYTES);
        let path = path_wanted.min((room / 2).max(room.saturating_sub(reason_wanted)));
        TextCaps {
            reason: reason_wanted.min(room - path),
            path,
        }
    }
}

/// `text`, cut at a character boundary to at most `cap` bytes, marked with `…` when cut (empty
/// when not even that fits).
fn capped(text: &str, cap: usize) -> String {
    if text.len() <= cap {
        return text.to_owned();
    }
    let Some(mut end) = cap.checked_sub('…'.len_utf8()) else {
        return String::new();
    };
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The headers callstream adds to a dead letter, after the message's own headers (`STAGE`
/// first); `timestamp` is the rejected message's.
pub fn headers(
    rejection: &Rejection,
    source: Source<'_>,
    timestamp: Option<i64>,
    caps: TextCaps,
) -> Vec<(&'static str, String)> {
    let mut headers = vec![
        (header::STAGE, rejection.stage.as_str().to_owned()),
        (header::CODE, rejection.code.to_owned()),
        (header::REASON, capped(&rejection.reason, caps.reason)),
    ];
    if let Some(path) = &rejection.path {
        headers.push((header::PATH, capped(path, caps.path)));
    }
    headers.extend([
        (header::SOURCE_TOPIC, source.topic.to_owned()),
        (header::SOURCE_PARTITION, source.partition.to_string()),
        (header::SOURCE_OFFSET, source.offset.to_string()),
    ]);
    if let Some(timestamp) = timestamp {
        headers.push((header::SOURCE_TIMESTAMP, timestamp.to_string()));
    }
    headers.push((header::VERSION, env!("CARGO_PKG_VERSION").to_owned()));
    headers
}

/// Bytes of `n` as a zig-zag varint, the way Kafka writes a header's name and value lengths.
fn varint_len(n: usize) -> usize {
    let mut rest = (n as u64) << 1;
    let mut len = 1;
    while rest >= 0x80 {
        rest >>= 7;
        len += 1;
    }
    len
}

/// The bytes librdkafka counts for headers of these (name, value) lengths.
pub fn header_bytes(headers: impl IntoIterator<Item = (usize, usize)>) -> usize {
    headers
        .into_iter()
        .map(|(name, value)| varint_len(name) + name + varint_len(value) + value)
        .sum()
}

/// The bytes of a note header (`VALUE_TRUNCATED`, `ORIGINAL_DROPPED`) whose value is `number`.
fn note_bytes(name: &str, number: usize) -> usize {
    header_bytes([(name.len(), number.to_string().len())])
}

/// What of the rejected message a dead letter can carry within the producer's record size limit
/// (`message.max.bytes`: librdkafka refuses a larger record when it is sent, and refusing a dead
/// letter would stop the service on bad input).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fit {
    /// How much of the value is sent.
    pub value_len: usize,
    /// Set when the value is cut: its original length (`VALUE_TRUNCATED`).
    pub truncated_from: Option<usize>,
    /// Set when the original key and headers are left out, because they leave no room for the
    /// rest: their size in bytes (`ORIGINAL_DROPPED`).
    pub original_dropped: Option<usize>,
}

/// Fits a dead letter into `max_record_bytes`, counting as librdkafka does: the value is cut
/// first; if the original key and headers (`original_bytes`, as `header_bytes` counts them) leave
/// no room even for the note that says so, they are left out instead. `own_header_bytes` are the
/// headers callstream adds (`headers`), which always go: `dead_letter` cuts their texts to fit.
pub fn fit(
    value_len: usize,
    original_bytes: usize,
    own_header_bytes: usize,
    max_record_bytes: usize,
) -> Fit {
    let fixed = RECORD_OVERHEAD + own_header_bytes;
    if fixed + original_bytes + value_len <= max_record_bytes {
        return Fit {
            value_len,
            truncated_from: None,
            original_dropped: None,
        };
    }
    let truncated_note = note_bytes(header::VALUE_TRUNCATED, value_len);
    if let Some(room) = max_record_bytes.checked_sub(fixed + original_bytes + truncated_note) {
        return Fit {
            value_len: room,
            truncated_from: Some(value_len),
            original_dropped: None,
        };
    }
    let fixed = fixed + note_bytes(header::ORIGINAL_DROPPED, original_bytes);
    if fixed + value_len <= max_record_bytes {
        return Fit {
            value_len,
            truncated_from: None,
            original_dropped: Some(original_bytes),
        };
    }
    Fit {
        value_len: max_record_bytes.saturating_sub(fixed + truncated_note),
        truncated_from: Some(value_len),
        original_dropped: Some(original_bytes),
    }
}

/// A rejected message as read.
#[derive(Debug, Clone, Copy)]
pub struct Rejected<'m> {
    pub value: &'m [u8],
    pub key: Option<&'m [u8]>,
    pub headers: Option<&'m OwnedHeaders>,
    pub timestamp: Option<i64>,
}

/// The dead letter of `message` for `topic`: its key, value, headers and timestamp, plus
/// callstream's headers, fitted into `max_record_bytes` (`fit`), and how it was fitted.
pub fn dead_letter(
    topic: &str,
    message: Rejected<'_>,
    rejection: &Rejection,
    source: Source<'_>,
    max_record_bytes: usize,
) -> (OutgoingRecord, Fit) {
    let original_bytes = message.key.map_or(0, <[u8]>::len)
        + message.headers.map_or(0, |headers| {
            header_bytes(
                headers
                    .iter()
                    .map(|h| (h.key.len(), h.value.map_or(0, <[u8]>::len))),
            )
        });
    let own_bytes = |own: &[(&str, String)]| {
        header_bytes(own.iter().map(|(name, value)| (name.len(), value.len())))
    };
    // Besides callstream's headers, a dead letter may need both notes, and nothing else.
    let notes = note_bytes(header::VALUE_TRUNCATED, message.value.len())
        + note_bytes(header::ORIGINAL_DROPPED, original_bytes);
    // What callstream's headers take with both texts empty: a text of up to 8,191 bytes takes one
    // byte of length more than an empty one.
    let (reason_len, path_len) = (
        rejection.reason.len(),
        rejection.path.as_ref().map_or(0, String::len),
    );
    let texts = 1 + usize::from(rejection.path.is_some());
    let bare = own_bytes(&headers(
        rejection,
        source,
        message.timestamp,
        TextCaps::NONE,
    )) + texts;
    let room = max_record_bytes.saturating_sub(RECORD_OVERHEAD + bare);
    // Under a small record limit the texts give way first, down to MIN_TEXT_BYTES, so that the
    // whole message fits; failing that, they keep what the message's cut value and both notes
    // leave (refused, a dead letter would stop the service on bad input).
    let caps = match room.checked_sub(original_bytes + message.value.len()) {
        Some(left) if left >= reason_len.min(MIN_TEXT_BYTES) + path_len.min(MIN_TEXT_BYTES) => {
            TextCaps::within(left, reason_len, path_len)
        }
        _ => TextCaps::within(room.saturating_sub(notes), reason_len, path_len),
    };
    let own = headers(rejection, source, message.timestamp, caps);
    let fit = fit(
        message.value.len(),
        original_bytes,
        own_bytes(&own),
        max_record_bytes,
    );
    let (mut record_headers, key) = match fit.original_dropped {
        None => (
            message.headers.cloned().unwrap_or_default(),
            message.key.map(<[u8]>::to_vec),
        ),
        Some(_) => (OwnedHeaders::new(), None),
    };
    let notes = [
        (header::VALUE_TRUNCATED, fit.truncated_from),
        (header::ORIGINAL_DROPPED, fit.original_dropped),
    ]
    .into_iter()
    .filter_map(|(name, bytes)| Some((name, bytes?.to_string())));
    for (name, value) in own.into_iter().chain(notes) {
        record_headers = record_headers.insert(Header {
            key: name,
            value: Some(value.as_bytes()),
        });
    }
    let record = OutgoingRecord {
        topic: topic.to_owned(),
        key,
        value: message.value[..fit.value_len].to_vec(),
        headers: Some(record_headers),
        timestamp: message.timestamp,
    };
    (record, fit)
}

/// Which dead letters to send back to the input topic (`dead-letters replay`); an empty list
/// lets every stage or code through.
#[derive(Debug, Clone, Default)]
pub struct ReplayFilter {
    pub stages: Vec<String>,
    pub codes: Vec<String>,
}

/// What replaying one record of the dead-letter topic does with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay<'a> {
    /// Sent back to the input topic, with the message's own headers (those of callstream's names
    /// removed), and its original timestamp where the dead letter says (`SOURCE_TIMESTAMP`).
    Send {
        headers: Vec<(&'a str, Option<&'a [u8]>)>,
        timestamp: Option<i64>,
    },
    /// Its stage or code is not asked for.
    Filtered,
    /// The dead letter does not hold the whole message (a value cut to fit, or the key and headers
    /// left out): the message is in the input topic at `source`.
    Incomplete { source: String },
    /// Not a dead letter of callstream (no `callstream.error.code`).
    Foreign,
}

/// Decides what to do with a record of the dead-letter topic, from its headers.
pub fn replay<'a>(headers: &[(&'a str, Option<&'a [u8]>)], filter: &ReplayFilter) -> Replay<'a> {
    // callstream's headers come after the message's own, `STAGE` first: those from the last
    // `STAGE` on are callstream's, whatever names the message's own headers have.
    let Some(own_from) = headers.iter().rposition(|(key, _)| *key == header::STAGE) else {
        return Replay::Foreign;
    };
    let (original, own) = headers.split_at(own_from);
    let text = |name: &str| {
        own.iter()
            .rev()
            .find(|(key, _)| *key == name)
            .and_then(|(_, value)| std::str::from_utf8((*value)?).ok())
    };
    let Some(code) = text(header::CODE) else {
        return Replay::Foreign;
    };
    let stage = text(header::STAGE).unwrap_or_default();
    let wanted = |list: &[String], value: &str| list.is_empty() || list.iter().any(|v| v == value);
    if !wanted(&filter.stages, stage) || !wanted(&filter.codes, code) {
        return Replay::Filtered;
    }
    if text(header::VALUE_TRUNCATED).is_some() || text(header::ORIGINAL_DROPPED).is_some() {
        let source = format!(
            "{}/{}/{}",
            text(header::SOURCE_TOPIC).unwrap_or("?"),
            text(header::SOURCE_PARTITION).unwrap_or("?"),
            text(header::SOURCE_OFFSET).unwrap_or("?")
        );
        return Replay::Incomplete { source };
    }
    Replay::Send {
        headers: original.to_vec(),
        // librdkafka takes 0 as "now", and Kafka has no times before the epoch.
        timestamp: text(header::SOURCE_TIMESTAMP)
            .and_then(|t| t.parse().ok())
            .filter(|&t: &i64| t > 0),
    }
}

/// The record timestamps a topic accepts on records stamped by their producer (milliseconds
/// before and after the broker's clock; `None`: no bound). A dead letter replayed with its
/// original time into an input topic that bounds them (an old backlog against
/// `message.timestamp.before.max.ms`) would be refused, and stop the replay there for good.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimestampWindow {
    pub before_ms: Option<i64>,
    pub after_ms: Option<i64>,
}

impl TimestampWindow {
    /// From a topic's configuration: `message.timestamp.before.max.ms` and `.after.max.ms` (Kafka
    /// 3.6 and later), else `message.timestamp.difference.max.ms` for both; no bounds for a topic
    /// that stamps records with their log append time.
    pub fn from_config(config: &BTreeMap<String, String>) -> TimestampWindow {
        if config
            .get("message.timestamp.type")
            .is_some_and(|t| t == "LogAppendTime")
        {
            return TimestampWindow::default();
        }
        let bound = |name: &str| {
            config
                .get(name)
                .or_else(|| config.get("message.timestamp.difference.max.ms"))
                .and_then(|v| v.trim().parse::<i64>().ok())
                .filter(|ms| (0..i64::MAX).contains(ms))
        };
        TimestampWindow {
            before_ms: bound("message.timestamp.before.max.ms"),
            after_ms: bound("message.timestamp.after.max.ms"),
        }
    }

    /// Whether a record stamped `timestamp`, sent at `now_ms` and appended within `margin_ms`
    /// (the producer's delivery time-out), is accepted.
    pub fn accepts(&self, timestamp: i64, now_ms: i64, margin_ms: i64) -> bool {
        let too_old = self.before_ms.is_some_and(|before| {
            timestamp < now_ms.saturating_add(margin_ms).saturating_sub(before)
        });
        let too_new = self
            .after_ms
            .is_some_and(|after| timestamp > now_ms.saturating_add(after));
        !(too_old || too_new)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rdkafka::config::ClientConfig;
    use rdkafka::producer::{BaseProducer, BaseRecord};

    use super::*;
    use crate::core::Stage;

    const LIMIT: usize = 2_000;

    fn rejection(reason: String) -> Rejection {
        Rejection::new(Stage::Envelope, "wrong_event", reason, Some("event".into()))
    }

    const SOURCE: Source<'static> = Source {
        topic: "in",
        partition: 0,
        offset: 7,
    };

    /// Whether librdkafka itself accepts `record` under `message.max.bytes = LIMIT`: it checks
    /// the size when the record is sent, before any broker is involved.
    fn librdkafka_accepts(record: &OutgoingRecord) -> bool {
        librdkafka_accepts_within(record, LIMIT)
    }

    fn librdkafka_accepts_within(record: &OutgoingRecord, limit: usize) -> bool {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:9")
            .set("message.max.bytes", limit.to_string())
            .set("message.timeout.ms", "1000")
            .create()
            .expect("producer");
        let mut base = BaseRecord::<[u8], [u8]>::to(&record.topic).payload(&record.value);
        if let Some(key) = &record.key {
            base = base.key(key);
        }
        if let Some(headers) = &record.headers {
            base = base.headers(headers.clone());
        }
        let accepted = producer.send(base).is_ok();
        producer.poll(Duration::ZERO);
        accepted
    }

    /// The value of a record's last header of this name, as text.
    fn header_text(record: &OutgoingRecord, name: &str) -> Option<String> {
        record
            .headers
            .iter()
            .flat_map(|h| h.iter())
            .filter(|h| h.key == name)
            .last()
            .and_then(|h| std::str::from_utf8(h.value?).ok())
            .map(str::to_owned)
    }

    fn upstream_headers(value_len: usize) -> OwnedHeaders {
        OwnedHeaders::new().insert(Header {
            key: "upstream",
            value: Some(&vec![b'h'; value_len][..]),
        })
    }

    #[test]
    fn a_dead_letter_that_fits_is_kept_whole() {
        let value = vec![b'x'; 300];
        let headers = upstream_headers(50);
        let message = Rejected {
            value: &value,
            key: Some(b"k"),
            headers: Some(&headers),
            timestamp: Some(5),
        };
        let (record, fit) = dead_letter("dlq", message, &rejection("r".into()), SOURCE, LIMIT);
        assert_eq!(fit.truncated_from, None);
        assert_eq!(fit.original_dropped, None);
        assert_eq!(record.value, value);
        assert_eq!(record.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(record.timestamp, Some(5));
        assert!(librdkafka_accepts(&record));
    }

    #[test]
    fn a_value_too_large_is_cut_exactly_to_what_librdkafka_accepts() {
        let value = vec![b'x'; 5_000];
        let headers = upstream_headers(50);
        let message = Rejected {
            value: &value,
            key: Some(b"key"),
            headers: Some(&headers),
            timestamp: None,
        };
        let (mut record, fit) = dead_letter("dlq", message, &rejection("r".into()), SOURCE, LIMIT);
        assert_eq!(fit.truncated_from, Some(5_000));
        assert_eq!(fit.original_dropped, None);
        assert!(value.starts_with(&record.value));
        let names: Vec<&str> = record
            .headers
            .iter()
            .flat_map(|h| h.iter())
            .map(|h| h.key)
            .collect();
        assert!(names.contains(&"upstream") && names.contains(&header::VALUE_TRUNCATED));
        assert!(librdkafka_accepts(&record), "the cut record is refused");
        // Not cut further than needed: one byte more is over the limit.
        record.value.push(b'x');
        assert!(
            !librdkafka_accepts(&record),
            "the value was cut more than needed"
        );
    }

    #[test]
    fn original_key_and_headers_too_large_are_left_out() {
        let headers = upstream_headers(5_000);
        let message = Rejected {
            value: b"not json",
            key: Some(b"key"),
            headers: Some(&headers),
            timestamp: None,
        };
        let (record, fit) = dead_letter("dlq", message, &rejection("r".into()), SOURCE, LIMIT);
        assert_eq!(fit.truncated_from, None);
        assert!(fit.original_dropped.is_some_and(|bytes| bytes > 5_000));
        assert_eq!(record.key, None);
        assert_eq!(record.value, b"not json");
        assert!(librdkafka_accepts(&record));
    }

    #[test]
    fn a_reason_quoting_a_huge_input_is_capped_and_the_record_still_fits() {
        // What the envelope says of an `event` it does not accept: the value, quoted.
        let event = "\u{80}".repeat(3_000);
        let reason = format!("event {event:?} is not a telephony-sessions event filter");
        let value = format!("{{\"event\":\"{event}\"}}").into_bytes();
        let message = Rejected {
            value: &value,
            key: None,
            headers: None,
            timestamp: None,
        };
        let (record, fit) = dead_letter("dlq", message, &rejection(reason), SOURCE, LIMIT);
        let reason = header_text(&record, header::REASON).expect("reason, still UTF-8");
        assert!(reason.len() <= MAX_TEXT_BYTES);
        assert!(reason.ends_with('…'));
        assert_eq!(fit.truncated_from, Some(value.len()));
        assert!(librdkafka_accepts(&record));
    }

    #[test]
    fn under_the_lowest_record_limit_a_dead_letter_still_fits() {
        // librdkafka's lowest `message.max.bytes`; the longest topic name Kafka allows; a long
        // reason and path, upstream headers and a value, each too large for the limit alone.
        const LOWEST: usize = 1_000;
        let topic = "t".repeat(249);
        let source = Source {
            topic: &topic,
            partition: i32::MAX,
            offset: i64::MAX,
        };
        let rejection = Rejection::new(
            Stage::Validate,
            "invalid_value",
            "é".repeat(3_000),
            Some("p".repeat(3_000)),
        );
        let value = vec![b'x'; 5_000];
        let headers = upstream_headers(5_000);
        let message = Rejected {
            value: &value,
            key: Some(b"key"),
            headers: Some(&headers),
            timestamp: Some(i64::MAX),
        };
        let (record, fit) = dead_letter("dlq", message, &rejection, source, LOWEST);
        assert!(librdkafka_accepts_within(&record, LOWEST));
        assert_eq!(fit.truncated_from, Some(5_000));
        assert!(fit.original_dropped.is_some());
        let text = |name| header_text(&record, name);
        // Cut, but still saying what and where.
        for name in [header::REASON, header::PATH] {
            let cut = text(name).expect("present");
            assert!(
                cut.len() > 100 && cut.len() < 500,
                "{name}: {} bytes",
                cut.len()
            );
            assert!(cut.ends_with('…'));
        }
        assert_eq!(text(header::SOURCE_TOPIC), Some(topic.clone()));
        // With a roomier limit, only MAX_TEXT_BYTES applies.
        let (roomy, _) = dead_letter("dlq", message, &rejection, source, LIMIT * 10);
        let reason = header_text(&roomy, header::REASON).expect("reason");
        assert!(reason.len() > MAX_TEXT_BYTES - 3 && reason.len() <= MAX_TEXT_BYTES);
    }

    #[test]
    fn varints_are_counted_as_kafka_writes_them() {
        // Zig-zag: 63 is 126, one byte; 64 is 128, two.
        assert_eq!(varint_len(0), 1);
        assert_eq!(varint_len(63), 1);
        assert_eq!(varint_len(64), 2);
        assert_eq!(varint_len(8_191), 2);
        assert_eq!(varint_len(8_192), 3);
    }

    #[test]
    fn names_the_error_and_the_source() {
        let rejection = Rejection::new(
            Stage::Validate,
            "missing_field",
            "required field body.parties is missing".into(),
            Some("body.parties".into()),
        );
        let h = headers(
            &rejection,
            Source {
                topic: "in",
                partition: 2,
                offset: 41,
            },
            Some(1_600_000_000_000),
            TextCaps::FULL,
        );
        let get = |name| h.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str());
        assert_eq!(get(header::STAGE), Some("validate"));
        assert_eq!(get(header::CODE), Some("missing_field"));
        assert_eq!(get(header::PATH), Some("body.parties"));
        assert_eq!(get(header::SOURCE_TOPIC), Some("in"));
        assert_eq!(get(header::SOURCE_PARTITION), Some("2"));
        assert_eq!(get(header::SOURCE_OFFSET), Some("41"));
        assert_eq!(get(header::SOURCE_TIMESTAMP), Some("1600000000000"));
        assert_eq!(get(header::VERSION), Some(env!("CARGO_PKG_VERSION")));
        let without = headers(&rejection, SOURCE, None, TextCaps::FULL);
        assert!(without.iter().all(|(n, _)| *n != header::SOURCE_TIMESTAMP));
    }

    fn letter_headers(
        extra: &[(&'static str, &'static str)],
    ) -> Vec<(&'static str, Option<&'static [u8]>)> {
        let mut headers: Vec<(&'static str, Option<&'static [u8]>)> = vec![
            ("trace-id", Some(b"abc".as_slice())),
            ("empty", None),
            (header::STAGE, Some(b"decode".as_slice())),
            (header::CODE, Some(b"wrong_type".as_slice())),
            (header::REASON, Some(b"why".as_slice())),
            (header::SOURCE_TOPIC, Some(b"raw".as_slice())),
            (header::SOURCE_PARTITION, Some(b"2".as_slice())),
            (header::SOURCE_OFFSET, Some(b"41".as_slice())),
        ];
        headers.extend(extra.iter().map(|(k, v)| (*k, Some(v.as_bytes()))));
        headers
    }

    #[test]
    fn a_replayed_dead_letter_keeps_the_messages_own_headers_only() {
        let mut letter = letter_headers(&[]);
        letter.insert(0, ("callstream.tenant", Some(b"t1".as_slice())));
        assert_eq!(
            replay(&letter, &ReplayFilter::default()),
            Replay::Send {
                headers: vec![
                    ("callstream.tenant", Some(b"t1".as_slice())),
                    ("trace-id", Some(b"abc".as_slice())),
                    ("empty", None)
                ],
                timestamp: None,
            }
        );
    }

    #[test]
    fn a_replayed_dead_letter_takes_its_original_timestamp_from_its_header() {
        let letter = letter_headers(&[(header::SOURCE_TIMESTAMP, "1600000000000")]);
        let Replay::Send { headers, timestamp } = replay(&letter, &ReplayFilter::default()) else {
            panic!("sent");
        };
        assert_eq!(timestamp, Some(1_600_000_000_000));
        assert!(headers.iter().all(|(n, _)| *n != header::SOURCE_TIMESTAMP));
        // Unreadable, it is left out: the dead letter's own create time applies.
        let letter = letter_headers(&[(header::SOURCE_TIMESTAMP, "yesterday")]);
        assert!(matches!(
            replay(&letter, &ReplayFilter::default()),
            Replay::Send {
                timestamp: None,
                ..
            }
        ));
    }

    #[test]
    fn only_callstreams_own_headers_say_where_and_when() {
        // A message that carried callstream's names itself (forwarded from another dead-letter
        // topic), in a dead letter without a timestamp of callstream's.
        let mut letter = letter_headers(&[]);
        letter.insert(
            0,
            (header::SOURCE_TIMESTAMP, Some(b"1500000000000".as_slice())),
        );
        letter.insert(0, (header::VALUE_TRUNCATED, Some(b"99".as_slice())));
        assert_eq!(
            replay(&letter, &ReplayFilter::default()),
            Replay::Send {
                headers: vec![
                    (header::VALUE_TRUNCATED, Some(b"99".as_slice())),
                    (header::SOURCE_TIMESTAMP, Some(b"1500000000000".as_slice())),
                    ("trace-id", Some(b"abc".as_slice())),
                    ("empty", None)
                ],
                timestamp: None,
            }
        );
        // Times librdkafka would take as "now", or that Kafka does not have, are left out.
        for time in ["0", "-1", "+", ""] {
            let letter = letter_headers(&[(header::SOURCE_TIMESTAMP, time)]);
            assert!(
                matches!(
                    replay(&letter, &ReplayFilter::default()),
                    Replay::Send {
                        timestamp: None,
                        ..
                    }
                ),
                "{time:?}"
            );
        }
    }

    #[test]
    fn a_topics_timestamp_window_comes_from_its_configuration() {
        let config = |entries: &[(&str, &str)]| -> BTreeMap<String, String> {
            entries
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let max = i64::MAX.to_string();
        // Kafka 4's defaults: no bound before, one hour after.
        let window = TimestampWindow::from_config(&config(&[
            ("message.timestamp.type", "CreateTime"),
            ("message.timestamp.before.max.ms", &max),
            ("message.timestamp.after.max.ms", "3600000"),
        ]));
        assert_eq!(
            window,
            TimestampWindow {
                before_ms: None,
                after_ms: Some(3_600_000)
            }
        );
        // Brokers before 3.6 bound both sides with one setting.
        let window = TimestampWindow::from_config(&config(&[(
            "message.timestamp.difference.max.ms",
            "86400000",
        )]));
        assert_eq!(window.before_ms, Some(86_400_000));
        assert_eq!(window.after_ms, Some(86_400_000));
        // A topic that stamps its own times takes any.
        let window = TimestampWindow::from_config(&config(&[
            ("message.timestamp.type", "LogAppendTime"),
            ("message.timestamp.before.max.ms", "1000"),
        ]));
        assert_eq!(window, TimestampWindow::default());
    }

    #[test]
    fn a_time_outside_the_window_is_refused_counting_the_delivery_time() {
        let hour = 3_600_000;
        let now = 1_800_000_000_000;
        let window = TimestampWindow {
            before_ms: Some(hour),
            after_ms: Some(hour),
        };
        let margin = 120_000;
        assert!(window.accepts(now, now, margin));
        assert!(window.accepts(now - hour + margin, now, margin));
        // Accepted now, but maybe not when it is appended.
        assert!(!window.accepts(now - hour + margin - 1, now, margin));
        assert!(!window.accepts(1_600_000_000_000, now, margin));
        assert!(window.accepts(now + hour, now, margin));
        assert!(!window.accepts(now + hour + 1, now, margin));
        assert!(TimestampWindow::default().accepts(1, now, margin));
        assert!(TimestampWindow::default().accepts(i64::MAX, now, margin));
    }

    #[test]
    fn the_texts_share_what_room_there_is() {
        let within = TextCaps::within;
        let caps = |reason, path| TextCaps { reason, path };
        // Room enough: each keeps what it has, up to MAX_TEXT_BYTES.
        assert_eq!(within(5_000, 30, 10), caps(30, 10));
        assert_eq!(within(5_000, 3_000, 3_000), TextCaps::FULL);
        // Short of room: a short path keeps all of it, a long one half the room.
        assert_eq!(within(400, 3_000, 5), caps(395, 5));
        assert_eq!(within(400, 3_000, 3_000), caps(200, 200));
        assert_eq!(within(400, 50, 3_000), caps(50, 350));
        assert_eq!(within(0, 50, 50), caps(0, 0));
    }

    #[test]
    fn under_a_small_limit_the_reason_gives_way_before_the_message() {
        // 300 bytes of value and 200 of upstream headers, with a reason of 800 bytes: under a
        // limit of 1,239 bytes, the reason is cut so that the whole message can be replayed.
        const SMALL: usize = 1_239;
        let value = vec![b'x'; 300];
        let headers = upstream_headers(190);
        let message = Rejected {
            value: &value,
            key: Some(b"key"),
            headers: Some(&headers),
            timestamp: Some(1_600_000_000_000),
        };
        let rejection = Rejection::new(Stage::Envelope, "wrong_event", "r".repeat(800), None);
        let (record, fit) = dead_letter("dlq", message, &rejection, SOURCE, SMALL);
        assert_eq!(fit.truncated_from, None);
        assert_eq!(fit.original_dropped, None);
        assert_eq!(record.value, value);
        let reason = header_text(&record, header::REASON).expect("reason");
        assert!(reason.len() >= MIN_TEXT_BYTES && reason.len() < 800);
        assert!(librdkafka_accepts_within(&record, SMALL));
    }

    #[test]
    fn the_last_header_of_a_name_is_callstreams() {
        // A message that carried a code of its own (forwarded from another dead-letter topic).
        let mut letter = letter_headers(&[]);
        letter.insert(0, (header::CODE, Some(b"syntax".as_slice())));
        let only_wrong_type = ReplayFilter {
            codes: vec!["wrong_type".into()],
            ..ReplayFilter::default()
        };
        assert_eq!(
            replay(&letter, &only_wrong_type),
            Replay::Send {
                headers: vec![
                    (header::CODE, Some(b"syntax".as_slice())),
                    ("trace-id", Some(b"abc".as_slice())),
                    ("empty", None)
                ],
                timestamp: None,
            }
        );
    }

    #[test]
    fn replay_filters_by_stage_and_code() {
        let letter = letter_headers(&[]);
        let filter = |stages: &[&str], codes: &[&str]| ReplayFilter {
            stages: stages.iter().map(|s| s.to_string()).collect(),
            codes: codes.iter().map(|s| s.to_string()).collect(),
        };
        assert!(matches!(
            replay(&letter, &filter(&["decode"], &[])),
            Replay::Send { .. }
        ));
        assert!(matches!(
            replay(&letter, &filter(&[], &["syntax", "wrong_type"])),
            Replay::Send { .. }
        ));
        assert_eq!(
            replay(&letter, &filter(&["validate"], &[])),
            Replay::Filtered
        );
        assert_eq!(
            replay(&letter, &filter(&["decode"], &["syntax"])),
            Replay::Filtered
        );
    }

    #[test]
    fn an_incomplete_dead_letter_is_not_replayed_and_says_where_the_message_is() {
        for extra in [
            (header::VALUE_TRUNCATED, "5000000"),
            (header::ORIGINAL_DROPPED, "2000000"),
        ] {
            assert_eq!(
                replay(&letter_headers(&[extra]), &ReplayFilter::default()),
                Replay::Incomplete {
                    source: "raw/2/41".into()
                }
            );
        }
    }

    #[test]
    fn a_record_that_is_not_a_dead_letter_is_not_replayed() {
        let headers: Vec<(&str, Option<&[u8]>)> = vec![("trace-id", Some(b"abc".as_slice()))];
        assert_eq!(replay(&headers, &ReplayFilter::default()), Replay::Foreign);
    }
}

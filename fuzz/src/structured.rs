//! Structurally valid notification JSON from fuzz input, so that the fuzzer spends its time in
//! validate, normalize, split and classify rather than in the JSON parser.
//!
//! An input is either
//!
//! - `<JSON seed> 0x00 <choices>`: the seed (a line of `samples/demo.jsonl`, generated traffic...)
//!   is parsed and a few of its fields are replaced, removed, added or retyped as `<choices>`
//!   says (`mutate`); or
//! - `<choices>` alone (no NUL, or a seed that is not JSON): a notification is built from scratch
//!   (`generate`) in one of the four input shapes. While every choice is one the README says is
//!   accepted, the builder also records what the core must make of it (`Expect`): accepted, one
//!   party record per party with its id, key, status symbol and times, and the missed, recorded
//!   and transfer records the classification rules call for.

use arbitrary::Unstructured;
use serde_json::{json, Map, Value};

/// Status codes as the contract lists them, with the alias the parser also accepts.
const STATUS: &[(&str, &str)] = &[
    ("Setup", "Setup"),
    ("Proceeding", "Proceeding"),
    ("Answered", "Answered"),
    ("Disconnected", "Disconnected"),
    ("Gone", "Gone"),
    ("Parked", "Parked"),
    ("Hold", "Hold"),
    ("VoiceMail", "VoiceMail"),
    ("Voicemail", "VoiceMail"),
    ("FaxReceive", "FaxReceive"),
    ("VoiceMailScreening", "VoiceMailScreening"),
    ("VMScreening", "VoiceMailScreening"),
    ("Tds", "Tds"),
];

const REASONS: &[&str] = &[
    "Pickup",
    "Supervising",
    "TakeOver",
    "Timeout",
    "BlindTransfer",
    "RccTransfer",
    "AttendedTransfer",
    "CallerInputRedirect",
    "CallFlip",
    "ParkLocation",
    "DtmfTransfer",
    "AgentAnswered",
    "Rejected",
    "NoAnswer",
    "CallRedirected",
    "Conference",
    "Undefined",
    "Voicemail",
    "CallSwitch",
];

const TRANSFER_REASONS: &[&str] = &[
    "BlindTransfer",
    "AttendedTransfer",
    "RccTransfer",
    "DtmfTransfer",
];

const ORIGINS: &[&str] = &[
    "Call",
    "RingOut",
    "RingMe",
    "Conference",
    "GreetingsRecording",
    "VerificationCall",
    "TestCall",
];

const PHONE_NUMBERS: &[&str] = &[
    "+17205551234",
    "+1",
    "+123456789012345",
    "+1234567890123456",
    "101",
    "11104",
    "12345678",
    "123456789",
    "7205551234",
    "anonymous",
    "+",
    "",
    "#[email protected]:5060",
    "+1720555123x",
];

const GOOD_EVENTS: &[&str] = &[
    "/restapi/v1.0/account/400144452008/extension/400144455008/telephony/sessions",
    "/restapi/v1.0/account/~/extension/~/telephony/sessions",
    "/restapi/v1.0/account/~/telephony/sessions",
    "/restapi/v1.0/account/400144452008/telephony/sessions?statusCode=Disconnected",
    "/telephony/sessions",
];

const BAD_EVENTS: &[&str] = &[
    "/restapi/v1.0/account/~/extension/~/presence",
    "/restapi/v1.0/account/~/telephony/sessions/",
    "/restapi/v1.0/account/~/telephony/sessionsX",
    "",
];

/// Every field name of the input model, for mutations that add one where it may not belong.
const KEYS: &[&str] = &[
    "uuid",
    "event",
    "timestamp",
    "subscriptionId",
    "ownerId",
    "body",
    "pn_apns",
    "sequence",
    "sessionId",
    "telephonySessionId",
    "serverId",
    "eventTime",
    "origin",
    "parties",
    "accountId",
    "extensionId",
    "id",
    "direction",
    "queueCall",
    "to",
    "from",
    "status",
    "missedCall",
    "standAlone",
    "muted",
    "conferenceRole",
    "ringOutRole",
    "ringMeRole",
    "sipData",
    "recordings",
    "park",
    "uiCallInfo",
    "phoneNumber",
    "name",
    "deviceId",
    "code",
    "reason",
    "description",
    "rcc",
    "peerId",
    "partyId",
    "callId",
    "toTag",
    "fromTag",
    "active",
    "primary",
    "additional",
    "type",
    "value",
];

/// What the core must make of a generated notification, while `valid` holds.
#[derive(Debug, Default)]
pub struct Expect {
    /// Every choice so far is one the README says is accepted.
    pub valid: bool,
    pub shape: &'static str,
    pub telephony_session_id: String,
    pub sequence: Option<i64>,
    pub event_time: Option<i64>,
    pub sent_at: Option<i64>,
    pub parties: Vec<PartyExpect>,
}

#[derive(Debug, Default, Clone)]
pub struct PartyExpect {
    pub id: String,
    pub extension_id: Option<String>,
    pub status_raw: String,
    pub status_symbol: &'static str,
    pub missed: Option<bool>,
    pub reached_voicemail: bool,
    pub recordings: Vec<(String, Option<bool>)>,
    pub transfer: Option<&'static str>,
}

/// The message to process, and what to expect of it when it was generated from scratch.
pub struct Case {
    pub message: Value,
    pub expect: Option<Expect>,
}

/// Decodes a fuzz input into a case (see the module documentation).
pub fn case(data: &[u8]) -> Case {
    if let Some(nul) = data.iter().position(|&b| b == 0) {
        if let Ok(seed) = serde_json::from_slice::<Value>(&data[..nul]) {
            if seed.is_object() || seed.is_array() {
                let mut u = Unstructured::new(&data[nul + 1..]);
                return Case {
                    message: mutate(seed, &mut u),
                    expect: None,
                };
            }
        }
    }
    let mut g = Gen {
        u: Unstructured::new(data),
        expect: Expect {
            valid: true,
            ..Expect::default()
        },
        lenient: false,
    };
    g.lenient = g.byte() % 4 == 3;
    let message = g.notification();
    Case {
        message,
        expect: Some(g.expect),
    }
}

struct Gen<'a> {
    u: Unstructured<'a>,
    expect: Expect,
    /// Whether the builder may choose values the core must refuse (one input in four), so that
    /// most generated notifications are accepted and checked against `Expect`.
    lenient: bool,
}

impl Gen<'_> {
    fn byte(&mut self) -> u8 {
        self.u.arbitrary().unwrap_or(0)
    }

    /// True one time in `n` (never once the input is used up, so short inputs stay valid).
    fn one_in(&mut self, n: u8) -> bool {
        !self.u.is_empty() && self.byte() % n == n - 1
    }

    fn below(&mut self, n: usize) -> usize {
        self.u.choose_index(n).unwrap_or(0)
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())].clone()
    }

    fn invalid(&mut self) {
        self.expect.valid = false;
    }

    /// A short string chosen by the fuzzer (any Unicode).
    fn fuzz_string(&mut self) -> String {
        let s: &str = self.u.arbitrary().unwrap_or("");
        s.chars().take(40).collect()
    }

    /// The same text in another case: the parsers are case-insensitive.
    fn recase(&mut self, s: &str) -> String {
        match self.below(4) {
            1 => s.to_ascii_lowercase(),
            2 => s.to_ascii_uppercase(),
            _ => s.to_owned(),
        }
    }

    /// A JSON value of a type no field of the model takes here.
    fn wrong_type(&mut self, not_string: bool) -> Value {
        match self.below(5) {
            0 => json!(1.5),
            1 => json!(true),
            2 => json!([]),
            3 => json!({}),
            _ if not_string => json!(-0.0),
            _ => json!("x"),
        }
    }

    /// An id: a string or an integer, kept as a string. Returns the JSON and the id the core
    /// must report (`None` when absent or null).
    fn id(&mut self, required: bool, hint: &str) -> (Option<Value>, Option<String>) {
        let choice = if self.u.is_empty() {
            0
        } else {
            self.byte() % 16
        };
        let (value, id) = match choice {
            0..=7 => {
                let n: u16 = self.u.arbitrary().unwrap_or(1);
                let s = format!("{hint}-{n}");
                (Some(Value::from(s.clone())), Some(s))
            }
            8 => {
                let n: u64 = self.u.arbitrary().unwrap_or(0);
                (Some(Value::from(n)), Some(n.to_string()))
            }
            9 => {
                let n: i64 = self.u.arbitrary().unwrap_or(0);
                (Some(Value::from(n)), Some(n.to_string()))
            }
            10 => {
                let mut s = self.fuzz_string();
                if required && !self.lenient && s.trim().is_empty() {
                    s = format!("{hint}-fuzz");
                }
                (Some(Value::from(s.clone())), Some(s))
            }
            11 if !required => (None, None),
            12 if !required => (Some(Value::Null), None),
            13 if !required || self.lenient => {
                let s = self.pick(&["", " ", "\t\n"]).to_owned();
                (Some(Value::from(s.clone())), Some(s))
            }
            14 if self.lenient => {
                self.invalid();
                (Some(self.wrong_type(true)), None)
            }
            _ => {
                let n: u32 = self.u.arbitrary().unwrap_or(7);
                let s = n.to_string();
                (Some(Value::from(s.clone())), Some(s))
            }
        };
        if required && id.as_deref().is_none_or(|s| s.trim().is_empty()) {
            self.invalid();
        }
        (value, id)
    }

    /// A string field: one of `known` (any case), a fuzz string, absent, null, or a wrong type.
    /// Text meant for people (`raw::Text`): as `text`, or an integer, kept as its digits.
    fn display_text(&mut self, known: &[&str]) -> (Option<Value>, Option<String>) {
        if self.one_in(8) {
            let n: u64 = self.u.arbitrary().unwrap_or(11_104);
            return (Some(Value::from(n)), Some(n.to_string()));
        }
        self.text(known)
    }

    fn text(&mut self, known: &[&str]) -> (Option<Value>, Option<String>) {
        let choice = if self.u.is_empty() {
            0
        } else {
            self.byte() % 12
        };
        match choice {
            0..=6 if !known.is_empty() => {
                let pick = self.pick(known);
                let s = self.recase(pick);
                (Some(Value::from(s.clone())), Some(s))
            }
            7 | 8 => {
                let s = self.fuzz_string();
                (Some(Value::from(s.clone())), Some(s))
            }
            9 => (Some(Value::Null), None),
            10 if self.lenient => {
                self.invalid();
                (Some(self.wrong_type(true)), None)
            }
            _ => (None, None),
        }
    }

    /// A boolean, or `"True"`/`"False"` in any case; or a value that is not one.
    fn flag(&mut self) -> (Option<Value>, Option<bool>) {
        let b: bool = self.u.arbitrary().unwrap_or(false);
        let choice = if self.u.is_empty() {
            4
        } else {
            self.byte() % 10
        };
        match choice {
            0..=3 => (Some(Value::from(b)), Some(b)),
            4 => (None, None),
            5 => (Some(Value::Null), None),
            6 | 7 => {
                let s = self.recase(if b { "True" } else { "False" });
                (Some(Value::from(s)), Some(b))
            }
            8 if self.lenient => {
                self.invalid();
                (
                    Some(self.pick(&[json!("yes"), json!(1), json!(0), json!("")])),
                    None,
                )
            }
            9 if self.lenient => {
                self.invalid();
                (Some(self.wrong_type(false)), None)
            }
            _ => (Some(Value::from(b)), Some(b)),
        }
    }

    /// An ISO 8601 date-time and its epoch milliseconds, computed here independently of the core;
    /// or something that is not one.
    fn time(&mut self) -> (Option<Value>, Option<i64>) {
        let choice = if self.u.is_empty() {
            9
        } else {
            self.byte() % 12
        };
        match choice {
            0..=7 => {
                let year = 1970 + self.below(130) as i64;
                let month = 1 + self.below(12) as i64;
                let day = 1 + self.below(days_in_month(year, month) as usize) as i64;
                let hour = self.below(24) as i64;
                let minute = self.below(60) as i64;
                let second = self.below(61) as i64;
                let digits = self.below(10);
                let fraction: String = (0..digits)
                    .map(|_| char::from(b'0' + self.below(10) as u8))
                    .collect();
                let millis = format!("{fraction:0<3}")[..3].parse::<i64>().unwrap();
                let separator = self.pick(&['T', 't', ' ']);
                let (zone, offset) = match self.below(4) {
                    0 => ("Z".to_owned(), 0),
                    1 => ("z".to_owned(), 0),
                    _ => {
                        let h = self.below(24) as i64;
                        let m = self.pick(&[0i64, 30, 45]);
                        let sign = if self.u.arbitrary().unwrap_or(false) {
                            1
                        } else {
                            -1
                        };
                        let s = if sign > 0 { '+' } else { '-' };
                        // ISO 8601's three forms of an offset.
                        let text = match self.below(3) {
                            0 => format!("{s}{h:02}:{m:02}"),
                            1 => format!("{s}{h:02}{m:02}"),
                            _ if m == 0 => format!("{s}{h:02}"),
                            _ => format!("{s}{h:02}:{m:02}"),
                        };
                        (text, sign * (h * 60 + m))
                    }
                };
                let dot = if digits > 0 { "." } else { "" };
                let text = format!(
                    "{year:04}-{month:02}-{day:02}{separator}{hour:02}:{minute:02}:{second:02}\
                     {dot}{fraction}{zone}"
                );
                let ms =
                    (epoch_days(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second
                        - offset * 60)
                        * 1_000
                        + millis;
                (Some(Value::from(text)), Some(ms))
            }
            8 if self.lenient => {
                self.invalid();
                let bad = self.pick(&[
                    "yesterday",
                    "2018-06-05",
                    "2018-13-05T00:14:50Z",
                    "2023-02-29T00:00:00Z",
                    "2018-06-05T00:14:50",
                    "2018-06-05T00:14:50.Z",
                    "2018-06-05T24:00:00Z",
                    "2018-06-05T00:14:50Zjunk",
                    "2018-06-05T00:14:50+020",
                    "",
                ]);
                (Some(Value::from(bad)), None)
            }
            10 => (Some(Value::Null), None),
            11 if self.lenient => {
                self.invalid();
                (Some(self.wrong_type(true)), None)
            }
            _ => (None, None),
        }
    }

    /// An optional object field; now and then a value of another type, which is refused.
    fn object(&mut self, build: impl FnOnce(&mut Self) -> Map<String, Value>) -> Option<Value> {
        let choice = if self.u.is_empty() {
            0
        } else {
            self.byte() % 8
        };
        match choice {
            0 => None,
            1 => Some(Value::Null),
            2 if self.lenient => {
                self.invalid();
                Some(self.pick(&[json!("x"), json!([]), json!([{}]), json!(3)]))
            }
            _ => Some(Value::Object(build(self))),
        }
    }

    fn notification(&mut self) -> Value {
        let body = self.body();
        let shape = self.below(6);
        let envelope = |g: &mut Self| {
            let mut m = Map::new();
            put(&mut m, "uuid", g.id(false, "uuid").0);
            if g.one_in(4) {
                // An event filter must be a telephony-sessions one.
                let event = if g.lenient && g.one_in(3) {
                    g.invalid();
                    g.pick(BAD_EVENTS)
                } else {
                    g.pick(GOOD_EVENTS)
                };
                m.insert("event".into(), Value::from(event));
            } else {
                m.insert("event".into(), Value::from(GOOD_EVENTS[0]));
            }
            let (timestamp, sent_at) = g.time();
            put(&mut m, "timestamp", timestamp);
            g.expect.sent_at = sent_at;
            put(&mut m, "subscriptionId", g.id(false, "sub").0);
            put(&mut m, "ownerId", g.id(false, "owner").0);
            m
        };
        match shape {
            0 | 1 => {
                self.expect.shape = "Webhook";
                let mut m = envelope(self);
                m.insert("body".into(), body);
                Value::Object(m)
            }
            2 => {
                self.expect.shape = "ApplePush";
                let mut inner = envelope(self);
                inner.insert("aps".into(), json!({"content-available": 1}));
                inner.insert("body".into(), body);
                let mut outer = Map::new();
                put(&mut outer, "uuid", self.id(false, "uuid").0);
                put(&mut outer, "subscriptionId", self.id(false, "sub").0);
                outer.insert("pn_apns".into(), Value::Object(inner));
                Value::Object(outer)
            }
            3 | 4 => {
                self.expect.shape = "WebSocket";
                let payload = if self.one_in(3) {
                    // A bare body as the payload keeps the WebSocket shape.
                    body
                } else {
                    let mut m = envelope(self);
                    m.insert("body".into(), body);
                    Value::Object(m)
                };
                let meta = json!({"type": "ServerNotification", "messageId": "m-1", "status": 200});
                json!([meta, payload])
            }
            _ => {
                self.expect.shape = "BareBody";
                self.expect.sent_at = None;
                body
            }
        }
    }

    fn body(&mut self) -> Value {
        let mut m = Map::new();
        let (tsid, tsid_value) = self.id(true, "s");
        put(&mut m, "telephonySessionId", tsid);
        self.expect.telephony_session_id = tsid_value.unwrap_or_default();
        put(&mut m, "sequence", self.sequence());
        put(&mut m, "sessionId", self.id(false, "402936342").0);
        put(&mut m, "serverId", self.id(false, "10.62.25.111.TAM").0);
        let (time, event_time) = self.time();
        put(&mut m, "eventTime", time);
        self.expect.event_time = event_time;
        let origin = self.object(|g| {
            let mut o = Map::new();
            put(&mut o, "type", g.text(ORIGINS).0);
            o
        });
        put(&mut m, "origin", origin);
        put(&mut m, "accountId", self.id(false, "400144452008").0);

        let count = match self.below(16) {
            0 if self.lenient => 0,
            0 => 1,
            1..=8 => 1,
            9..=12 => 2,
            13 | 14 => 3,
            _ => 4 + self.below(5),
        };
        if count == 0 {
            self.invalid();
        }
        let mut parties = Vec::new();
        for index in 0..count {
            parties.push(self.party(index));
        }
        match if self.lenient { self.below(24) } else { 2 } {
            0 => {
                self.invalid();
                m.insert("parties".into(), json!({"id": "p-1"}));
            }
            1 => {
                self.invalid();
                parties.push(json!("p-2"));
                m.insert("parties".into(), Value::Array(parties));
            }
            _ => {
                m.insert("parties".into(), Value::Array(parties));
            }
        }
        if self.one_in(8) {
            // Unknown fields are ignored.
            let extra = self.fuzz_string();
            m.insert("x-extra".into(), json!({"nested": [extra, {"a": null}]}));
        }
        Value::Object(m)
    }

    fn sequence(&mut self) -> Option<Value> {
        let choice = if self.u.is_empty() {
            4
        } else {
            self.byte() % 8
        };
        let n: i64 = self.u.arbitrary().unwrap_or(1);
        let (value, expected) = match choice {
            0..=2 => (Some(Value::from(n)), Some(n)),
            3 => (Some(Value::from(n.to_string())), Some(n)),
            4 => (None, None),
            5 => (Some(Value::Null), None),
            6 if self.lenient => {
                self.invalid();
                (
                    Some(self.pick(&[json!(1.5), json!("five"), json!(u64::MAX)])),
                    None,
                )
            }
            7 if self.lenient => {
                self.invalid();
                (Some(self.wrong_type(false)), None)
            }
            _ => (Some(Value::from(n)), Some(n)),
        };
        self.expect.sequence = expected;
        value
    }

    fn party(&mut self, index: usize) -> Value {
        let mut m = Map::new();
        let mut expect = PartyExpect::default();

        // Mostly distinct ids; sometimes the id of the previous party.
        let (id, id_value) = if index > 0 && self.one_in(8) {
            let previous = self.expect.parties[index - 1].id.clone();
            (Some(Value::from(previous.clone())), Some(previous))
        } else {
            self.id(true, &format!("p-{index}"))
        };
        put(&mut m, "id", id);
        expect.id = id_value.unwrap_or_default();

        let (extension, extension_value) = self.id(false, "4001444");
        put(&mut m, "extensionId", extension);
        expect.extension_id = extension_value.filter(|e| !e.trim().is_empty());
        put(&mut m, "accountId", self.id(false, "400144452008").0);
        put(&mut m, "direction", self.text(&["Inbound", "Outbound"]).0);
        put(&mut m, "queueCall", self.flag().0);
        let from = self.object(Self::endpoint);
        put(&mut m, "from", from);
        let to = self.object(Self::endpoint);
        put(&mut m, "to", to);

        // status: required, with a required non-blank code.
        let status_choice = if self.u.is_empty() {
            0
        } else {
            self.byte() % 32
        };
        let mut reason_value = None;
        match status_choice {
            30 if self.lenient => {
                self.invalid();
            }
            31 if self.lenient => {
                self.invalid();
                m.insert("status".into(), self.pick(&[json!("Answered"), json!([])]));
            }
            _ => {
                let mut s = Map::new();
                let code_choice = if self.u.is_empty() {
                    0
                } else {
                    self.byte() % 16
                };
                let code_choice = if self.lenient {
                    code_choice
                } else {
                    code_choice % 13
                };
                let code = match code_choice {
                    0..=11 => {
                        let (raw, symbol) = self.pick(STATUS);
                        let raw = self.recase(raw);
                        expect.status_symbol = symbol;
                        Some(raw)
                    }
                    12 => {
                        let mut raw = self.fuzz_string();
                        if !self.lenient && raw.trim().is_empty() {
                            raw = "CustomStatus".to_owned();
                        }
                        expect.status_symbol = STATUS
                            .iter()
                            .find(|(r, _)| r.eq_ignore_ascii_case(&raw))
                            .map_or("UNKNOWN", |(_, symbol)| symbol);
                        Some(raw)
                    }
                    13 => Some(" ".to_owned()),
                    14 => {
                        self.invalid();
                        s.insert("code".into(), json!(200));
                        None
                    }
                    _ => None,
                };
                if let Some(code) = code {
                    if code.trim().is_empty() {
                        self.invalid();
                    }
                    s.insert("code".into(), Value::from(code.clone()));
                    expect.status_raw = code;
                } else {
                    self.invalid();
                }
                let (reason, reason_text) = self.text(REASONS);
                put(&mut s, "reason", reason);
                reason_value = reason_text;
                put(&mut s, "description", self.display_text(&["Call ended"]).0);
                put(&mut s, "rcc", self.flag().0);
                let peer = self.object(|g| {
                    let mut p = Map::new();
                    put(&mut p, "sessionId", g.id(false, "402936").0);
                    put(&mut p, "telephonySessionId", g.id(false, "s-peer").0);
                    put(&mut p, "partyId", g.id(false, "p-peer").0);
                    p
                });
                put(&mut s, "peerId", peer);
                m.insert("status".into(), Value::Object(s));
            }
        }

        let (missed, missed_value) = self.flag();
        put(&mut m, "missedCall", missed);
        expect.missed = missed_value;
        put(&mut m, "standAlone", self.flag().0);
        put(&mut m, "muted", self.flag().0);
        put(
            &mut m,
            "conferenceRole",
            self.text(&["Host", "Participant"]).0,
        );
        put(&mut m, "ringOutRole", self.text(&["Initiator", "Target"]).0);
        put(&mut m, "ringMeRole", self.text(&["Initiator", "Target"]).0);
        let sip = self.object(|g| {
            let mut o = Map::new();
            put(&mut o, "callId", g.id(false, "call").0);
            put(&mut o, "toTag", g.id(false, "to").0);
            put(&mut o, "fromTag", g.id(false, "from").0);
            o
        });
        put(&mut m, "sipData", sip);
        let park = self.object(|g| {
            let mut o = Map::new();
            put(&mut o, "id", g.id(false, "*8").0);
            o
        });
        put(&mut m, "park", park);
        let ui = self.object(|g| {
            let mut o = Map::new();
            for key in ["primary", "additional"] {
                let v = g.object(|g| {
                    let mut v = Map::new();
                    put(&mut v, "type", g.text(&["CallerIdName", "QueueName"]).0);
                    put(&mut v, "value", g.display_text(&["Support"]).0);
                    v
                });
                put(&mut o, key, v);
            }
            o
        });
        put(&mut m, "uiCallInfo", ui);

        if !self.u.is_empty() && self.byte() % 4 == 0 {
            let n = self.below(4);
            let mut recordings = Vec::new();
            for i in 0..n {
                let mut r = Map::new();
                let (rid, rid_value) = self.id(false, &format!("rec-{i}"));
                put(&mut r, "id", rid);
                let (active, active_value) = self.flag();
                put(&mut r, "active", active);
                if let Some(rid) = rid_value {
                    expect.recordings.push((rid, active_value));
                }
                recordings.push(Value::Object(r));
            }
            if self.lenient && self.one_in(16) {
                self.invalid();
                recordings.push(json!("rec-x"));
            }
            m.insert("recordings".into(), Value::Array(recordings));
        } else if self.one_in(16) {
            m.insert("recordings".into(), Value::Null);
        }

        expect.reached_voicemail = expect.status_symbol == "VoiceMail"
            || reason_value
                .as_deref()
                .is_some_and(|r| r.eq_ignore_ascii_case("Voicemail"));
        if matches!(expect.status_symbol, "Disconnected" | "Gone") {
            expect.transfer = reason_value.as_deref().and_then(|r| {
                TRANSFER_REASONS
                    .iter()
                    .find(|t| t.eq_ignore_ascii_case(r))
                    .copied()
            });
        }
        self.expect.parties.push(expect);
        Value::Object(m)
    }

    fn endpoint(&mut self) -> Map<String, Value> {
        let mut m = Map::new();
        let number = if self.one_in(4) {
            Some(Value::from(self.fuzz_string()))
        } else {
            self.display_text(PHONE_NUMBERS).0
        };
        put(&mut m, "phoneNumber", number);
        put(
            &mut m,
            "name",
            self.display_text(&["Tom Sawyer", "WIRELESS CALLER"]).0,
        );
        put(&mut m, "extensionId", self.id(false, "4001444").0);
        put(&mut m, "deviceId", self.id(false, "dev").0);
        m
    }
}

fn put(map: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(v) = value {
        map.insert(key.to_owned(), v);
    }
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    const DAYS: [i64; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if month == 2 && is_leap(year) {
        29
    } else {
        DAYS[(month - 1) as usize]
    }
}

/// Days from 1970-01-01, by counting (years from 1970 on only): an independent oracle for the
/// core's civil-date arithmetic.
fn epoch_days(year: i64, month: i64, day: i64) -> i64 {
    let years: i64 = (1970..year)
        .map(|y| if is_leap(y) { 366 } else { 365 })
        .sum();
    let months: i64 = (1..month).map(|m| days_in_month(year, m)).sum();
    years + months + day - 1
}

// ---------------------------------------------------------------------------------------------
// Mutation of a seed notification.

/// A step from a JSON node to one of its children.
#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

fn paths(value: &Value, prefix: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    if out.len() >= 512 {
        return;
    }
    out.push(prefix.clone());
    match value {
        Value::Object(m) => {
            for (k, v) in m {
                prefix.push(Step::Key(k.clone()));
                paths(v, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                prefix.push(Step::Index(i));
                paths(v, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

fn node_mut<'v>(value: &'v mut Value, path: &[Step]) -> Option<&'v mut Value> {
    path.iter().try_fold(value, |v, step| match step {
        Step::Key(k) => v.get_mut(k.as_str()),
        Step::Index(i) => v.get_mut(*i),
    })
}

/// A value of a fuzz-chosen type, biased to what the model's fields take.
fn any_value(u: &mut Unstructured<'_>) -> Value {
    let strings: &[&str] = &[
        "",
        " ",
        "True",
        "false",
        "Disconnected",
        "Gone",
        "VoiceMail",
        "VMScreening",
        "BlindTransfer",
        "Voicemail",
        "ServerNotification",
        "/restapi/v1.0/account/~/telephony/sessions",
        "/restapi/v1.0/account/~/presence",
        "2018-06-05T00:14:50.147Z",
        "2018-06-05T02:14:50.1479999+02:00",
        "9999-12-31T23:59:60.999-99:99",
        "0000-01-01T00:00:00Z",
        "2018-06-05T00:14:50",
        "+17205551234",
        "101",
        "18446744073709551616",
        "-9223372036854775808",
        "\u{0}",
        "é\u{1F4DE}",
    ];
    match u.choose_index(12).unwrap_or(0) {
        0 => Value::Null,
        1 => Value::from(u.arbitrary::<bool>().unwrap_or(true)),
        2 => Value::from(u.arbitrary::<i64>().unwrap_or(0)),
        3 => Value::from(u.arbitrary::<u64>().unwrap_or(u64::MAX)),
        4 => serde_json::Number::from_f64(u.arbitrary::<f64>().unwrap_or(0.5))
            .map_or(Value::Null, Value::Number),
        5 | 6 => Value::from(strings[u.choose_index(strings.len()).unwrap_or(0)]),
        7 => Value::from(u.arbitrary::<String>().unwrap_or_default()),
        8 => json!([]),
        9 => json!({}),
        10 => {
            let key = KEYS[u.choose_index(KEYS.len()).unwrap_or(0)];
            let mut m = Map::new();
            m.insert(key.to_owned(), any_value(u));
            Value::Object(m)
        }
        _ => json!([{"id": "p-x", "status": {"code": "Answered"}}]),
    }
}

/// Applies a few fuzz-chosen edits to a seed notification.
pub fn mutate(mut value: Value, u: &mut Unstructured<'_>) -> Value {
    let edits = u.int_in_range(0..=4u8).unwrap_or(0);
    for _ in 0..edits {
        let mut all = Vec::new();
        paths(&value, &mut Vec::new(), &mut all);
        let Ok(path) = u.choose(&all).cloned() else {
            break;
        };
        let op = u.choose_index(7).unwrap_or(0);
        match op {
            // Replace the node with a value of a fuzz-chosen type.
            0 | 1 => {
                if let Some(node) = node_mut(&mut value, &path) {
                    *node = any_value(u);
                }
            }
            // Remove the node from its parent.
            2 => {
                if let Some((last, parent_path)) = path.split_last() {
                    match (node_mut(&mut value, parent_path), last) {
                        (Some(Value::Object(m)), Step::Key(k)) => {
                            m.shift_remove(k.as_str());
                        }
                        (Some(Value::Array(a)), Step::Index(i)) if *i < a.len() => {
                            a.remove(*i);
                        }
                        _ => {}
                    }
                }
            }
            // Add a field of the model (or replace it) in an object.
            3 => {
                let key = KEYS[u.choose_index(KEYS.len()).unwrap_or(0)];
                let v = any_value(u);
                if let Some(Value::Object(m)) = node_mut(&mut value, &path) {
                    m.insert(key.to_owned(), v);
                }
            }
            // Repeat an array element (a second party with the same id, say).
            4 => {
                if let Some(Value::Array(a)) = node_mut(&mut value, &path) {
                    if let Some(first) = a.first().cloned() {
                        a.push(first);
                    }
                }
            }
            // Retype a scalar: number <-> string, boolean -> "True"/"False".
            5 => {
                if let Some(node) = node_mut(&mut value, &path) {
                    *node = match node.take() {
                        Value::Number(n) => Value::from(n.to_string()),
                        Value::Bool(b) => Value::from(if b { "True" } else { "FALSE" }),
                        Value::String(s) => match s.parse::<i64>() {
                            Ok(n) => Value::from(n),
                            Err(_) => Value::from(s.to_ascii_uppercase()),
                        },
                        other => other,
                    };
                }
            }
            // Wrap the node in an array (an object where the model wants one, or the reverse).
            _ => {
                if let Some(node) = node_mut(&mut value, &path) {
                    let inner = node.take();
                    *node = Value::Array(vec![inner]);
                }
            }
        }
    }
    value
}

/// The number of parties of the body the envelope rules find in `message`, if any.
pub fn input_parties(message: &Value) -> Option<usize> {
    let present = |v: Option<&Value>| v.filter(|v| !v.is_null()).cloned();
    let node = match message {
        Value::Array(frame) => frame.get(1)?.clone(),
        Value::Object(m) => present(m.get("pn_apns")).unwrap_or_else(|| message.clone()),
        _ => return None,
    };
    let body = present(node.get("body")).unwrap_or(node);
    body.get("parties")?.as_array().map(Vec::len)
}

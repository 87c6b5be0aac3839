//! Properties over generated well-formed notifications: every shape, 1 to 5 parties, every
//! optional field present or absent, enum values known, misspelled and unknown, ids as numbers or
//! strings, booleans as `"True"`/`"False"`.
//!
//! - exactly one party record per party, in party order, keyed by extension or session;
//! - the derived records follow the rules of docs/domain.md §4 (an independent oracle);
//! - every emitted record encodes to Avro that decodes with its topic's schema to `to_json`;
//! - processing is deterministic;
//! - the hand-written reader (`core::reader`) reads exactly what serde reads, whenever it reads
//!   anything, also from messages with random bytes changed; and it reads all realistic traffic.

mod common;

use callstream::core::raw::RawMessage;
use callstream::core::{reader, Processor, ProcessorConfig, TopicKind};
use callstream::generate::{Generator, GeneratorConfig};
use common::*;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{json, Map, Value};

/// A generated party and what the rules should make of it.
#[derive(Debug, Clone)]
struct GenParty {
    json: Value,
    id: String,
    extension_id: Option<String>,
    status_symbol: &'static str,
    reason_symbol: Option<&'static str>,
    missed: bool,
    recording_ids: Vec<String>,
}

/// A generated message and what it should yield.
#[derive(Debug, Clone)]
struct GenMessage {
    shape: Shape,
    bytes: Vec<u8>,
    telephony_session_id: String,
    event_time_ms: Option<i64>,
    parties: Vec<GenParty>,
}

/// An id as RingCentral sends it: a string of digits, or the same digits as a JSON number.
fn id_value() -> impl Strategy<Value = (Value, String)> {
    (1u64..=999_999_999_999_999, any::<bool>()).prop_map(|(n, as_number)| {
        let value = if as_number {
            json!(n)
        } else {
            json!(n.to_string())
        };
        (value, n.to_string())
    })
}

/// A boolean, sometimes as the string forms seen in production.
fn flag() -> impl Strategy<Value = (Value, bool)> {
    prop_oneof![
        any::<bool>().prop_map(|b| (json!(b), b)),
        select(
            &[
                ("True", true),
                ("False", false),
                ("true", true),
                ("FALSE", false)
            ][..]
        )
        .prop_map(|(s, b)| (json!(s), b)),
    ]
}

/// Text with escapes, non-ASCII and quotes now and then.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z ]{0,20}",
        select(
            &[
                "Tom Sawyer",
                "Zoë \"Z\" Müller",
                "WIRELESS CALLER",
                "名前",
                "a\\b\n\tc",
                ""
            ][..]
        )
        .prop_map(str::to_owned),
    ]
}

fn phone_number() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\+1[2-9][0-9]{9}",
        "[0-9]{2,5}",
        "[2-9][0-9]{9}",
        select(&["anonymous", "#[email protected]:5060", "+", ""][..]).prop_map(str::to_owned),
    ]
}

/// Text meant for people, now and then sent as a JSON number (kept as its digits or value).
fn display(text: impl Strategy<Value = String>) -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => text.prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => (-1e12..1e12f64).prop_map(Value::from),
    ]
}

fn endpoint() -> impl Strategy<Value = Value> {
    (
        proptest::option::of(display(phone_number())),
        proptest::option::of(display(text())),
        proptest::option::of(id_value()),
        proptest::option::of(id_value()),
    )
        .prop_map(|(number, name, extension, device)| {
            let mut e = Map::new();
            if let Some(n) = number {
                e.insert("phoneNumber".into(), json!(n));
            }
            if let Some(n) = name {
                e.insert("name".into(), json!(n));
            }
            if let Some((v, _)) = extension {
                e.insert("extensionId".into(), v);
            }
            if let Some((v, _)) = device {
                e.insert("deviceId".into(), v);
            }
            Value::Object(e)
        })
}

/// Status codes as sent, with the symbol they normalize to.
const STATUS_CODES: &[(&str, &str)] = &[
    ("Setup", "Setup"),
    ("Proceeding", "Proceeding"),
    ("Answered", "Answered"),
    ("Disconnected", "Disconnected"),
    ("Gone", "Gone"),
    ("gone", "Gone"),
    ("Parked", "Parked"),
    ("Hold", "Hold"),
    ("VoiceMail", "VoiceMail"),
    ("Voicemail", "VoiceMail"),
    ("FaxReceive", "FaxReceive"),
    ("VoiceMailScreening", "VoiceMailScreening"),
    ("VMScreening", "VoiceMailScreening"),
    ("Tds", "Tds"),
    ("Ringing", "UNKNOWN"),
];

/// Status reasons as sent, with the symbol they normalize to.
const REASONS: &[(&str, &str)] = &[
    ("BlindTransfer", "BlindTransfer"),
    ("AttendedTransfer", "AttendedTransfer"),
    ("RccTransfer", "RccTransfer"),
    ("DtmfTransfer", "DtmfTransfer"),
    ("Pickup", "Pickup"),
    ("Supervising", "Supervising"),
    ("CallFlip", "CallFlip"),
    ("CallSwitch", "CallSwitch"),
    ("Conference", "Conference"),
    ("Undefined", "Undefined"),
    ("Voicemail", "Voicemail"),
    ("NoAnswer", "NoAnswer"),
    ("CallerInputRedirect", "CallerInputRedirect"),
    ("QuantumEntanglement", "UNKNOWN"),
];

fn peer() -> impl Strategy<Value = Value> {
    (
        proptest::option::of("s-[0-9a-f]{8}z[0-9a-f]{8}"),
        proptest::option::of(id_value()),
        proptest::option::of("p-[0-9a-f]{8}-[0-9]"),
    )
        .prop_map(|(tsid, sid, pid)| {
            let mut p = Map::new();
            if let Some(v) = tsid {
                p.insert("telephonySessionId".into(), json!(v));
            }
            if let Some((v, _)) = sid {
                p.insert("sessionId".into(), v);
            }
            if let Some(v) = pid {
                p.insert("partyId".into(), json!(v));
            }
            Value::Object(p)
        })
}

fn status() -> impl Strategy<Value = (Value, &'static str, Option<&'static str>)> {
    (
        select(STATUS_CODES),
        proptest::option::of(select(REASONS)),
        proptest::option::of(text()),
        proptest::option::of(flag()),
        proptest::option::of(peer()),
        any::<bool>(),
    )
        .prop_map(
            |((code, symbol), reason, description, rcc, peer, unknown)| {
                let mut s = Map::new();
                s.insert("code".into(), json!(code));
                if let Some((r, _)) = reason {
                    s.insert("reason".into(), json!(r));
                }
                if let Some(d) = description {
                    s.insert("description".into(), json!(d));
                }
                if let Some((v, _)) = rcc {
                    s.insert("rcc".into(), v);
                }
                if let Some(p) = peer {
                    s.insert("peerId".into(), p);
                }
                if unknown {
                    s.insert(
                        "mobilePickupData".into(),
                        json!({"ccMailboxes": ["1"], "sid": "2"}),
                    );
                }
                (Value::Object(s), symbol, reason.map(|(_, sym)| sym))
            },
        )
}

fn recordings() -> impl Strategy<Value = (Value, Vec<String>)> {
    proptest::collection::vec(
        (any::<bool>(), proptest::option::of(flag()), any::<bool>()),
        0..4,
    )
    .prop_map(|items| {
        let mut ids = Vec::new();
        let list = items
            .into_iter()
            .enumerate()
            .map(|(i, (has_id, active, numeric))| {
                let mut r = Map::new();
                if has_id {
                    let id = format!("93128380{i:02}");
                    r.insert(
                        "id".into(),
                        if numeric {
                            json!(id.parse::<u64>().unwrap())
                        } else {
                            json!(id)
                        },
                    );
                    ids.push(id);
                }
                if let Some((v, _)) = active {
                    r.insert("active".into(), v);
                }
                Value::Object(r)
            })
            .collect();
        (Value::Array(list), ids)
    })
}

/// Optional fields of a party that no rule reads.
fn party_extras() -> impl Strategy<Value = Map<String, Value>> {
    (
        proptest::option::of(select(&["Inbound", "Outbound", "Sideways"][..])),
        proptest::option::of(select(&["Host", "Participant", "Observer"][..])),
        proptest::option::of(select(&["Initiator", "Target", "Other"][..])),
        proptest::option::of(select(&["Initiator", "Target"][..])),
        (
            proptest::option::of(flag()),
            proptest::option::of(flag()),
            proptest::option::of(flag()),
        ),
        (proptest::option::of(endpoint()), proptest::option::of(endpoint())),
        proptest::option::of(prop_oneof![Just(json!({})), "[0-9]{3}".prop_map(|id| json!({"id": id}))]),
        proptest::option::of(("[0-9]{6}", "[0-9]{3}", "[0-9]{3}")),
        proptest::option::of((text(), text())),
        any::<bool>(),
    )
        .prop_map(
            |(direction, conference, ring_out, ring_me, flags, (from, to), park, sip, ui, owner)| {
                let mut p = Map::new();
                let mut put = |k: &str, v: Option<Value>| {
                    if let Some(v) = v {
                        p.insert(k.to_owned(), v);
                    }
                };
                put("direction", direction.map(|d| json!(d)));
                put("conferenceRole", conference.map(|d| json!(d)));
                put("ringOutRole", ring_out.map(|d| json!(d)));
                put("ringMeRole", ring_me.map(|d| json!(d)));
                put("queueCall", flags.0.map(|f| f.0));
                put("standAlone", flags.1.map(|f| f.0));
                put("muted", flags.2.map(|f| f.0));
                put("from", from);
                put("to", to);
                put("park", park);
                put(
                    "sipData",
                    sip.map(|(c, t, f)| json!({"callId": c, "toTag": t, "fromTag": f})),
                );
                put(
                    "uiCallInfo",
                    ui.map(|(a, b)| {
                        json!({"primary": {"type": "QueueName", "value": a}, "additional": {"type": "CallerIdName", "value": b}})
                    }),
                );
                put(
                    "owner",
                    owner.then(|| json!({"extensionId": "1", "accountId": "2"})),
                );
                p
            },
        )
}

/// A party without its id, which is given by position so that ids are distinct.
fn party_parts() -> impl Strategy<Value = GenParty> {
    (
        prop_oneof![
            3 => id_value().prop_map(Some),
            1 => Just(None),
        ],
        proptest::option::of(id_value()),
        status(),
        proptest::option::of(flag()),
        proptest::option::of(recordings()),
        party_extras(),
    )
        .prop_map(
            |(extension, account, (status, code, reason), missed, recs, extras)| {
                let mut p = Map::new();
                if let Some((v, _)) = &extension {
                    p.insert("extensionId".into(), v.clone());
                }
                if let Some((v, _)) = account {
                    p.insert("accountId".into(), v);
                }
                p.insert("status".into(), status);
                if let Some((v, _)) = &missed {
                    p.insert("missedCall".into(), v.clone());
                }
                let recording_ids = match recs {
                    Some((list, ids)) => {
                        p.insert("recordings".into(), list);
                        ids
                    }
                    None => Vec::new(),
                };
                p.extend(extras);
                GenParty {
                    json: Value::Object(p),
                    id: String::new(),
                    extension_id: extension.map(|(_, s)| s),
                    status_symbol: code,
                    reason_symbol: reason,
                    missed: missed.is_some_and(|(_, b)| b),
                    recording_ids,
                }
            },
        )
}

/// Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// An ISO 8601 time for an instant, in a given offset and with a number of fraction digits, and
/// the epoch milliseconds it should normalize to.
fn iso_time() -> impl Strategy<Value = (String, i64)> {
    (
        0i64..4_102_444_800_000,
        select(&[0usize, 1, 2, 3, 6][..]),
        select(&[0i64, 60, -300, 330, 845, -720][..]),
    )
        .prop_map(|(ms, digits, offset_minutes)| {
            let local_ms = ms + offset_minutes * 60_000;
            let (secs, millis) = (local_ms.div_euclid(1000), local_ms.rem_euclid(1000));
            let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
            let tod = secs.rem_euclid(86_400);
            let mut s = format!(
                "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}",
                tod / 3600,
                tod % 3600 / 60,
                tod % 60
            );
            let fraction = format!("{millis:03}789");
            if digits > 0 {
                s.push('.');
                s.push_str(&fraction[..digits]);
            }
            if offset_minutes == 0 {
                s.push('Z');
            } else {
                let sign = if offset_minutes > 0 { '+' } else { '-' };
                let m = offset_minutes.abs();
                s.push_str(&format!("{sign}{:02}:{:02}", m / 60, m % 60));
            }
            let kept = match digits {
                0 => 0,
                1 => millis / 100 * 100,
                2 => millis / 10 * 10,
                _ => millis,
            };
            (s, ms - millis + kept)
        })
}

fn notification() -> impl Strategy<Value = GenMessage> {
    (
        select(&Shape::ALL[..]),
        proptest::collection::vec(party_parts(), 1..=5),
        prop_oneof![
            "s-[0-9a-f]{16}z[0-9a-f]{8}",
            "Y3Mx[A-Za-z0-9]{20}",
            "[0-9]{12}",
        ],
        (
            proptest::option::of(prop_oneof![
                (0i64..1_000_000).prop_map(|n| json!(n)),
                (0i64..1_000_000).prop_map(|n| json!(n.to_string())),
            ]),
            proptest::option::of(id_value()),
            proptest::option::of(iso_time()),
            proptest::option::of(select(
                &["Call", "RingOut", "RingMe", "Conference", "Fax"][..],
            )),
            proptest::option::of(id_value()),
            proptest::option::of("10\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.TAM"),
        ),
        (
            "[1-9][0-9]{17,19}",
            any::<bool>(),
            proptest::option::of(iso_time()),
            any::<bool>(),
            any::<bool>(),
        ),
    )
        .prop_map(|(shape, mut parties, tsid, body_fields, envelope_fields)| {
            let (sequence, session_id, event_time, origin, body_account, server_id) = body_fields;
            let (uuid, account_path, timestamp, has_subscription, unknown) = envelope_fields;
            let mut b = Map::new();
            if let Some(s) = sequence {
                b.insert("sequence".into(), s);
            }
            if let Some((v, _)) = session_id {
                b.insert("sessionId".into(), v);
            }
            b.insert("telephonySessionId".into(), json!(tsid));
            if let Some(s) = server_id {
                b.insert("serverId".into(), json!(s));
            }
            if let Some((t, _)) = &event_time {
                b.insert("eventTime".into(), json!(t));
            }
            if let Some(o) = origin {
                b.insert("origin".into(), json!({"type": o}));
            }
            for (i, party) in parties.iter_mut().enumerate() {
                party.id = format!("p-{tsid}-{}", i + 1);
                party.json["id"] = json!(party.id);
            }
            b.insert(
                "parties".into(),
                Value::Array(parties.iter().map(|p| p.json.clone()).collect()),
            );
            if let Some((v, _)) = body_account {
                b.insert("accountId".into(), v);
            }
            if unknown {
                b.insert("somethingNew".into(), json!({"a": [1, 2, {"b": null}]}));
            }
            let mut message = shape.wrap(&uuid, Value::Object(b));
            let envelope = match shape {
                Shape::Webhook => Some(&mut message),
                Shape::ApplePush => Some(&mut message["pn_apns"]),
                Shape::WebSocket => Some(&mut message[1]),
                Shape::BareBody => None,
            };
            if let Some(envelope) = envelope {
                let envelope = envelope.as_object_mut().unwrap();
                if account_path {
                    envelope.insert("event".into(), json!(account_event()));
                }
                match &timestamp {
                    Some((t, _)) => envelope.insert("timestamp".into(), json!(t)),
                    None => envelope.remove("timestamp"),
                };
                if !has_subscription {
                    envelope.remove("subscriptionId");
                }
            }
            GenMessage {
                shape,
                bytes: bytes(&message),
                telephony_session_id: tsid,
                event_time_ms: event_time.map(|(_, ms)| ms),
                parties,
            }
        })
}

/// What the rules of docs/domain.md §4 derive from a party, per topic.
fn expected_derived(party: &GenParty) -> (usize, usize, usize) {
    let transfer = matches!(party.status_symbol, "Disconnected" | "Gone")
        && matches!(
            party.reason_symbol,
            Some("BlindTransfer" | "AttendedTransfer" | "RccTransfer" | "DtmfTransfer")
        );
    (
        usize::from(party.missed),
        party.recording_ids.len(),
        usize::from(transfer),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn exactly_one_party_record_per_party(message in notification()) {
        let (outcome, records) = process(&message.bytes)
            .map_err(|r| TestCaseError::fail(format!("rejected: {r}")))?;
        prop_assert!(!outcome.duplicate);
        prop_assert_eq!(outcome.suppressed, 0);
        let parties = of_topic(&records, TopicKind::Parties);
        prop_assert_eq!(parties.len(), message.parties.len());
        for (record, party) in parties.iter().zip(&message.parties) {
            prop_assert_eq!(record.str("party_id"), Some(party.id.as_str()));
            let key = party.extension_id.as_deref().unwrap_or(&message.telephony_session_id);
            prop_assert_eq!(&record.key, key);
            prop_assert_eq!(record.field("external"), &json!(party.extension_id.is_none()));
            prop_assert_eq!(record.str("status_code"), Some(party.status_symbol));
            prop_assert_eq!(record.str("status_reason"), party.reason_symbol);
            prop_assert_eq!(record.str("input_shape"), Some(message.shape.symbol()));
            prop_assert_eq!(record.field("event_time").as_i64(), message.event_time_ms);
        }
    }

    #[test]
    fn derived_records_follow_the_rules(message in notification()) {
        let (_, records) = process(&message.bytes)
            .map_err(|r| TestCaseError::fail(format!("rejected: {r}")))?;
        // Records come per party: its party record first, then what it derives.
        let mut i = 0;
        for party in &message.parties {
            prop_assert_eq!(records[i].topic, TopicKind::Parties);
            prop_assert_eq!(records[i].str("party_id"), Some(party.id.as_str()));
            i += 1;
            let derived: Vec<&Emitted> = records[i..]
                .iter()
                .take_while(|r| r.topic != TopicKind::Parties)
                .collect();
            i += derived.len();
            let count = |t| derived.iter().filter(|r| r.topic == t).count();
            prop_assert_eq!(
                (count(TopicKind::Missed), count(TopicKind::Recorded), count(TopicKind::Transfers)),
                expected_derived(party)
            );
            let recording_ids: Vec<&str> = derived
                .iter()
                .filter(|r| r.topic == TopicKind::Recorded)
                .filter_map(|r| r.str("recording_id"))
                .collect();
            prop_assert_eq!(recording_ids, party.recording_ids.iter().map(String::as_str).collect::<Vec<_>>());
            for r in &derived {
                prop_assert_eq!(r.str("party_id"), Some(party.id.as_str()));
                prop_assert_eq!(&r.key, &records[i - derived.len() - 1].key);
            }
        }
        prop_assert_eq!(i, records.len());
    }

    #[test]
    fn every_record_round_trips_through_its_avro_schema(message in notification()) {
        let mut processor = Processor::new(ProcessorConfig::default());
        let (outcome, emitted) = run_checked(&mut processor, &message.bytes)
            .map_err(|r| TestCaseError::fail(format!("rejected: {r}")))?;
        prop_assert_eq!(outcome.emitted, emitted.len());
        prop_assert!(emitted.len() >= message.parties.len());
    }

    #[test]
    fn processing_is_deterministic(message in notification()) {
        let run_fresh = || {
            run_checked(&mut Processor::new(ProcessorConfig::default()), &message.bytes)
                .map_err(|r| r.to_string())
        };
        let first = run_fresh();
        let second = run_fresh();
        prop_assert!(first.is_ok());
        prop_assert_eq!(first, second);
    }

    /// Truncating a well-formed message anywhere never panics and always yields a decode error.
    #[test]
    fn every_prefix_of_a_notification_is_rejected(message in notification(), cut in any::<prop::sample::Index>()) {
        let len = cut.index(message.bytes.len());
        let result = process(&message.bytes[..len]);
        prop_assert!(result.is_err());
        let rejection = result.unwrap_err();
        prop_assert_eq!(rejection.stage, callstream::core::Stage::Decode);
        prop_assert!(["empty", "truncated"].contains(&rejection.code), "{:?}", rejection);
    }
}

/// Bytes that change what JSON means: structure, numbers, literals, escapes, control characters.
const EDIT_BYTES: &[u8] = b"{}[]\",:-.0123eE\\ \n\tntfu\x01\x7f";

/// Where the reader returns a message, serde must return the same message.
fn reader_agrees_with_serde(bytes: &[u8]) -> Result<bool, TestCaseError> {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Ok(false);
    };
    let Some(fast) = reader::read(text) else {
        return Ok(false);
    };
    let serde = serde_json::from_str::<RawMessage<'_>>(text);
    prop_assert!(
        serde.is_ok(),
        "the reader accepted what serde rejects: {:?} ({})",
        serde,
        text
    );
    prop_assert_eq!(fast, serde.unwrap(), "{}", text);
    Ok(true)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_reader_agrees_with_serde(
        message in notification(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), select(EDIT_BYTES)), 0..4),
    ) {
        reader_agrees_with_serde(&message.bytes)?;
        let mut bytes = message.bytes.clone();
        for (at, byte) in edits {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        reader_agrees_with_serde(&bytes)?;
    }
}

#[test]
fn the_reader_reads_realistic_traffic_as_serde_does() {
    for (i, line) in Generator::new(GeneratorConfig::default())
        .take(5_000)
        .enumerate()
    {
        let read = reader_agrees_with_serde(line.as_bytes()).expect("agrees");
        assert!(read, "line {i} fell back to serde: {line}");
    }
    let seed = std::fs::read("tests/data/seed-example.json").expect("seed example");
    let compact = serde_json::to_vec(&serde_json::from_slice::<Value>(&seed).expect("JSON"))
        .expect("compact");
    assert!(reader_agrees_with_serde(&compact).expect("agrees"));
}

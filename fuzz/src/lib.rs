//! What both fuzz targets check about one message run through the core.
//!
//! `run` feeds bytes to a fresh `Processor` whose `emit` encodes every record as the service does
//! (`ValueFormat::write_value`, single-object framing), reads it back with
//! `framing::decode_value`, and compares the decoded Avro datum with the record's plain-JSON form (`encode::to_json`): the two sinks walk
//! one field list and must agree field by field, in schema order. It then checks the invariants
//! that hold for any input:
//!
//! - a rejection is a `Rejection` from the decode, envelope or validate stage with a known code
//!   and a non-empty reason (the core never produces `encode` rejections itself);
//! - an accepted message emits what `parse` + `derive` derive, less what was suppressed;
//! - the same bytes again give the same rejection, or emit nothing (duplicate window);
//! - where the hand-written reader (`core::reader`) reads the message, serde reads the same.

use std::sync::OnceLock;

use apache_avro::types::Value as Avro;
use callstream::core::encode::to_json;
use callstream::core::framing::{decode_value, ValueFormat};
use callstream::core::raw::RawMessage;
use callstream::core::reader;
use callstream::core::{
    derive, parse, Outcome, OutputRecord, Processor, ProcessorConfig, Rejection, Stage, TopicKind,
};
use serde_json::{Map, Value as Json};

/// Every `callstream.error.code` the core may produce (README, "Dead letters").
pub const CORE_CODES: &[&str] = &[
    "syntax",
    "truncated",
    "not_utf8",
    "too_deep",
    "too_large",
    "wrong_type",
    "empty",
    "not_an_object",
    "not_a_frame",
    "no_body",
    "wrong_event",
    "missing_field",
    "empty_field",
    "no_parties",
    "invalid_value",
    "over_limit",
];

/// Duplicate windows large enough that nothing a fuzz input yields is evicted, small enough that
/// a fresh `Processor` per input costs little.
pub const WINDOW: usize = 1 << 12;

pub fn config() -> ProcessorConfig {
    ProcessorConfig {
        notification_window: WINDOW,
        record_window: WINDOW,
        ..ProcessorConfig::default()
    }
}

fn format() -> &'static ValueFormat {
    static FORMAT: OnceLock<ValueFormat> = OnceLock::new();
    FORMAT.get_or_init(|| ValueFormat::single_object().expect("the schemas parse"))
}

/// One emitted record, as a reader of its topic sees it.
#[derive(Debug, Clone)]
pub struct Emitted {
    pub topic: TopicKind,
    pub key: String,
    /// The decoded Avro datum, as plain JSON (unions unwrapped, enums as symbols).
    pub value: Json,
}

#[derive(Debug)]
pub struct Run {
    pub result: Result<Outcome, Rejection>,
    pub emitted: Vec<Emitted>,
}

/// Encodes, frames and decodes one record back, asserting it reads back as written.
pub fn round_trip(record: &OutputRecord<'_>) -> Emitted {
    let topic = record.topic();
    let mut bytes = Vec::new();
    format().write_value(record, &mut bytes);
    let decoded = decode_value(topic, &bytes).unwrap_or_else(|e| {
        panic!(
            "record {:?} of topic {topic:?} does not decode: {e}",
            record.record_id()
        )
    });
    let value = avro_to_json(&decoded);
    let json = to_json(record);
    let avro_keys: Vec<&String> = value.as_object().expect("a record").keys().collect();
    let json_keys: Vec<&String> = json.as_object().expect("an object").keys().collect();
    assert_eq!(
        avro_keys, json_keys,
        "Avro and JSON forms list other fields"
    );
    assert_eq!(value, json, "Avro and JSON forms of a record differ");
    assert_eq!(
        value["record_id"].as_str(),
        Some(record.record_id()),
        "record_id"
    );
    // The JSON form is what `callstream process` prints.
    serde_json::to_vec(&json).expect("JSON form serializes");
    Emitted {
        topic,
        key: record.key().to_owned(),
        value,
    }
}

/// A decoded Avro value as the plain JSON `encode::to_json` writes.
pub fn avro_to_json(value: &Avro) -> Json {
    match value {
        Avro::Null => Json::Null,
        Avro::Boolean(b) => Json::from(*b),
        Avro::Int(i) => Json::from(*i),
        Avro::Long(l) | Avro::TimestampMillis(l) => Json::from(*l),
        Avro::String(s) => Json::from(s.as_str()),
        Avro::Enum(_, symbol) => Json::from(symbol.as_str()),
        Avro::Union(_, inner) => avro_to_json(inner),
        Avro::Array(items) => Json::Array(items.iter().map(avro_to_json).collect()),
        Avro::Record(fields) => {
            let mut map = Map::new();
            for (name, v) in fields {
                map.insert(name.clone(), avro_to_json(v));
            }
            Json::Object(map)
        }
        other => panic!("the contract has no value like {other:?}"),
    }
}

/// Asserts a rejection is one the core documents.
pub fn check_rejection(rejection: &Rejection) {
    assert_ne!(
        rejection.stage,
        Stage::Encode,
        "the core itself never rejects at encode: {rejection}"
    );
    assert!(
        CORE_CODES.contains(&rejection.code),
        "undocumented code {:?}: {rejection}",
        rejection.code
    );
    assert!(!rejection.reason.is_empty(), "empty reason: {rejection:?}");
    let _ = rejection.to_string();
}

/// The reader may decline anything, but what it reads must be what serde reads.
fn check_reader(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    if let Some(fast) = reader::read(text) {
        let slow = serde_json::from_str::<RawMessage<'_>>(text).ok();
        assert_eq!(Some(fast), slow, "the reader and serde disagree");
    }
}

/// Runs `bytes` through a fresh `Processor` and checks everything that holds for any input.
pub fn run(bytes: &[u8]) -> Run {
    check_reader(bytes);
    let mut processor = Processor::new(config());
    let mut emitted = Vec::new();
    let result = processor.process(bytes, |record| {
        emitted.push(round_trip(record));
        Ok(())
    });

    match &result {
        Err(rejection) => {
            check_rejection(rejection);
            assert_eq!(
                parse(bytes, &config().limits).err().as_ref(),
                Some(rejection),
                "process and parse disagree"
            );
        }
        Ok(outcome) => {
            assert!(!outcome.duplicate, "a fresh processor saw a duplicate");
            assert_eq!(outcome.emitted, emitted.len());
            let notification = parse(bytes, &config().limits).expect("process accepted it");
            let mut derived = Vec::new();
            derive(&notification, &mut derived);
            assert_eq!(
                outcome.emitted + outcome.suppressed,
                derived.len(),
                "every derived record is emitted or suppressed"
            );
            let parties = derived
                .iter()
                .filter(|r| r.topic() == TopicKind::Parties)
                .count();
            assert_eq!(
                parties,
                notification.parties.len(),
                "one party record per party"
            );
            assert_eq!(outcome.event_time_ms, notification.session.event_time_ms);
            assert_eq!(outcome.sent_at_ms, notification.envelope.sent_at_ms);
        }
    }

    // The same message again: the same rejection, or nothing emitted.
    if emitted.len() < WINDOW {
        let again = processor.process(bytes, |record| {
            panic!("re-emitted {:?}", record.record_id());
        });
        match (&result, &again) {
            (Err(a), Err(b)) => assert_eq!(a, b, "a rejection is deterministic"),
            (Ok(_), Ok(outcome)) => assert_eq!(outcome.emitted, 0),
            _ => panic!("first {result:?}, then {again:?}"),
        }
    }

    Run { result, emitted }
}

pub mod structured;

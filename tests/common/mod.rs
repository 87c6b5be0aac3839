//! Helpers shared by the integration tests: builders for notifications in each input shape
//! (docs/domain.md §1), a runner that collects what `Processor::process` emits, and the Avro
//! round-trip check used by the property and contract tests.

// Each test crate includes this module and uses a different part of it.
#![allow(dead_code)]

use apache_avro::types::Value as Avro;
use callstream::core::encode::{schema, to_json, write_avro};
use callstream::core::{
    Outcome, OutputRecord, Processor, ProcessorConfig, Rejection, Stage, TopicKind,
};
use serde_json::{json, Map, Value};

pub const ACCOUNT_ID: &str = "400144452008";
pub const EXTENSION_ID: &str = "400144455008";
pub const OTHER_EXTENSION_ID: &str = "400144457008";
pub const SUBSCRIPTION_ID: &str = "5c37f936-fa66-4b4b-95af-1e94b51a748d";
pub const SESSION_ID: &str = "s-a0d7a5e2c9f5d4e3b2a19z1c9d6f0e1a2b3";
pub const LEGACY_SESSION_ID: &str = "402936341008";
pub const PARTY_ID: &str = "p-a0d7a5e2c9f5d4e3b2a19z1c9d6f0e1a2b3-2";
pub const EVENT_TIME: &str = "2018-06-05T00:14:50.147Z";
pub const EVENT_TIME_MS: i64 = 1_528_157_690_147;
pub const SENT_AT: &str = "2018-06-05T00:14:50.181Z";
pub const SENT_AT_MS: i64 = 1_528_157_690_181;

/// The extension-level event filter of `EXTENSION_ID`.
pub fn extension_event() -> String {
    format!("/restapi/v1.0/account/{ACCOUNT_ID}/extension/{EXTENSION_ID}/telephony/sessions")
}

/// The account-level event filter, on which external parties arrive.
pub fn account_event() -> String {
    format!("/restapi/v1.0/account/{ACCOUNT_ID}/telephony/sessions")
}

/// The seed example (the official sample, Apple-push shape), compacted to one line.
pub fn seed_example() -> Vec<u8> {
    include_bytes!("../data/seed-example.json")
        .trim_ascii()
        .to_vec()
}

/// A party as RingCentral sends it for an internal extension: every documented field present.
pub fn party(id: &str, extension_id: &str, code: &str) -> Value {
    json!({
        "accountId": ACCOUNT_ID,
        "extensionId": extension_id,
        "id": id,
        "direction": "Inbound",
        "to": {"phoneNumber": "102", "name": "Tom Sawyer", "extensionId": extension_id},
        "from": {"phoneNumber": "+17205551234", "name": "Caller", "deviceId": "802398128004"},
        "status": {"code": code, "rcc": false},
        "missedCall": false,
        "standAlone": false,
        "muted": false
    })
}

/// A party of an external number: no `extensionId`, no `accountId`.
pub fn external_party(id: &str, code: &str) -> Value {
    json!({
        "id": id,
        "direction": "Outbound",
        "to": {"phoneNumber": "+16505550100", "name": "Main number"},
        "from": {"phoneNumber": "+17205551234", "name": "Caller"},
        "status": {"code": code},
        "missedCall": false,
        "standAlone": false,
        "muted": false
    })
}

/// The smallest party that passes validation.
pub fn minimal_party(id: &str, code: &str) -> Value {
    json!({"id": id, "status": {"code": code}})
}

/// A notification body with the given parties.
pub fn body(telephony_session_id: &str, sequence: i64, parties: Vec<Value>) -> Value {
    json!({
        "sequence": sequence,
        "sessionId": LEGACY_SESSION_ID,
        "telephonySessionId": telephony_session_id,
        "serverId": "10.62.25.111.TAM",
        "eventTime": EVENT_TIME,
        "parties": parties,
        "origin": {"type": "Call"}
    })
}

/// The body of a one-party notification of `EXTENSION_ID`.
pub fn one_party_body(code: &str) -> Value {
    body(SESSION_ID, 5, vec![party(PARTY_ID, EXTENSION_ID, code)])
}

/// Webhook / WebSocket payload shape: `{uuid, event, timestamp, subscriptionId, ownerId, body}`.
pub fn webhook(uuid: &str, body: Value) -> Value {
    json!({
        "uuid": uuid,
        "event": extension_event(),
        "timestamp": SENT_AT,
        "subscriptionId": SUBSCRIPTION_ID,
        "ownerId": EXTENSION_ID,
        "body": body
    })
}

/// Apple-push wrapper: no top-level body; the envelope sits in `pn_apns`.
pub fn apple_push(uuid: &str, body: Value) -> Value {
    json!({
        "uuid": uuid,
        "subscriptionId": SUBSCRIPTION_ID,
        "ownerId": EXTENSION_ID,
        "pn_apns": {
            "aps": {"content-available": 1},
            "uuid": uuid,
            "event": extension_event(),
            "timestamp": SENT_AT,
            "subscriptionId": SUBSCRIPTION_ID,
            "ownerId": EXTENSION_ID,
            "body": body
        }
    })
}

/// WebSocket frame: `[meta, payload]` with a `ServerNotification` meta.
pub fn websocket_frame(uuid: &str, body: Value) -> Value {
    json!([
        {
            "type": "ServerNotification",
            "messageId": "-7374046718043215357",
            "status": 200,
            "headers": {"RCRequestId": "e1d0f3a4-0000-0000-0000-000000000000"},
            "wsc": {"token": "abc", "sequence": 7}
        },
        webhook(uuid, body)
    ])
}

/// The input shapes of docs/domain.md §1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Webhook,
    ApplePush,
    WebSocket,
    BareBody,
}

impl Shape {
    pub const ALL: [Shape; 4] = [
        Shape::Webhook,
        Shape::ApplePush,
        Shape::WebSocket,
        Shape::BareBody,
    ];

    /// The `input_shape` symbol the party record carries.
    pub fn symbol(self) -> &'static str {
        match self {
            Shape::Webhook => "Webhook",
            Shape::ApplePush => "ApplePush",
            Shape::WebSocket => "WebSocket",
            Shape::BareBody => "BareBody",
        }
    }

    /// The JSON path of the body in this shape, as rejections name it.
    pub fn body_path(self) -> &'static str {
        match self {
            Shape::Webhook => "body",
            Shape::ApplePush => "pn_apns.body",
            Shape::WebSocket => "[1].body",
            Shape::BareBody => "",
        }
    }

    /// `field` under the body (`parties[0].id` -> `body.parties[0].id`).
    pub fn path(self, field: &str) -> String {
        let base = self.body_path();
        if base.is_empty() {
            field.to_owned()
        } else {
            format!("{base}.{field}")
        }
    }

    pub fn wrap(self, uuid: &str, body: Value) -> Value {
        match self {
            Shape::Webhook => webhook(uuid, body),
            Shape::ApplePush => apple_push(uuid, body),
            Shape::WebSocket => websocket_frame(uuid, body),
            Shape::BareBody => body,
        }
    }
}

/// Compact JSON bytes of a value, as the connector writes them.
pub fn bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("serializable")
}

/// One record handed to `emit`: its topic, its Kafka key and its JSON form.
#[derive(Debug, Clone, PartialEq)]
pub struct Emitted {
    pub topic: TopicKind,
    pub key: String,
    pub value: Value,
}

impl Emitted {
    pub fn field(&self, name: &str) -> &Value {
        self.value
            .get(name)
            .unwrap_or_else(|| panic!("{:?} record has no field {name}", self.topic))
    }

    pub fn str(&self, name: &str) -> Option<&str> {
        self.field(name).as_str()
    }
}

/// Runs one message through `processor` and collects what it emits.
pub fn run(
    processor: &mut Processor,
    message: &[u8],
) -> Result<(Outcome, Vec<Emitted>), Rejection> {
    let mut emitted = Vec::new();
    let outcome = processor.process(message, |record| {
        emitted.push(Emitted {
            topic: record.topic(),
            key: record.key().to_owned(),
            value: to_json(record),
        });
        Ok(())
    })?;
    Ok((outcome, emitted))
}

/// Runs one message through a fresh processor with the default settings.
pub fn process(message: &[u8]) -> Result<(Outcome, Vec<Emitted>), Rejection> {
    run(&mut Processor::new(ProcessorConfig::default()), message)
}

/// The records of an accepted message; panics with the rejection otherwise.
pub fn accept(message: &Value) -> Vec<Emitted> {
    match process(&bytes(message)) {
        Ok((outcome, records)) => {
            assert!(!outcome.duplicate, "a fresh processor saw a duplicate");
            assert_eq!(outcome.emitted, records.len());
            records
        }
        Err(rejection) => panic!("rejected: {rejection} ({rejection:?})\n{message}"),
    }
}

/// The rejection of a message; panics if it was accepted.
pub fn reject(message: &[u8]) -> Rejection {
    match process(message) {
        Ok((_, records)) => panic!(
            "accepted {:?} with {} records",
            String::from_utf8_lossy(&message[..message.len().min(200)]),
            records.len()
        ),
        Err(rejection) => {
            assert!(
                !rejection.reason.trim().is_empty(),
                "a rejection must say why: {rejection:?}"
            );
            rejection
        }
    }
}

/// Asserts stage, code and path of a rejection; returns it for further checks.
pub fn assert_rejected(message: &[u8], stage: Stage, code: &str, path: Option<&str>) -> Rejection {
    let rejection = reject(message);
    assert_eq!(rejection.stage, stage, "{rejection:?}");
    assert_eq!(rejection.code, code, "{rejection:?}");
    if let Some(path) = path {
        assert_eq!(rejection.path.as_deref(), Some(path), "{rejection:?}");
    }
    rejection
}

/// The records of one topic.
pub fn of_topic(records: &[Emitted], topic: TopicKind) -> Vec<&Emitted> {
    records.iter().filter(|r| r.topic == topic).collect()
}

/// The single record of one topic; panics unless there is exactly one.
pub fn only(records: &[Emitted], topic: TopicKind) -> &Emitted {
    let found = of_topic(records, topic);
    assert_eq!(
        found.len(),
        1,
        "expected one {topic:?} record: {records:#?}"
    );
    found[0]
}

/// Converts a decoded Avro value to the plain JSON that `to_json` writes: unions unwrapped, enums
/// as their symbols, timestamps as epoch milliseconds.
pub fn avro_to_json(value: &Avro) -> Value {
    match value {
        Avro::Null => Value::Null,
        Avro::Boolean(b) => Value::Bool(*b),
        Avro::Int(n) => Value::from(*n),
        Avro::Long(n) | Avro::TimestampMillis(n) => Value::from(*n),
        Avro::String(s) => Value::from(s.as_str()),
        Avro::Enum(_, symbol) => Value::from(symbol.as_str()),
        Avro::Union(_, inner) => avro_to_json(inner),
        Avro::Array(items) => Value::Array(items.iter().map(avro_to_json).collect()),
        Avro::Record(fields) => Value::Object(
            fields
                .iter()
                .map(|(name, v)| (name.clone(), avro_to_json(v)))
                .collect::<Map<String, Value>>(),
        ),
        other => panic!("the contract has no field of this Avro type: {other:?}"),
    }
}

/// Encodes a record with `write_avro`, decodes it with `apache_avro` against its topic's schema,
/// and checks that every byte is consumed and that the decoded value equals `to_json(record)`,
/// field for field and in order. Returns the encoded bytes.
pub fn avro_round_trip(record: &OutputRecord<'_>) -> Result<Vec<u8>, String> {
    let topic = record.topic();
    let schema = schema(topic).map_err(|e| e.to_string())?;
    let mut encoded = Vec::new();
    write_avro(record, &mut encoded);
    let mut rest = &encoded[..];
    let decoded = apache_avro::from_avro_datum(schema, &mut rest, None)
        .map_err(|e| format!("{topic:?} record does not decode with its schema: {e}"))?;
    if !rest.is_empty() {
        return Err(format!(
            "{topic:?} record: {} of {} bytes left after decoding",
            rest.len(),
            encoded.len()
        ));
    }
    decoded
        .validate(schema)
        .then_some(())
        .ok_or_else(|| format!("{topic:?} decoded value does not validate against its schema"))?;
    let expected = to_json(record);
    let actual = avro_to_json(&decoded);
    // Serialized, so that the field order is compared too (schema order is the contract).
    let (expected, actual) = (expected.to_string(), actual.to_string());
    if expected != actual {
        return Err(format!(
            "{topic:?} record differs after the Avro round trip:\n  to_json: {expected}\n  avro:    {actual}"
        ));
    }
    Ok(encoded)
}

/// `(topic, key, avro bytes, json)` of one emitted record.
pub type Checked = (TopicKind, String, Vec<u8>, Value);

/// Runs one message through `processor`, round-tripping every emitted record through Avro.
/// Returns the outcome and each record.
pub fn run_checked(
    processor: &mut Processor,
    message: &[u8],
) -> Result<(Outcome, Vec<Checked>), Rejection> {
    let mut emitted = Vec::new();
    let mut failures = Vec::new();
    let outcome = processor.process(message, |record| {
        match avro_round_trip(record) {
            Ok(encoded) => emitted.push((
                record.topic(),
                record.key().to_owned(),
                encoded,
                to_json(record),
            )),
            Err(e) => failures.push(e),
        }
        Ok(())
    })?;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    Ok((outcome, emitted))
}

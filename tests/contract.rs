//! The data contract: the `.avsc` files in `schemas/` and the records the core writes.
//!
//! - A fixed corpus covers every record type with every optional field present and absent (the
//!   corpus checks its own coverage), and every record round-trips through its Avro schema.
//! - The schemas are documented (every field, record and enum has a doc), namespaced, evolvable
//!   (every enum has a default, every nullable field defaults to null) and consistent (a named
//!   type defined in several files is defined the same way).
//! - The symbols of each Rust enum are the schema's symbols, in order: Avro writes the position.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use callstream::core::encode::{schema, schema_text};
use callstream::core::model::{
    AvroEnum, ConferenceRole, Direction, InputShape, OriginType, PhoneNumberKind, RingRole,
    StatusCode, StatusReason, TransferType,
};
use callstream::core::{Processor, ProcessorConfig, TopicKind};
use common::*;
use serde_json::{json, Value};

/// A party with every field the contract carries.
fn full_party() -> Value {
    json!({
        "accountId": ACCOUNT_ID,
        "extensionId": EXTENSION_ID,
        "id": PARTY_ID,
        "direction": "Inbound",
        "to": {"phoneNumber": "102", "name": "Tom Sawyer", "extensionId": EXTENSION_ID, "deviceId": "802398128004"},
        "from": {"phoneNumber": "+17205551234", "name": "Zoë \"Z\" Müller", "extensionId": OTHER_EXTENSION_ID, "deviceId": "802398128005"},
        "status": {
            "code": "Disconnected",
            "reason": "AttendedTransfer",
            "description": "Transferred",
            "rcc": true,
            "peerId": {"telephonySessionId": "s-peer", "sessionId": "402936342008", "partyId": "p-peer-1"}
        },
        "park": {"id": "801"},
        "missedCall": true,
        "standAlone": false,
        "muted": "False",
        "queueCall": true,
        "conferenceRole": "Host",
        "ringOutRole": "Initiator",
        "ringMeRole": "Target",
        "recordings": [
            {"id": "9312838004", "active": true},
            {"id": "9312838005", "active": false},
            {"id": "9312838006"},
            {"active": true}
        ],
        "sipData": {"callId": "555555555555", "toTag": "123", "fromTag": "456"},
        "uiCallInfo": {
            "primary": {"type": "QueueName", "value": "Support"},
            "additional": {"type": "CallerIdName", "value": "WIRELESS CALLER"}
        }
    })
}

/// The corpus: every record type, every optional field present and absent, every input shape,
/// unknown enum values.
fn corpus() -> Vec<(&'static str, Vec<u8>)> {
    let mut full_body = body(SESSION_ID, 7, vec![full_party()]);
    full_body["accountId"] = json!(ACCOUNT_ID);

    let mut corpus = vec![
        ("full webhook", bytes(&webhook("1", full_body.clone()))),
        (
            "full apple push",
            bytes(&apple_push("2", full_body.clone())),
        ),
        (
            "full websocket",
            bytes(&websocket_frame("3", full_body.clone())),
        ),
        ("full bare body", bytes(&full_body)),
        (
            "minimal party",
            bytes(
                &json!({"telephonySessionId": "s-min-1", "parties": [minimal_party("p-1", "Setup")]}),
            ),
        ),
        (
            "minimal missed and recorded",
            bytes(&json!({"telephonySessionId": "s-min-2", "parties": [{
                "id": "p-1", "status": {"code": "VoiceMail"}, "missedCall": true, "recordings": [{"id": "r-1"}]
            }]})),
        ),
        (
            "minimal transfer",
            bytes(&json!({"telephonySessionId": "s-min-3", "parties": [{
                "id": "p-1", "status": {"code": "Gone", "reason": "DtmfTransfer"}
            }]})),
        ),
        (
            "empty nested objects",
            bytes(&json!({"telephonySessionId": "s-min-4", "parties": [{
                "id": "p-1",
                "status": {"code": "Gone", "reason": "BlindTransfer", "peerId": {}},
                "from": {}, "to": {"name": "Only a name"}, "park": {}, "sipData": {},
                "uiCallInfo": {"primary": {}}, "missedCall": true, "recordings": [{"id": "r-1", "active": false}]
            }]})),
        ),
        (
            "unknown enum values",
            bytes(
                &json!({"telephonySessionId": "s-unk", "origin": {"type": "Teleport"}, "parties": [{
                    "id": "p-1",
                    "direction": "Sideways",
                    "status": {"code": "Ringing", "reason": "QuantumEntanglement"},
                    "conferenceRole": "Moderator", "ringOutRole": "Bystander", "ringMeRole": "Observer",
                    "from": {"phoneNumber": "anonymous"}, "to": {"phoneNumber": "11104"},
                    "missedCall": "True", "recordings": [{"id": 1, "active": "True"}]
                }]}),
            ),
        ),
    ];
    // Every transfer type and every phone-number kind.
    for (i, reason) in ["BlindTransfer", "RccTransfer"].into_iter().enumerate() {
        let mut party = party(&format!("p-t-{i}"), EXTENSION_ID, "Gone");
        party["status"]["reason"] = json!(reason);
        party["to"] = json!({"phoneNumber": "7205551234"});
        corpus.push((
            reason,
            bytes(&webhook(
                &format!("t{i}"),
                body("s-t", i as i64, vec![party]),
            )),
        ));
    }
    corpus.push(("the seed example", seed_example()));
    corpus
}

/// Every record of the corpus with its Avro bytes and JSON form; each already round-tripped.
fn corpus_records() -> Vec<(TopicKind, Vec<u8>, Value)> {
    let mut all = Vec::new();
    for (name, message) in corpus() {
        let mut processor = Processor::new(ProcessorConfig::default());
        let (outcome, records) = run_checked(&mut processor, &message)
            .unwrap_or_else(|r| panic!("{name} is rejected: {r}"));
        assert!(outcome.emitted > 0, "{name}");
        all.extend(
            records
                .into_iter()
                .map(|(topic, _, avro, json)| (topic, avro, json)),
        );
    }
    all
}

#[test]
fn every_schema_parses() {
    for topic in TopicKind::ALL {
        assert!(
            schema(topic).is_ok(),
            "{topic:?}: {:?}",
            schema(topic).err()
        );
    }
}

#[test]
fn every_record_of_the_corpus_round_trips_through_its_avro_schema() {
    let records = corpus_records();
    for topic in TopicKind::ALL {
        assert!(
            records.iter().any(|(t, _, _)| *t == topic),
            "the corpus yields no {topic:?} record"
        );
    }
}

/// Records every JSON path of a record value as seen null or seen with a value.
fn observe(value: &Value, path: String, seen: &mut BTreeMap<String, (bool, bool)>) {
    match value {
        Value::Object(fields) => {
            for (name, v) in fields {
                let p = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                let entry = seen.entry(p.clone()).or_default();
                if v.is_null() {
                    entry.0 = true;
                } else {
                    entry.1 = true;
                }
                observe(v, p, seen);
            }
        }
        Value::Array(items) => {
            for item in items {
                observe(item, format!("{path}[]"), seen);
            }
        }
        _ => {}
    }
}

/// The JSON paths of the nullable fields of a schema, nested records and arrays included.
fn nullable_paths(
    schema: &Value,
    path: &str,
    named: &mut BTreeMap<String, Value>,
    out: &mut BTreeSet<String>,
) {
    let Some(fields) = schema["fields"].as_array() else {
        return;
    };
    for field in fields {
        let name = field["name"].as_str().unwrap();
        let p = if path.is_empty() {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        };
        let mut ty = field["type"].clone();
        if let Some(branches) = ty.as_array() {
            assert_eq!(branches.len(), 2, "{p}: unions are [null, T]");
            assert_eq!(branches[0], json!("null"), "{p}: unions are [null, T]");
            out.insert(p.clone());
            ty = branches[1].clone();
        }
        let ty = resolve(ty, named);
        match ty["type"].as_str() {
            Some("record") => nullable_paths(&ty, &p, named, out),
            Some("array") => {
                let items = resolve(ty["items"].clone(), named);
                nullable_paths(&items, &format!("{p}[]"), named, out);
            }
            _ => {}
        }
    }
}

/// A type by reference (`"Endpoint"`) to its definition; remembers definitions as they appear.
fn resolve(ty: Value, named: &mut BTreeMap<String, Value>) -> Value {
    if let Some(name) = ty.as_str() {
        return named.get(name).cloned().unwrap_or(ty);
    }
    if let Some(name) = ty["name"].as_str() {
        named.insert(name.to_owned(), ty.clone());
    }
    ty
}

fn schema_json(topic: TopicKind) -> Value {
    serde_json::from_str(schema_text(topic)).expect("schema files are JSON")
}

#[test]
fn the_corpus_has_every_optional_field_present_and_absent() {
    let records = corpus_records();
    for topic in TopicKind::ALL {
        let mut seen = BTreeMap::new();
        for (_, _, json) in records.iter().filter(|(t, _, _)| *t == topic) {
            observe(json, String::new(), &mut seen);
        }
        let mut nullable = BTreeSet::new();
        nullable_paths(&schema_json(topic), "", &mut BTreeMap::new(), &mut nullable);
        assert!(!nullable.is_empty());
        for path in &nullable {
            let (null, present) = seen.get(path).copied().unwrap_or_default();
            assert!(
                null && present,
                "{topic:?}.{path}: seen null {null}, present {present}"
            );
        }
    }
}

/// Every field, record and enum definition in a schema, depth first.
fn walk<'v>(ty: &'v Value, visit: &mut dyn FnMut(&'v Value)) {
    match ty {
        Value::Array(branches) => branches.iter().for_each(|b| walk(b, visit)),
        Value::Object(o) => {
            visit(ty);
            if let Some(fields) = o.get("fields").and_then(Value::as_array) {
                for field in fields {
                    visit(field);
                    walk(&field["type"], visit);
                }
            }
            if let Some(items) = o.get("items") {
                walk(items, visit);
            }
        }
        _ => {}
    }
}

#[test]
fn every_schema_has_a_namespace_and_a_doc() {
    for topic in TopicKind::ALL {
        let s = schema_json(topic);
        assert_eq!(s["type"], json!("record"), "{topic:?}");
        let namespace = s["namespace"].as_str().unwrap_or_default();
        assert!(!namespace.is_empty(), "{topic:?} has no namespace");
        assert_eq!(namespace, "com.callstream.telephony", "{topic:?}");
        assert!(
            s["doc"].as_str().is_some_and(|d| !d.is_empty()),
            "{topic:?}"
        );
    }
}

#[test]
fn every_field_record_and_enum_has_a_doc() {
    for topic in TopicKind::ALL {
        let s = schema_json(topic);
        let mut missing = Vec::new();
        let mut fields = 0;
        walk(&s, &mut |node| {
            let is_field = node.get("name").is_some()
                && node.get("type").is_some()
                && node.get("fields").is_none()
                && node.get("symbols").is_none();
            let is_named = matches!(node["type"].as_str(), Some("record" | "enum"));
            if is_field || is_named {
                fields += usize::from(is_field);
                if node["doc"].as_str().is_none_or(|d| d.trim().is_empty()) {
                    missing.push(node["name"].as_str().unwrap_or("?").to_owned());
                }
            }
        });
        assert!(fields > 10, "{topic:?}: the walk found {fields} fields");
        assert!(missing.is_empty(), "{topic:?}: no doc on {missing:?}");
    }
}

/// Every enum definition in the schemas, by name, with the file it is in.
fn schema_enums() -> Vec<(TopicKind, String, Value)> {
    let mut enums = Vec::new();
    for topic in TopicKind::ALL {
        let s = schema_json(topic);
        walk(&s, &mut |node| {
            if node["type"] == json!("enum") {
                enums.push((
                    topic,
                    node["name"].as_str().unwrap().to_owned(),
                    node.clone(),
                ));
            }
        });
    }
    enums
}

#[test]
fn every_enum_has_a_default_among_its_symbols() {
    let enums = schema_enums();
    assert!(enums.len() >= 9);
    for (topic, name, e) in enums {
        let symbols: Vec<&str> = e["symbols"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        let default = e["default"]
            .as_str()
            .unwrap_or_else(|| panic!("{topic:?}: enum {name} has no default"));
        assert!(symbols.contains(&default), "{topic:?}: {name}");
        // `AvroEnum` promises that the default is the last symbol.
        assert_eq!(symbols.last(), Some(&default), "{topic:?}: {name}");
    }
}

#[test]
fn every_nullable_field_defaults_to_null() {
    for topic in TopicKind::ALL {
        let s = schema_json(topic);
        walk(&s, &mut |node| {
            if let Some(branches) = node["type"].as_array() {
                assert_eq!(branches[0], json!("null"), "{topic:?}.{}", node["name"]);
                assert_eq!(
                    node.get("default"),
                    Some(&Value::Null),
                    "{topic:?}.{}",
                    node["name"]
                );
            }
        });
    }
}

#[test]
fn a_type_defined_in_several_schemas_is_defined_the_same_way() {
    let mut definitions: BTreeMap<String, (TopicKind, Value)> = BTreeMap::new();
    for topic in TopicKind::ALL {
        let s = schema_json(topic);
        walk(&s, &mut |node| {
            if matches!(node["type"].as_str(), Some("record" | "enum"))
                && node.get("name").is_some()
            {
                let name = node["name"].as_str().unwrap().to_owned();
                if node.get("namespace").is_some() {
                    return; // a top-level record, one per topic
                }
                match definitions.get(&name) {
                    Some((first, def)) => {
                        assert_eq!(def, node, "{name}: {first:?} and {topic:?} differ")
                    }
                    None => {
                        definitions.insert(name, (topic, node.clone()));
                    }
                }
            }
        });
    }
    for shared in ["Endpoint", "StatusCode", "Direction", "LinkedSession"] {
        assert!(definitions.contains_key(shared), "{shared}");
    }
}

fn rust_symbols() -> Vec<(&'static str, &'static [&'static str])> {
    vec![
        ("StatusCode", StatusCode::SYMBOLS),
        ("StatusReason", StatusReason::SYMBOLS),
        ("OriginType", OriginType::SYMBOLS),
        ("Direction", Direction::SYMBOLS),
        ("ConferenceRole", ConferenceRole::SYMBOLS),
        ("RingRole", RingRole::SYMBOLS),
        ("InputShape", InputShape::SYMBOLS),
        ("TransferType", TransferType::SYMBOLS),
        ("PhoneNumberKind", PhoneNumberKind::SYMBOLS),
    ]
}

#[test]
fn rust_enum_symbols_equal_the_schema_symbols_in_order() {
    let enums = schema_enums();
    let rust = rust_symbols();
    for (name, symbols) in &rust {
        let definitions: Vec<_> = enums.iter().filter(|(_, n, _)| n == name).collect();
        assert!(!definitions.is_empty(), "no schema defines enum {name}");
        for (topic, _, e) in definitions {
            assert_eq!(e["symbols"], json!(symbols), "{name} in {topic:?}");
        }
    }
    // And no schema enum lacks a Rust counterpart.
    let known: BTreeSet<&str> = rust.iter().map(|(n, _)| *n).collect();
    for (topic, name, _) in &enums {
        assert!(
            known.contains(name.as_str()),
            "{topic:?}: enum {name} has no Rust type"
        );
    }
}

#[test]
fn rust_enum_indexes_follow_the_symbols() {
    assert_eq!(StatusCode::Setup.index(), 0);
    assert_eq!(StatusCode::Unknown.as_str(), "UNKNOWN");
    assert_eq!(
        StatusCode::VoiceMailScreening.as_str(),
        "VoiceMailScreening"
    );
    assert_eq!(StatusReason::CallSwitch.as_str(), "CallSwitch");
    assert_eq!(InputShape::BareBody.as_str(), "BareBody");
    assert_eq!(PhoneNumberKind::Other.as_str(), "Other");
    for (name, symbols) in rust_symbols() {
        let unique: BTreeSet<_> = symbols.iter().collect();
        assert_eq!(unique.len(), symbols.len(), "{name} has duplicate symbols");
    }
}

#[test]
fn the_avro_bytes_of_the_seed_example_are_stable() {
    // Encoding is deterministic: the same message always yields the same bytes.
    let mut first = Processor::new(ProcessorConfig::default());
    let mut second = Processor::new(ProcessorConfig::default());
    let a = run_checked(&mut first, &seed_example()).unwrap().1;
    let b = run_checked(&mut second, &seed_example()).unwrap().1;
    assert_eq!(a.len(), 1);
    assert_eq!(a, b);
    // The record id leads the datum as an Avro string: length, then bytes.
    let (_, _, avro, json) = &a[0];
    let id = json["record_id"].as_str().unwrap();
    let mut length = Vec::new();
    let mut n = (id.len() as u64) << 1; // zig-zag of a non-negative length
    while n >= 0x80 {
        length.push((n as u8) | 0x80);
        n >>= 7;
    }
    length.push(n as u8);
    assert_eq!(
        &avro[..length.len()],
        &length[..],
        "the length of the record id"
    );
    assert_eq!(&avro[length.len()..length.len() + id.len()], id.as_bytes());
}

/// What a Java consumer does with the shipped schemas: avro-maven-plugin generates classes from
/// the whole `schemas/` directory (named types shared between files included), and each record
/// callstream writes, in Avro single-object encoding, decodes with its topic's class (Avro's
/// reference implementation checks the fingerprint) and encodes again to the same bytes, so every
/// field was read as written. Runs `tests/java` with Maven, which the test command needs anyway
/// for the broker; the first run fetches Avro's plugin from Maven Central.
#[test]
fn java_classes_generated_from_the_schemas_decode_every_record() {
    use callstream::core::framing::ValueFormat;
    use callstream::generate::{Generator, GeneratorConfig};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    let format = ValueFormat::single_object().expect("schemas");
    let mut records = corpus_records();
    let mut processor = Processor::new(ProcessorConfig::default());
    for line in Generator::new(GeneratorConfig {
        seed: 91,
        ..Default::default()
    })
    .take(2_000)
    {
        if let Ok((_, emitted)) = run_checked(&mut processor, line.as_bytes()) {
            records.extend(
                emitted
                    .into_iter()
                    .map(|(topic, _, avro, json)| (topic, avro, json)),
            );
        }
    }
    for topic in TopicKind::ALL {
        assert!(records.iter().any(|(t, _, _)| *t == topic), "{topic:?}");
    }
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let framed: Vec<(TopicKind, String, String)> = records
        .iter()
        .map(|(topic, avro, json)| {
            let mut value = format.prefix(*topic).to_vec();
            value.extend_from_slice(avro);
            let id = json["record_id"].as_str().expect("record_id").to_owned();
            (*topic, hex(&value), id)
        })
        .collect();

    let dir = std::env::temp_dir().join(format!("callstream-java-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("work directory");
    let (input, output) = (dir.join("records.txt"), dir.join("decoded.txt"));
    let lines: Vec<String> = framed
        .iter()
        .map(|(topic, value, _)| format!("{}\t{value}", topic.label()))
        .collect();
    std::fs::write(&input, lines.join("\n") + "\n").expect("records file");
    let pom = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/java/pom.xml");
    // Maven's output goes to a file: a pipe nobody reads while it runs could fill and block it.
    let log_path = dir.join("maven.log");
    let log = std::fs::File::create(&log_path).expect("Maven's log");
    let mut maven = Command::new("mvn")
        .args(["-B", "-q", "-f", pom])
        .arg(format!("-Dbuild.dir={}", dir.join("build").display()))
        .args(["compile", "exec:java"])
        .env("CALLSTREAM_RECORDS", &input)
        .env("CALLSTREAM_DECODED", &output)
        .stdout(Stdio::from(log.try_clone().expect("Maven's log")))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("Maven (mvn) runs: the test command needs it for the broker too");
    // A cold Maven cache fetches Avro and the plugins first.
    let deadline = Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(status) = maven.try_wait().expect("wait for Maven") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = maven.kill();
            let _ = maven.wait();
            panic!(
                "Maven did not finish within 10 minutes; its log: {}",
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        status.success(),
        "Maven failed:\n{}",
        std::fs::read_to_string(&log_path).unwrap_or_default()
    );
    let decoded = std::fs::read_to_string(&output).expect("decoded records");
    let decoded: Vec<&str> = decoded.lines().collect();
    assert_eq!(decoded.len(), framed.len(), "one line per record");
    for ((topic, value, id), line) in framed.iter().zip(decoded) {
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(fields.len(), 3, "{line}");
        assert_eq!(fields[0], topic.label());
        assert_eq!(fields[2], id, "{topic:?}: the record id Java read");
        assert_eq!(fields[1], value, "{topic:?} {id}: encoded again by Java");
    }
    std::fs::remove_dir_all(&dir).ok();
}

//! Hostile input: whatever the bytes, the core returns a rejection with the stage that refused
//! the message, a stable code, a reason and (where there is one) the JSON path, and never
//! panics, overflows its stack or stops processing the next message.

mod common;

use std::io::Cursor;

use callstream::cli::offline::{self, Input};
use callstream::core::{Processor, ProcessorConfig, Stage};
use callstream::topics::TopicNames;
use common::*;
use serde_json::{json, Value};

fn good() -> Value {
    webhook("100000000000000001", one_party_body("Answered"))
}

fn good_apple() -> Value {
    apple_push("100000000000000001", one_party_body("Answered"))
}

/// Sets (or adds) `value` at a JSON pointer of a clone of `message`.
fn with(message: &Value, pointer: &str, value: Value) -> Vec<u8> {
    let mut message = message.clone();
    let (parent, last) = pointer.rsplit_once('/').expect("a JSON pointer");
    match message.pointer_mut(parent) {
        Some(Value::Object(fields)) => {
            fields.insert(last.to_owned(), value);
        }
        Some(Value::Array(items)) => items[last.parse::<usize>().unwrap()] = value,
        _ => panic!("no {parent} in the template"),
    }
    bytes(&message)
}

#[test]
fn an_empty_line_is_rejected_as_empty() {
    assert_rejected(b"", Stage::Decode, "empty", None);
}

#[test]
fn a_line_of_whitespace_is_rejected_as_empty() {
    for line in [&b" "[..], b"\t", b"\r\n", b"   \n\n  "] {
        assert_rejected(line, Stage::Decode, "empty", None);
    }
}

#[test]
fn json_null_is_not_a_notification() {
    let rejection = assert_rejected(b"null", Stage::Envelope, "not_an_object", None);
    assert!(rejection.reason.contains("null"), "{rejection}");
}

#[test]
fn json_scalars_are_not_notifications() {
    for (line, found) in [
        (&b"42"[..], "a number"),
        (b"-1.5e300", "a number"),
        (b"18446744073709551616", "a number"),
        (b"true", "a boolean"),
        (b"\"hello\"", "a string"),
        (b" \"\" ", "a string"),
    ] {
        let rejection = assert_rejected(line, Stage::Envelope, "not_an_object", None);
        assert!(rejection.reason.contains(found), "{rejection}");
    }
}

#[test]
fn every_truncation_of_a_good_message_is_rejected_as_truncated() {
    for message in [
        good(),
        good_apple(),
        websocket_frame("1", one_party_body("Hold")),
    ] {
        let full = bytes(&message);
        // Every proper prefix, from one byte up to one byte short.
        for len in 1..full.len() {
            let rejection = reject(&full[..len]);
            assert_eq!(
                (rejection.stage, rejection.code),
                (Stage::Decode, "truncated"),
                "prefix of {len} bytes: {rejection:?}"
            );
        }
    }
}

#[test]
fn a_message_cut_inside_a_multi_byte_character_is_truncated() {
    let line = bytes(&webhook_with_name("Zoë Müller"));
    let cut = line.windows(2).position(|w| w == "ë".as_bytes()).unwrap() + 1;
    let rejection = assert_rejected(&line[..cut], Stage::Decode, "truncated", None);
    assert!(!rejection.reason.contains("UTF-8"), "{rejection}");
    // The same bytes followed by more JSON are badly encoded, not truncated.
    let garbled = [&line[..cut], &line[cut + 1..]].concat();
    assert_rejected(&garbled, Stage::Decode, "not_utf8", None);
    // A lone partial character is not a truncated JSON document.
    assert_rejected(
        "ë".as_bytes().split_last().unwrap().1,
        Stage::Decode,
        "not_utf8",
        None,
    );
}

fn webhook_with_name(name: &str) -> Value {
    let mut message = good();
    message["body"]["parties"][0]["from"]["name"] = json!(name);
    message
}

#[test]
fn malformed_json_syntax_is_rejected_as_syntax() {
    for line in [
        &br#"{"uuid": 1,}"#[..],
        br#"{uuid: 1}"#,
        br#"{"a" 1}"#,
        br#"{"a": tru}"#,
        br#"{"a": 01}"#,
        br#"{"a": "\x"}"#,
        br#"}"#,
        br#"[1 2]"#,
        b"{\"a\": \"tab\there\"}",
    ] {
        let rejection = assert_rejected(line, Stage::Decode, "syntax", None);
        assert!(!rejection.reason.is_empty());
    }
}

#[test]
fn trailing_garbage_after_a_valid_object_is_rejected() {
    let good = bytes(&good());
    for garbage in [&b"x"[..], b" }", b",", b"{}", b"\n{\"a\":1}", b"]"] {
        let line = [&good[..], garbage].concat();
        let rejection = assert_rejected(&line, Stage::Decode, "syntax", None);
        assert!(rejection.reason.contains("trailing"), "{rejection}");
    }
    // Trailing whitespace is not garbage.
    let line = [&good[..], b"  \r\n"].concat();
    assert!(process(&line).is_ok());
}

/// Wrong JSON types at many places: each names the offending field.
#[test]
fn wrong_types_are_rejected_with_the_path_of_the_field() {
    let webhook = good();
    let cases: Vec<(&Value, &str, Value, &str)> = vec![
        (&webhook, "/body/parties", json!("p-1"), "body.parties"),
        (
            &webhook,
            "/body/parties",
            json!({"id": "p-1"}),
            "body.parties",
        ),
        (&webhook, "/body/parties/0", json!("p-1"), "body.parties[0]"),
        (&webhook, "/body/parties/0", json!(null), "body.parties[0]"),
        (
            &webhook,
            "/body/parties/0/status",
            json!(5),
            "body.parties[0].status",
        ),
        (
            &webhook,
            "/body/parties/0/status",
            json!("Answered"),
            "body.parties[0].status",
        ),
        (
            &webhook,
            "/body/parties/0/status/code",
            json!(7),
            "body.parties[0].status.code",
        ),
        (
            &webhook,
            "/body/parties/0/status/code",
            json!({}),
            "body.parties[0].status.code",
        ),
        (
            &webhook,
            "/body/parties/0/status/reason",
            json!(false),
            "body.parties[0].status.reason",
        ),
        (
            &webhook,
            "/body/parties/0/status/rcc",
            json!("yes"),
            "body.parties[0].status.rcc",
        ),
        (
            &webhook,
            "/body/parties/0/status/peerId",
            json!("s-1"),
            "body.parties[0].status.peerId",
        ),
        (&webhook, "/body/sequence", json!({}), "body.sequence"),
        (&webhook, "/body/sequence", json!(1.5), "body.sequence"),
        (&webhook, "/body/sequence", json!("five"), "body.sequence"),
        (
            &webhook,
            "/body/sequence",
            json!(18_446_744_073_709_551_615u64),
            "body.sequence",
        ),
        (&webhook, "/body/sequence", json!(true), "body.sequence"),
        (
            &webhook,
            "/body/parties/0/extensionId",
            json!({}),
            "body.parties[0].extensionId",
        ),
        (
            &webhook,
            "/body/parties/0/extensionId",
            json!([1]),
            "body.parties[0].extensionId",
        ),
        (
            &webhook,
            "/body/parties/0/extensionId",
            json!(1.5),
            "body.parties[0].extensionId",
        ),
        (
            &webhook,
            "/body/parties/0/extensionId",
            json!(true),
            "body.parties[0].extensionId",
        ),
        (
            &webhook,
            "/body/parties/0/id",
            json!({"id": 1}),
            "body.parties[0].id",
        ),
        (
            &webhook,
            "/body/parties/0/missedCall",
            json!("maybe"),
            "body.parties[0].missedCall",
        ),
        (
            &webhook,
            "/body/parties/0/missedCall",
            json!(1),
            "body.parties[0].missedCall",
        ),
        (
            &webhook,
            "/body/parties/0/direction",
            json!(1),
            "body.parties[0].direction",
        ),
        (
            &webhook,
            "/body/parties/0/from",
            json!("+17205551234"),
            "body.parties[0].from",
        ),
        (
            &webhook,
            "/body/parties/0/from/phoneNumber",
            json!(true),
            "body.parties[0].from.phoneNumber",
        ),
        (
            &webhook,
            "/body/parties/0/to/name",
            json!(["Tom"]),
            "body.parties[0].to.name",
        ),
        (
            &webhook,
            "/body/telephonySessionId",
            json!({}),
            "body.telephonySessionId",
        ),
        (
            &webhook,
            "/body/telephonySessionId",
            json!(false),
            "body.telephonySessionId",
        ),
        (
            &webhook,
            "/body/eventTime",
            json!(1528157690147u64),
            "body.eventTime",
        ),
        (&webhook, "/body/origin", json!("Call"), "body.origin"),
        (&webhook, "/body/origin/type", json!(1), "body.origin.type"),
        (&webhook, "/body", json!("body"), "body"),
        (&webhook, "/body", json!(7), "body"),
        (&webhook, "/uuid", json!([]), "uuid"),
        (&webhook, "/uuid", json!({}), "uuid"),
        (&webhook, "/event", json!(5), "event"),
        (&webhook, "/timestamp", json!(5), "timestamp"),
        (&webhook, "/subscriptionId", json!(null), ""), // null is "absent": accepted below
    ];
    for (template, pointer, value, path) in cases {
        let line = with(template, pointer, value.clone());
        if path.is_empty() {
            assert!(process(&line).is_ok(), "{pointer} = {value}");
            continue;
        }
        let rejection = reject(&line);
        assert_eq!(
            (rejection.stage, rejection.code, rejection.path.as_deref()),
            (Stage::Decode, "wrong_type", Some(path)),
            "{pointer} = {value}: {rejection}"
        );
        assert!(
            rejection.reason.starts_with("wrong type or value"),
            "{rejection}"
        );
    }
}

#[test]
fn wrong_types_in_optional_party_fields_are_rejected_with_their_path() {
    let mut template = good();
    let party = &mut template["body"]["parties"][0];
    party["recordings"] = json!([{"id": "r-1", "active": true}]);
    party["park"] = json!({"id": "801"});
    party["uiCallInfo"] = json!({"primary": {"type": "QueueName", "value": "Support"}});
    party["sipData"] = json!({"callId": "1"});
    party["status"]["peerId"] = json!({"telephonySessionId": "s-2"});
    assert!(process(&bytes(&template)).is_ok(), "the template is valid");

    let p = "/body/parties/0";
    let at = |field: &str| format!("body.parties[0].{field}");
    let cases = [
        (
            format!("{p}/recordings"),
            json!({"id": "r-1"}),
            at("recordings"),
        ),
        (format!("{p}/recordings"), json!("r-1"), at("recordings")),
        (
            format!("{p}/recordings/0"),
            json!("r-1"),
            at("recordings[0]"),
        ),
        (
            format!("{p}/recordings/0/id"),
            json!({}),
            at("recordings[0].id"),
        ),
        (
            format!("{p}/recordings/0/active"),
            json!(5),
            at("recordings[0].active"),
        ),
        (format!("{p}/park"), json!("801"), at("park")),
        (format!("{p}/park/id"), json!([]), at("park.id")),
        (format!("{p}/uiCallInfo"), json!(1), at("uiCallInfo")),
        (
            format!("{p}/uiCallInfo/primary"),
            json!("x"),
            at("uiCallInfo.primary"),
        ),
        (
            format!("{p}/uiCallInfo/primary/value"),
            json!(true),
            at("uiCallInfo.primary.value"),
        ),
        (format!("{p}/sipData"), json!(true), at("sipData")),
        (
            format!("{p}/sipData/callId"),
            json!({}),
            at("sipData.callId"),
        ),
        (
            format!("{p}/status/peerId/telephonySessionId"),
            json!([]),
            at("status.peerId.telephonySessionId"),
        ),
        (
            format!("{p}/conferenceRole"),
            json!(2),
            at("conferenceRole"),
        ),
        (format!("{p}/ringOutRole"), json!({}), at("ringOutRole")),
        (
            format!("{p}/queueCall"),
            json!("sometimes"),
            at("queueCall"),
        ),
    ];
    for (pointer, value, path) in cases {
        assert_rejected(
            &with(&template, &pointer, value.clone()),
            Stage::Decode,
            "wrong_type",
            Some(&path),
        );
    }
}

/// JSON arrays where objects belong are wrong types, not positional structs.
#[test]
fn arrays_in_place_of_objects_are_wrong_types() {
    let template = good();
    for (pointer, value, path) in [
        (
            "/body/parties/0",
            json!(["p-1", "400144452008"]),
            "body.parties[0]",
        ),
        (
            "/body/parties/0/status",
            json!(["Answered"]),
            "body.parties[0].status",
        ),
        (
            "/body/parties/0/from",
            json!(["+17205551234"]),
            "body.parties[0].from",
        ),
        ("/body/origin", json!(["Call"]), "body.origin"),
        ("/body", json!([5, "s-1"]), "body"),
    ] {
        assert_rejected(
            &with(&template, pointer, value),
            Stage::Decode,
            "wrong_type",
            Some(path),
        );
    }
    let mut recordings = template.clone();
    recordings["body"]["parties"][0]["recordings"] = json!([["r-1", true]]);
    assert_rejected(
        &bytes(&recordings),
        Stage::Decode,
        "wrong_type",
        Some("body.parties[0].recordings[0]"),
    );
}

#[test]
fn wrong_types_are_named_by_their_path_in_every_shape() {
    for (message, path) in [
        (good_apple(), "pn_apns.body.parties"),
        (
            websocket_frame("1", one_party_body("Answered")),
            "[1].body.parties",
        ),
        (one_party_body("Answered"), "parties"),
    ] {
        let pointer = match message {
            Value::Array(_) => "/1/body/parties",
            _ if message.get("pn_apns").is_some() => "/pn_apns/body/parties",
            _ => "/parties",
        };
        assert_rejected(
            &with(&message, pointer, json!("x")),
            Stage::Decode,
            "wrong_type",
            Some(path),
        );
    }
    assert_rejected(
        &with(&good_apple(), "/pn_apns", json!(5)),
        Stage::Decode,
        "wrong_type",
        Some("pn_apns"),
    );
}

#[test]
fn duplicate_keys_are_rejected() {
    let line = br#"{"telephonySessionId":"s-1","telephonySessionId":"s-2","parties":[{"id":"p","status":{"code":"Setup"}}]}"#;
    let rejection = assert_rejected(line, Stage::Decode, "wrong_type", None);
    assert!(rejection.reason.contains("duplicate"), "{rejection}");
}

#[test]
fn invalid_utf8_is_rejected_wherever_it_is() {
    let good = bytes(&good());
    let text = String::from_utf8(good.clone()).unwrap();
    let at = |needle: &str, bad: &[u8]| {
        let i = text.find(needle).unwrap() + needle.len();
        [&good[..i], bad, &good[i..]].concat()
    };
    for (name, line) in [
        ("a lone byte", vec![0xff]),
        ("only bad bytes", vec![0xc3, 0x28, 0xa0, 0xa1]),
        ("in a known string", at("\"name\":\"Tom", &[0xff, 0xfe])),
        (
            "in a session id",
            at("\"telephonySessionId\":\"s-", &[0xed, 0xa0, 0x80]),
        ),
        ("in a key", at("{\"", &[0x80])),
        ("outside strings", at("\"sequence\":5", &[0xc0, 0xaf])),
        ("a truncated sequence", at("\"name\":\"Tom", &[0xe2, 0x82])),
        (
            "in an unknown field",
            at("\"muted\":false", b",\"x-unknown\":\"\xff\xfe\""),
        ),
        (
            "in an unknown field's key",
            at("\"muted\":false", b",\"\xf0\x28\x8c\x28\":1"),
        ),
    ] {
        let rejection = reject(&line);
        assert_eq!(
            (rejection.stage, rejection.code),
            (Stage::Decode, "not_utf8"),
            "{name}: {rejection:?}"
        );
        assert!(rejection.reason.contains("UTF-8"), "{rejection}");
    }
}

#[test]
fn deeply_nested_arrays_do_not_overflow_the_stack() {
    let depth = 100_000;
    let line = [b"[".repeat(depth), b"]".repeat(depth)].concat();
    let rejection = reject(&line);
    assert_eq!(rejection.stage, Stage::Envelope, "{rejection:?}");
    assert_eq!(rejection.code, "not_a_frame");
    // Unclosed, it is truncated, not a crash.
    let rejection = reject(&b"[".repeat(depth));
    assert_eq!(
        (rejection.stage, rejection.code),
        (Stage::Decode, "truncated")
    );
}

#[test]
fn deeply_nested_objects_do_not_overflow_the_stack() {
    let depth = 100_000;
    let line = [b"{\"a\":".repeat(depth), b"1".to_vec(), b"}".repeat(depth)].concat();
    let rejection = reject(&line);
    assert_eq!(
        (rejection.stage, rejection.code),
        (Stage::Envelope, "no_body"),
        "{rejection:?}"
    );
}

#[test]
fn deep_nesting_where_the_notification_is_read_is_too_deep() {
    let depth = 100_000;
    // Bodies inside bodies: every level is read as a notification object.
    let line = [
        b"{\"body\":".repeat(depth),
        b"{}".to_vec(),
        b"}".repeat(depth),
    ]
    .concat();
    let rejection = assert_rejected(&line, Stage::Decode, "too_deep", None);
    let path = rejection.path.expect("a too-deep message names where");
    assert!(path.starts_with("body.body.body."), "{path}");

    // Arrays nested inside the parties.
    let mut line = br#"{"telephonySessionId":"s-1","parties":"#.to_vec();
    line.extend(b"[".repeat(depth));
    line.extend(b"]".repeat(depth));
    line.push(b'}');
    // The first party is an array: a wrong type, found before any depth is reached.
    assert_rejected(&line, Stage::Decode, "wrong_type", Some("parties[0]"));
}

#[test]
fn deep_nesting_in_a_websocket_meta_type_is_too_deep() {
    let depth = 100_000;
    let mut line = br#"[{"type":"#.to_vec();
    line.extend(b"[".repeat(depth));
    line.extend(b"]".repeat(depth));
    line.extend(br#"},{}]"#);
    let rejection = assert_rejected(&line, Stage::Decode, "too_deep", None);
    let path = rejection.path.expect("a too-deep message names where");
    assert!(path.starts_with("[0].type[0][0]"), "{path}");
}

#[test]
fn deep_nesting_inside_an_unknown_field_is_skipped_without_recursion() {
    let depth = 100_000;
    let mut message = bytes(&good());
    let deep = [
        b"[{\"x\":".repeat(depth),
        b"null".to_vec(),
        b"}]".repeat(depth),
    ]
    .concat();
    // Insert `"x-deep": <deep>,` right after the opening brace of the message.
    let insert = [&b"\"x-deep\":"[..], &deep, b","].concat();
    message.splice(1..1, insert);
    assert!(message.len() < 1024 * 1024);
    let (outcome, records) = process(&message).expect("an unknown field is tolerated");
    assert_eq!(outcome.emitted, 1);
    assert_eq!(records.len(), 1);
}

#[test]
fn a_10_mb_line_is_rejected_as_too_large_without_being_parsed() {
    let mut line = bytes(&good());
    let padding = format!(",\"padding\":\"{}\"}}", "x".repeat(10 * 1024 * 1024));
    line.pop(); // the closing brace
    line.extend(padding.as_bytes());
    assert!(line.len() > 10 * 1024 * 1024);
    let rejection = assert_rejected(&line, Stage::Decode, "too_large", None);
    assert!(
        rejection.reason.contains(&line.len().to_string()),
        "{rejection}"
    );
    assert!(rejection.reason.contains("1048576"), "{rejection}");

    // Even 10 MB of garbage is refused on its size alone.
    let garbage = vec![0xffu8; 10 * 1024 * 1024];
    assert_rejected(&garbage, Stage::Decode, "too_large", None);
}

#[test]
fn the_size_limit_is_configurable_and_inclusive() {
    let line = bytes(&good());
    let config = |max| ProcessorConfig {
        limits: callstream::core::DecodeLimits {
            max_message_bytes: max,
        },
        ..ProcessorConfig::default()
    };
    let mut exact = Processor::new(config(line.len()));
    assert!(run(&mut exact, &line).is_ok());
    let mut smaller = Processor::new(config(line.len() - 1));
    let rejection = run(&mut smaller, &line).unwrap_err();
    assert_eq!(
        (rejection.stage, rejection.code),
        (Stage::Decode, "too_large")
    );
}

#[test]
fn json_arrays_that_are_not_websocket_frames_are_rejected() {
    let payload = webhook("1", one_party_body("Answered"));
    let cases: Vec<(Value, &str)> = vec![
        (json!([1, 2, 3]), "not a meta object"),
        (json!([]), "empty array"),
        (json!([{"type": "Heartbeat"}, {}]), "Heartbeat"),
        (
            json!([{"type": "ClientRequest"}, payload.clone()]),
            "ClientRequest",
        ),
        (
            json!([{"kind": "ServerNotification"}, payload.clone()]),
            "no type",
        ),
        (json!([{"type": 5}, payload.clone()]), "meta type is 5"),
        (json!([{"type": "ServerNotification"}]), "no payload"),
        (
            json!([{"type": "ServerNotification"}, 5]),
            "not a JSON object",
        ),
        (
            json!([{"type": "ServerNotification"}, [payload.clone()]]),
            "not a JSON object",
        ),
        (
            json!([{"type": "ServerNotification"}, payload.clone(), {}]),
            "3 elements",
        ),
        (json!([payload.clone()]), "no type"),
        (json!([null, payload.clone()]), "not a meta object"),
        (
            json!(["ServerNotification", payload.clone()]),
            "not a meta object",
        ),
    ];
    for (message, why) in cases {
        let rejection = assert_rejected(&bytes(&message), Stage::Envelope, "not_a_frame", None);
        assert!(rejection.reason.contains(why), "{message}: {rejection}");
        assert!(rejection.reason.contains("WebSocket"), "{rejection}");
    }
}

#[test]
fn objects_that_are_not_notifications_are_rejected_at_the_envelope() {
    for message in [
        json!({}),
        json!({"foo": 1}),
        json!({"uuid": "1", "event": extension_event(), "subscriptionId": "s"}),
        json!({"uuid": "1", "body": null}),
        json!({"uuid": "1", "pn_apns": {"aps": {}}}),
        json!([{"type": "ServerNotification"}, {"uuid": "1"}]),
    ] {
        let rejection = assert_rejected(&bytes(&message), Stage::Envelope, "no_body", None);
        assert!(rejection.reason.contains("body"), "{rejection}");
        assert!(rejection.path.is_some(), "{rejection:?}");
    }
}

#[test]
fn a_rejection_displays_stage_reason_and_path() {
    let rejection = reject(&with(&good(), "/body/parties", json!("x")));
    let text = rejection.to_string();
    assert!(
        text.starts_with("decode error: wrong type or value"),
        "{text}"
    );
    assert!(text.ends_with("(at body.parties)"), "{text}");
}

/// After any rejection, the same processor still processes the next good message.
#[test]
fn the_next_message_is_still_processed_after_each_rejection() {
    let good = bytes(&good());
    let hostile: Vec<Vec<u8>> = vec![
        vec![],
        b"null".to_vec(),
        good[..good.len() / 2].to_vec(),
        vec![0xff, 0xfe],
        b"[1,2,3]".to_vec(),
        b"[".repeat(100_000),
        vec![b' '; 2 * 1024 * 1024],
        with(&self::good(), "/body/parties", json!("x")),
        [&good[..], b"garbage"].concat(),
    ];
    let mut processor = Processor::new(ProcessorConfig::default());
    for (i, line) in hostile.iter().enumerate() {
        assert!(run(&mut processor, line).is_err(), "line {i}");
        // A new uuid each time, so that it is not a transport duplicate.
        let next = bytes(&webhook(&format!("{i}"), {
            let mut body = one_party_body("Answered");
            body["sequence"] = json!(100 + i);
            body
        }));
        let (outcome, records) = run(&mut processor, &next).unwrap();
        assert_eq!((outcome.emitted, records.len()), (1, 1), "after line {i}");
    }
}

/// `process` through the offline CLI over in-memory JSON Lines.
fn offline_process(input: Vec<u8>) -> (offline::Totals, Vec<Value>) {
    let mut inputs = vec![Input {
        name: "mem.jsonl".into(),
        reader: Box::new(Cursor::new(input)),
    }];
    let mut out = Vec::new();
    let totals = offline::process(
        &mut inputs,
        &mut out,
        ProcessorConfig::default(),
        &TopicNames::default(),
    )
    .expect("in-memory I/O does not fail");
    let lines = out
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("process writes JSON Lines"))
        .collect();
    (totals, lines)
}

#[test]
fn a_repeated_field_is_named_with_its_path() {
    let top = br#"{"uuid":"1","uuid":"2","body":{"telephonySessionId":"s","parties":[{"id":"p","status":{"code":"Answered"}}]}}"#;
    let rejection = callstream::core::parse(top, &Default::default()).unwrap_err();
    assert_eq!(rejection.path.as_deref(), Some("uuid"), "{rejection}");
    let nested = br#"{"body":{"telephonySessionId":"s","parties":[{"id":"p","status":{"code":"Answered","code":"Gone"}}]}}"#;
    let rejection = callstream::core::parse(nested, &Default::default()).unwrap_err();
    assert_eq!(
        rejection.path.as_deref(),
        Some("body.parties[0].status.code"),
        "{rejection}"
    );
}

#[test]
fn offline_process_reads_a_file_that_starts_with_a_byte_order_mark() {
    let mut input = b"\xEF\xBB\xBF".to_vec();
    input.extend(bytes(&good()));
    input.extend(b"\n");
    // Only at the start of the file: elsewhere it is a line that is not JSON.
    input.extend(b"\xEF\xBB\xBF");
    input.extend(bytes(&good()));
    let (totals, _) = offline_process(input);
    assert_eq!((totals.accepted, totals.rejected), (1, 1));
}

#[test]
fn offline_process_turns_a_bad_line_into_a_dead_letter_and_processes_the_next() {
    let mut input = Vec::new();
    input.extend(b"{\"truncated\": \n");
    input.extend(bytes(&good()));
    input.extend(b"\n\xff\xfe\n");
    input.extend(bytes(&webhook("100000000000000002", {
        let mut body = one_party_body("Disconnected");
        body["sequence"] = json!(6);
        body
    })));
    input.extend(b"\r\n");
    let (totals, lines) = offline_process(input);
    assert_eq!(totals.lines, 4);
    assert_eq!((totals.accepted, totals.rejected), (2, 2));
    assert_eq!(totals.records, [2, 0, 0, 0]);
    let topics: Vec<&str> = lines.iter().map(|l| l["topic"].as_str().unwrap()).collect();
    assert_eq!(
        topics,
        [
            "telephony.sessions.dlq",
            "telephony.sessions.parties",
            "telephony.sessions.dlq",
            "telephony.sessions.parties",
        ]
    );
    assert_eq!(lines[0]["value"], json!("{\"truncated\": "));
    assert_eq!(
        lines[0]["error"],
        json!({"stage": "decode", "code": "truncated", "reason": lines[0]["error"]["reason"], "path": null})
    );
    assert_eq!(lines[2]["error"]["stage"], json!("decode"));
    assert_eq!(lines[2]["error"]["code"], json!("not_utf8"));
    assert_eq!(lines[1]["key"], json!(EXTENSION_ID));
    assert_eq!(lines[3]["value"]["status_code"], json!("Disconnected"));
}

#[test]
fn offline_process_refuses_what_the_service_refuses_for_its_size_and_prints_none_of_its_records() {
    // Each of 256 party records repeats a 20 KB event filter: over the output budget.
    let mut outgrowing = webhook(
        "100000000000000009",
        body(
            "s-outgrowing",
            5,
            (0..256)
                .map(|i| minimal_party(&format!("p-{i}"), "Answered"))
                .collect(),
        ),
    );
    outgrowing["event"] = json!(format!(
        "/restapi/v1.0/account/{}/telephony/sessions",
        "1".repeat(20_000)
    ));
    // A record too large only with its key (an extension id of 520 KB).
    let long_key = webhook("100000000000000010", {
        let mut body = one_party_body("Answered");
        body["parties"][0]["extensionId"] = json!("1".repeat(520_000));
        body
    });
    let input = [bytes(&outgrowing), bytes(&long_key), bytes(&good())].join(&b'\n');
    let (totals, lines) = offline_process(input);
    assert_eq!((totals.accepted, totals.rejected), (1, 2));
    assert_eq!(totals.records, [1, 0, 0, 0], "only the good line's record");
    assert_eq!(lines.len(), 3, "two dead letters and one record");
    assert_eq!(lines[0]["error"]["code"], json!("output_too_large"));
    assert_eq!(lines[1]["error"]["code"], json!("record_too_large"));
    assert_eq!(lines[2]["topic"], json!("telephony.sessions.parties"));
}

#[test]
fn offline_process_reports_the_path_of_a_dead_letter() {
    let (totals, lines) = offline_process(
        [
            with(&good(), "/body/parties/0/status", json!(5)),
            b"\n".to_vec(),
        ]
        .concat(),
    );
    assert_eq!(totals.rejected, 1);
    assert_eq!(lines[0]["error"]["stage"], json!("decode"));
    assert_eq!(lines[0]["error"]["code"], json!("wrong_type"));
    assert_eq!(lines[0]["error"]["path"], json!("body.parties[0].status"));
}

#[test]
fn offline_validate_reports_name_line_and_reason() {
    let mut input = Vec::new();
    input.extend(bytes(&good()));
    input.push(b'\n');
    input.extend(b"  \n"); // a blank line: no message, skipped, its number kept
    input.extend(b"not json\n");
    input.extend(bytes(&webhook("2", body(SESSION_ID, 1, vec![]))));
    input.push(b'\n');
    input.extend(b"[1,2,3]\n");
    let mut inputs = vec![Input {
        name: "calls.jsonl".into(),
        reader: Box::new(Cursor::new(input)),
    }];
    let mut out = Vec::new();
    let totals = offline::validate(&mut inputs, &mut out, ProcessorConfig::default()).unwrap();
    assert_eq!((totals.lines, totals.accepted, totals.rejected), (4, 1, 3));
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        lines[0].starts_with("calls.jsonl:3: decode error: "),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with("calls.jsonl:4: validate error: ")
            && lines[1].ends_with("(at body.parties)"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].starts_with("calls.jsonl:5: envelope error: JSON array is not a WebSocket"),
        "{}",
        lines[2]
    );
    assert_eq!(lines[3], "4 lines, 1 valid, 3 rejected");
}

/// A notification saved pretty-printed is one JSON document over many lines: `validate` says
/// so and how to convert it, and a path it cannot read is named.
#[test]
fn offline_commands_say_what_is_wrong_with_the_file_itself() {
    let dir = std::env::temp_dir().join(format!("callstream-offline-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let pretty = dir.join("saved.json");
    let document: Value = serde_json::from_slice(&bytes(&good())).expect("JSON");
    std::fs::write(
        &pretty,
        serde_json::to_string_pretty(&document).expect("pretty"),
    )
    .expect("write");
    let validate = |path: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_callstream"))
            .arg("validate")
            .arg(path)
            .output()
            .expect("run validate")
    };
    let out = validate(&pretty);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("one JSON document over many lines"),
        "{stderr}"
    );
    assert!(stderr.contains("jq -c"), "{stderr}");
    let out = validate(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains(&dir.display().to_string()), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

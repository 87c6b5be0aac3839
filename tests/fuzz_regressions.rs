//! Regressions for the fuzz targets in `fuzz/` (run them with `scripts/fuzz.sh`): the committed
//! seeds and the tricky inputs met while fuzzing go through `Processor::process` as the targets
//! send them, and each must end as a documented `Rejection` or as records that encode, frame and
//! decode back with their Avro schema, never as a panic.
//!
//! A crash the fuzzer finds gets a test here that feeds its input through the core and asserts
//! the sane outcome.

use std::path::Path;

use callstream::core::encode::{to_json, write_avro};
use callstream::core::framing::{decode_value, ValueFormat};
use callstream::core::{Outcome, Processor, ProcessorConfig, Rejection, Stage, TopicKind};

/// Every `callstream.error.code` the core may produce (README, "Dead letters").
const CORE_CODES: &[&str] = &[
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

/// What a message became: the outcome and the records emitted, as their topic and decoded JSON.
struct Run {
    result: Result<Outcome, Rejection>,
    records: Vec<(TopicKind, serde_json::Value)>,
}

impl Run {
    fn accepted(&self) -> &Outcome {
        match &self.result {
            Ok(outcome) => outcome,
            Err(rejection) => panic!("rejected: {rejection}"),
        }
    }

    fn rejection(&self) -> &Rejection {
        match &self.result {
            Ok(outcome) => panic!("accepted: {outcome:?}"),
            Err(rejection) => rejection,
        }
    }

    fn count(&self, topic: TopicKind) -> usize {
        self.records.iter().filter(|(t, _)| *t == topic).count()
    }
}

/// The fuzz targets' emit: every record framed with the single-object prefix, encoded, decoded
/// back with `framing::decode_value` and compared with its plain-JSON form.
fn process(bytes: &[u8]) -> Run {
    let format = ValueFormat::single_object().expect("schemas parse");
    let mut processor = Processor::new(ProcessorConfig::default());
    let mut records = Vec::new();
    let result = processor.process(bytes, |record| {
        let topic = record.topic();
        let mut value = format.prefix(topic).to_vec();
        write_avro(record, &mut value);
        let decoded = decode_value(topic, &value)
            .unwrap_or_else(|e| panic!("{} does not decode: {e}", record.record_id()));
        let apache_avro::types::Value::Record(fields) = &decoded else {
            panic!("{} decodes to {decoded:?}", record.record_id());
        };
        assert_eq!(
            fields.first().map(|(name, v)| (name.as_str(), v)),
            Some((
                "record_id",
                &apache_avro::types::Value::String(record.record_id().to_owned())
            ))
        );
        let json = to_json(record);
        let names: Vec<&str> = fields.iter().map(|(name, _)| name.as_str()).collect();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(names, keys, "Avro and JSON forms list the same fields");
        records.push((topic, json));
        Ok(())
    });
    match &result {
        Err(rejection) => {
            assert_ne!(rejection.stage, Stage::Encode, "{rejection}");
            assert!(
                CORE_CODES.contains(&rejection.code),
                "undocumented code: {rejection:?}"
            );
            assert!(!rejection.reason.is_empty());
        }
        Ok(outcome) => assert_eq!(outcome.emitted, records.len()),
    }
    // The same bytes again: the same rejection, or nothing emitted.
    let again = processor.process(bytes, |record| panic!("re-emitted {}", record.record_id()));
    match (&result, &again) {
        (Err(a), Err(b)) => assert_eq!(a, b),
        (Ok(_), Ok(outcome)) => assert_eq!(outcome.emitted, 0),
        _ => panic!("first {result:?}, then {again:?}"),
    }
    Run { result, records }
}

fn assert_rejected(bytes: &[u8], stage: Stage, code: &str) {
    let run = process(bytes);
    let rejection = run.rejection();
    assert_eq!(
        (rejection.stage, rejection.code),
        (stage, code),
        "{rejection}"
    );
}

#[test]
fn committed_fuzz_seeds_are_accepted_with_one_party_record_per_party() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut replayed = 0;
    for target in ["process_bytes", "structured_json"] {
        let mut seeds: Vec<_> = std::fs::read_dir(corpus.join(target))
            .unwrap_or_else(|e| panic!("fuzz/corpus/{target}: {e}"))
            .map(|entry| entry.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("seed-"))
            })
            .collect();
        seeds.sort();
        assert!(!seeds.is_empty(), "no committed seeds for {target}");
        for seed in seeds {
            let bytes = std::fs::read(&seed).unwrap();
            // structured_json reads `<notification> NUL <choices>`: the notification is the seed.
            let json = bytes.split(|&b| b == 0).next().unwrap();
            let parties = serde_json::from_slice::<serde_json::Value>(json)
                .map(|v| count_parties(&v))
                .unwrap_or_else(|e| panic!("{}: {e}", seed.display()));
            let run = process(json);
            run.accepted();
            assert_eq!(run.count(TopicKind::Parties), parties, "{}", seed.display());
            replayed += 1;
        }
    }
    assert!(replayed >= 2);
}

/// The parties of the body that the envelope rules find.
fn count_parties(message: &serde_json::Value) -> usize {
    let node = match message {
        serde_json::Value::Array(frame) => &frame[1],
        other => other.get("pn_apns").unwrap_or(other),
    };
    let body = node.get("body").unwrap_or(node);
    body["parties"].as_array().map_or(0, Vec::len)
}

const BODY: &str =
    r#""body":{"telephonySessionId":"s-1","parties":[{"id":"p-1","status":{"code":"Answered"}}]}"#;

fn webhook(extra: &str) -> Vec<u8> {
    format!("{{{extra}{BODY}}}").into_bytes()
}

#[test]
fn nesting_past_the_parser_limit_where_the_model_reads_is_too_deep() {
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    // Bodies inside bodies: RawNode is recursive.
    let mut nested = String::new();
    for _ in 0..200 {
        nested.push_str(r#"{"body":"#);
    }
    nested.push_str("{}");
    nested.push_str(&"}".repeat(200));
    assert_rejected(nested.as_bytes(), Stage::Decode, "too_deep");
    // Where the model wants an id, an array is refused before it is descended into.
    assert_rejected(
        format!(r#"{{"body":{{"telephonySessionId":{deep}}}}}"#).as_bytes(),
        Stage::Decode,
        "wrong_type",
    );
    // A frame whose meta type is deeply nested.
    let frame = format!(r#"[{{"type":{deep}}},{{{BODY}}}]"#);
    assert_rejected(frame.as_bytes(), Stage::Decode, "too_deep");
}

#[test]
fn deep_nesting_in_an_ignored_field_is_skipped_without_recursion() {
    // serde_json skips an unknown field's value iteratively, without its depth limit: deep
    // nesting there is harmless, and must not overflow the stack, even near the size limit.
    for depth in [200, 400_000] {
        let deep = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let run = process(&webhook(&format!(r#""x":{deep},"#)));
        assert_eq!(run.count(TopicKind::Parties), 1, "depth {depth}");
        let deep = format!(
            "{}{{}}{}",
            r#"{"a":"#.repeat(depth / 3),
            "}".repeat(depth / 3)
        );
        let run = process(&webhook(&format!(r#""x":{deep},"#)));
        assert_eq!(run.count(TopicKind::Parties), 1, "depth {depth}");
    }
    // The same value where the slow path (a failed parse, re-read for its JSON path) skips it.
    let deep = format!("{}{}", "[".repeat(400_000), "]".repeat(400_000));
    let broken = format!(
        r#"{{"x":{deep},"body":{{"telephonySessionId":"s","parties":[{{"id":"p","status":{{"code":7}}}}]}}}}"#
    );
    assert_rejected(broken.as_bytes(), Stage::Decode, "wrong_type");
}

#[test]
fn broken_text_is_a_decode_rejection() {
    // Cut inside a multi-byte character: the JSON is unfinished.
    let cut = "{\"body\":{\"telephonySessionId\":\"é".as_bytes();
    assert_rejected(&cut[..cut.len() - 1], Stage::Decode, "truncated");
    // An invalid byte in a field the model ignores.
    let mut bad = webhook(r#""x":"?","#);
    let at = bad.iter().position(|&b| b == b'?').unwrap();
    bad[at] = 0xff;
    assert_rejected(&bad, Stage::Decode, "not_utf8");
    // A byte-order mark is not JSON.
    let mut bom = b"\xEF\xBB\xBF".to_vec();
    bom.extend(webhook(""));
    assert_rejected(&bom, Stage::Decode, "syntax");
    // A lone surrogate escape in a field the model reads.
    assert_rejected(
        br#"{"body":{"telephonySessionId":"\ud800","parties":[{"id":"p","status":{"code":"Gone"}}]}}"#,
        Stage::Decode,
        "syntax",
    );
    assert_rejected(b" \n\t ", Stage::Decode, "empty");
    assert_rejected(b"null", Stage::Envelope, "not_an_object");
    // Trailing bytes after a complete notification.
    let mut trailing = webhook("");
    trailing.extend_from_slice(b" {}");
    assert_rejected(&trailing, Stage::Decode, "syntax");
}

#[test]
fn numbers_at_the_edges_of_their_types() {
    // u64::MAX is an id (kept as its digits); i64 bounds are sequences.
    let run = process(
        br#"{"body":{"telephonySessionId":18446744073709551615,"sequence":-9223372036854775808,"parties":[{"id":0,"status":{"code":"Answered"}}]}}"#,
    );
    run.accepted();
    let party = &run.records[0].1;
    assert_eq!(party["telephony_session_id"], "18446744073709551615");
    assert_eq!(party["sequence"], i64::MIN);
    assert_eq!(party["party_id"], "0");
    let run = process(
        br#"{"body":{"telephonySessionId":"s","sequence":"9223372036854775807","parties":[{"id":"p","status":{"code":"Answered"}}]}}"#,
    );
    assert_eq!(run.records[0].1["sequence"], i64::MAX);
    // Past i64, a sequence is the wrong value; a float is not an id; -0 parses as a float.
    for body in [
        r#"{"telephonySessionId":"s","sequence":9223372036854775808,"parties":[{"id":"p","status":{"code":"Gone"}}]}"#,
        r#"{"telephonySessionId":"s","sequence":-0,"parties":[{"id":"p","status":{"code":"Gone"}}]}"#,
        r#"{"telephonySessionId":1.0,"parties":[{"id":"p","status":{"code":"Gone"}}]}"#,
        r#"{"telephonySessionId":"s","parties":[{"id":1e3,"status":{"code":"Gone"}}]}"#,
    ] {
        assert_rejected(
            format!(r#"{{"body":{body}}}"#).as_bytes(),
            Stage::Decode,
            "wrong_type",
        );
    }
}

#[test]
fn times_at_the_edges_of_the_calendar() {
    for (time, millis) in [
        ("0000-01-01T00:00:00Z", -62_167_219_200_000i64),
        ("9999-12-31T23:59:59.999Z", 253_402_300_799_999),
        ("2016-12-31T23:59:60Z", 1_483_228_800_000),
        ("2024-02-29 12:00:00.5+00:30", 1_709_206_200_500),
        // ISO 8601's offsets without a colon, and of whole hours.
        ("2018-06-05T02:14:50+0200", 1_528_157_690_000),
        ("2018-06-05T02:14:50+02", 1_528_157_690_000),
    ] {
        let run = process(
            format!(
                r#"{{"timestamp":"{time}","body":{{"telephonySessionId":"s","eventTime":"{time}","parties":[{{"id":"p","status":{{"code":"Answered"}}}}]}}}}"#
            )
            .as_bytes(),
        );
        let outcome = run.accepted();
        assert_eq!(outcome.event_time_ms, Some(millis), "{time}");
        assert_eq!(run.records[0].1["event_time"], millis, "{time}");
        assert_eq!(run.records[0].1["sent_at"], millis, "{time}");
    }
    for time in [
        "2023-02-29T00:00:00Z",
        "2018-06-05T00:14:50+020",
        "２０１８-06-05T00:14:50Z",
    ] {
        assert_rejected(
            format!(
                r#"{{"body":{{"telephonySessionId":"s","eventTime":"{time}","parties":[{{"id":"p","status":{{"code":"Gone"}}}}]}}}}"#
            )
            .as_bytes(),
            Stage::Validate,
            "invalid_value",
        );
    }
}

#[test]
fn frames_that_are_not_notifications() {
    for frame in [
        format!(r#"[{{"type":"ServerNotification"}},{{{BODY}}},{{}}]"#),
        format!(r#"[{{"type":7}},{{{BODY}}}]"#),
        format!(r#"[{{"type":"ClientRequest"}},{{{BODY}}}]"#),
        r#"[{"type":"ServerNotification"}]"#.to_owned(),
        r#"[{"type":"ServerNotification"},"body"]"#.to_owned(),
        "[]".to_owned(),
    ] {
        assert_rejected(frame.as_bytes(), Stage::Envelope, "not_a_frame");
    }
    // A type that is there but not a string is named as found, not called missing.
    let run = process(format!(r#"[{{"type":7}},{{{BODY}}}]"#).as_bytes());
    let rejection = run.rejection();
    assert!(
        rejection.reason.contains("meta type is 7, not the string"),
        "{rejection}"
    );
}

#[test]
fn escapes_and_control_characters_round_trip() {
    let run = process(
        br#"{"event":"/telephony/sessions?x=/presence","body":{"telephonySessionId":"s\u002d\u0000","parties":[{"id":"p\"1\\","status":{"code":"\u0041nswered"},"from":{"phoneNumber":"+\u0031"}}]}}"#,
    );
    run.accepted();
    let party = &run.records[0].1;
    assert_eq!(party["telephony_session_id"], "s-\u{0}");
    assert_eq!(party["party_id"], "p\"1\\");
    assert_eq!(party["status_code"], "Answered");
    assert_eq!(party["from"]["phone_number_kind"], "E164");
}

#[test]
fn a_notification_with_a_party_in_two_states_delivered_again_emits_nothing_new() {
    // Found by structured_json against a rule that compared a record only with the last state
    // emitted under its id: the second delivery of [Setup, Proceeding] of one party (no
    // subscriptionId or uuid to catch it at the transport level) was published again in full.
    let message = br#"{"body":{"telephonySessionId":"s","sequence":5,"parties":[{"id":"p","status":{"code":"Setup"},"recordings":[{"id":"r","active":true}]},{"id":"p","status":{"code":"Proceeding"},"recordings":[{"id":"r","active":false}]}]}}"#;
    let mut processor = Processor::new(ProcessorConfig::default());
    let mut emitted = 0;
    let first = processor.process(message, |_| {
        emitted += 1;
        Ok(())
    });
    // Both party events, and the recording once: its second state in the same notification is
    // not later than the first (recordings are compared by sequence).
    assert_eq!(first.map(|o| (o.emitted, o.suppressed)), Ok((3, 1)));
    let again = processor.process(message, |_| Ok(())).expect("accepted");
    assert_eq!((again.emitted, again.suppressed), (0, 4));
    assert_eq!(emitted, 3);
}

#[test]
fn a_party_repeated_in_one_notification_is_emitted_once() {
    let party = r#"{"id":"p-1","missedCall":true,"recordings":[{"id":"r"},{"active":true},{"id":null}],"status":{"code":"Disconnected","reason":"BlindTransfer"}}"#;
    let run = process(
        format!(r#"{{"body":{{"telephonySessionId":"s","parties":[{party},{party}]}}}}"#)
            .as_bytes(),
    );
    let outcome = run.accepted();
    assert_eq!(
        (
            run.count(TopicKind::Parties),
            run.count(TopicKind::Missed),
            run.count(TopicKind::Recorded),
            run.count(TopicKind::Transfers),
        ),
        (1, 1, 1, 1)
    );
    assert_eq!(outcome.suppressed, 4);
}

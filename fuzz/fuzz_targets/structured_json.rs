//! Structurally valid notifications (generated, or seeds with a few fields changed) through the
//! core: the round trip of `callstream_fuzz::run`, one party record per party when accepted, and
//! for notifications built only of accepted values, exactly the records the README's rules call
//! for (see `callstream_fuzz::structured`).
#![no_main]

use callstream::core::encode::to_json;
use callstream::core::{derive, parse, TopicKind};
use callstream_fuzz::structured::{self, Expect};
use callstream_fuzz::{config, run};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

fuzz_target!(|data: &[u8]| {
    let case = structured::case(data);
    let bytes = serde_json::to_vec(&case.message).expect("a JSON value serializes");
    let outcome = run(&bytes);

    if outcome.result.is_ok() {
        let notification = parse(&bytes, &config().limits).expect("accepted");
        assert_eq!(
            Some(notification.parties.len()),
            structured::input_parties(&case.message),
            "every party of the input is in the notification"
        );
        let mut derived = Vec::new();
        derive(&notification, &mut derived);
        let derived: Vec<(TopicKind, Value)> =
            derived.iter().map(|r| (r.topic(), to_json(r))).collect();

        // What the processor emits: the derived records, less repeats of the same id and state,
        // missed calls without voicemail once the same one with voicemail was emitted, and
        // repeats of a recording's id.
        let mut seen = Vec::new();
        let mut expected = Vec::new();
        let mut stated = Vec::new();
        // A missed call says voicemail was reached when its party is at the voicemail in another
        // entry of the notification too (a fresh processor remembers no earlier one).
        let at_voicemail: Vec<&Value> = derived
            .iter()
            .filter(|(topic, v)| {
                *topic == TopicKind::Parties
                    && (v["status_code"] == json!("VoiceMail")
                        || v["status_reason"] == json!("Voicemail"))
            })
            .map(|(_, v)| &v["party_id"])
            .collect();
        for (topic, value) in &derived {
            let mut value = value.clone();
            if *topic == TopicKind::Missed && at_voicemail.contains(&&value["party_id"]) {
                value["reached_voicemail"] = json!(true);
            }
            let value = &value;
            let state = state(*topic, value);
            let superseded = *topic == TopicKind::Missed
                && value["reached_voicemail"] == json!(false)
                && seen.contains(&json!([topic.label(), value["record_id"], [true]]));
            // A recording with a sequence is compared with the latest state emitted under its
            // id: in one notification, whose records share the sequence, none is later than a
            // copy that said `active`.
            let ordered = *topic == TopicKind::Recorded && !value["sequence"].is_null();
            let ordered_repeat = ordered && stated.contains(&value["record_id"]);
            if !seen.contains(&state) && !superseded && !ordered_repeat {
                if ordered && !value["active"].is_null() {
                    stated.push(value["record_id"].clone());
                }
                seen.push(state);
                expected.push((*topic, value["record_id"].clone(), voicemail(*topic, value)));
            }
        }
        let emitted: Vec<(TopicKind, Value, Value)> = outcome
            .emitted
            .iter()
            .map(|e| {
                (
                    e.topic,
                    e.value["record_id"].clone(),
                    voicemail(e.topic, &e.value),
                )
            })
            .collect();
        assert_eq!(emitted, expected, "emitted records");
        let party_records = outcome
            .emitted
            .iter()
            .filter(|e| e.topic == TopicKind::Parties)
            .count();
        let distinct_parties = {
            let mut ids: Vec<(&str, &str)> = notification
                .parties
                .iter()
                .map(|p| (p.id.as_ref(), p.status.raw.as_ref()))
                .collect();
            ids.sort_unstable();
            ids.dedup();
            ids.len()
        };
        assert_eq!(
            party_records, distinct_parties,
            "one party record per party"
        );

        if let Some(expect) = case.expect.as_ref().filter(|e| e.valid) {
            check_expected(expect, &derived, &outcome.emitted, &case.message);
        }
    } else if let Some(expect) = case.expect.as_ref().filter(|e| e.valid) {
        panic!(
            "refused a notification of accepted values: {:?}\n{}\n{expect:#?}",
            outcome.result, case.message
        );
    }
});

/// What makes a record a repeat of an earlier one (`OutputRecord::hash_state`).
fn state(topic: TopicKind, v: &Value) -> Value {
    let state = match topic {
        TopicKind::Parties => json!([v["status_code_raw"], v["event_time"]]),
        TopicKind::Missed => json!([v["reached_voicemail"]]),
        TopicKind::Recorded => json!([v["active"]]),
        TopicKind::Transfers => json!([v["transfer_type_raw"], v["status_code_raw"]]),
    };
    json!([topic.label(), v["record_id"], state])
}

/// A missed call's `reached_voicemail`, compared as well as its id; null for other records.
fn voicemail(topic: TopicKind, v: &Value) -> Value {
    if topic == TopicKind::Missed {
        v["reached_voicemail"].clone()
    } else {
        Value::Null
    }
}

fn check_expected(
    expect: &Expect,
    derived: &[(TopicKind, Value)],
    emitted: &[callstream_fuzz::Emitted],
    message: &Value,
) {
    let context = || format!("{message}\n{expect:#?}");
    // Ids inside a record id are escaped: `%` first, then `:`.
    let esc = |id: &str| id.replace('%', "%25").replace(':', "%3A");
    let raw_tsid = expect.telephony_session_id.as_str();
    let tsid = esc(raw_tsid);
    let sequence = match (expect.sequence, expect.event_time) {
        (Some(s), _) => s.to_string(),
        (None, Some(ms)) => format!("-@{ms}"),
        (None, None) => "-".to_owned(),
    };
    let mut want: Vec<(TopicKind, String)> = Vec::new();
    for p in &expect.parties {
        let pid = esc(&p.id);
        want.push((TopicKind::Parties, format!("{tsid}:{pid}:{sequence}")));
        if p.missed == Some(true) {
            want.push((TopicKind::Missed, format!("{tsid}:{pid}:missed")));
        }
        for (rid, _) in &p.recordings {
            want.push((
                TopicKind::Recorded,
                format!("{tsid}:{pid}:recording:{}", esc(rid)),
            ));
        }
        if p.transfer.is_some() {
            want.push((TopicKind::Transfers, format!("{tsid}:{pid}:transfer")));
        }
    }
    let got: Vec<(TopicKind, String)> = derived
        .iter()
        .map(|(t, v)| (*t, v["record_id"].as_str().unwrap_or_default().to_owned()))
        .collect();
    assert_eq!(got, want, "derived records of\n{}", context());

    let mut records = derived.iter();
    for p in &expect.parties {
        let (_, party) = records.next().expect("a party record");
        let ctx = || format!("party {p:#?} got {party:#}\n{}", context());
        assert_eq!(party["party_id"], json!(p.id), "{}", ctx());
        assert_eq!(party["telephony_session_id"], json!(raw_tsid), "{}", ctx());
        assert_eq!(party["sequence"], json!(expect.sequence), "{}", ctx());
        assert_eq!(party["status_code"], json!(p.status_symbol), "{}", ctx());
        assert_eq!(party["status_code_raw"], json!(p.status_raw), "{}", ctx());
        assert_eq!(party["extension_id"], json!(p.extension_id), "{}", ctx());
        assert_eq!(
            party["external"],
            json!(p.extension_id.is_none()),
            "{}",
            ctx()
        );
        assert_eq!(party["event_time"], json!(expect.event_time), "{}", ctx());
        assert_eq!(party["sent_at"], json!(expect.sent_at), "{}", ctx());
        assert_eq!(party["input_shape"], json!(expect.shape), "{}", ctx());
        if p.missed == Some(true) {
            let (_, missed) = records.next().expect("a missed call");
            assert_eq!(
                missed["reached_voicemail"],
                json!(p.reached_voicemail),
                "{}",
                ctx()
            );
        }
        for (rid, active) in &p.recordings {
            let (_, recorded) = records.next().expect("a recorded call");
            assert_eq!(recorded["recording_id"], json!(rid), "{}", ctx());
            assert_eq!(recorded["active"], json!(active), "{}", ctx());
        }
        if let Some(kind) = p.transfer {
            let (_, transfer) = records.next().expect("a transfer");
            assert_eq!(transfer["transfer_type"], json!(kind), "{}", ctx());
        }
    }

    // Keys: the party's extension (checked above for every party record), else the session.
    for e in emitted {
        let want = e.value["extension_id"].as_str().unwrap_or(raw_tsid);
        assert_eq!(e.key, want, "key of {}\n{}", e.value, context());
    }
}

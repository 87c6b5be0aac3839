//! One test per rule of `docs/domain.md`: the input shapes, what real payloads do beyond the
//! official page, duplicates, the rules of the derived topics, and per-party records and keys.

mod common;

use callstream::core::{Processor, ProcessorConfig, Stage, TopicKind};
use common::*;
use serde_json::{json, Value};

/// The party records of an accepted message.
fn party_records(message: &Value) -> Vec<Emitted> {
    accept(message)
        .into_iter()
        .filter(|r| r.topic == TopicKind::Parties)
        .collect()
}

/// The one party record of a one-party message.
fn the_party_record(message: &Value) -> Emitted {
    let mut records = party_records(message);
    assert_eq!(records.len(), 1, "{records:#?}");
    records.remove(0)
}

/// A webhook of one party whose fields are changed by `edit`.
fn webhook_with_party(edit: impl FnOnce(&mut Value)) -> Value {
    let mut party = party(PARTY_ID, EXTENSION_ID, "Answered");
    edit(&mut party);
    webhook("100000000000000001", body(SESSION_ID, 5, vec![party]))
}

fn status_of(code: &str, reason: Option<&str>) -> Value {
    webhook_with_party(|p| {
        p["status"]["code"] = json!(code);
        if let Some(reason) = reason {
            p["status"]["reason"] = json!(reason);
        }
    })
}

// ---------------------------------------------------------------------------------------------
// §1 Where messages come from: every input shape is accepted.

/// The fields every shape must yield identically.
fn assert_standard_party_record(record: &Emitted, shape: Shape) {
    assert_eq!(record.key, EXTENSION_ID);
    assert_eq!(record.str("input_shape"), Some(shape.symbol()));
    assert_eq!(record.str("telephony_session_id"), Some(SESSION_ID));
    assert_eq!(record.str("session_id"), Some(LEGACY_SESSION_ID));
    assert_eq!(record.str("party_id"), Some(PARTY_ID));
    assert_eq!(record.str("extension_id"), Some(EXTENSION_ID));
    assert_eq!(record.str("account_id"), Some(ACCOUNT_ID));
    assert_eq!(record.field("sequence"), &json!(5));
    assert_eq!(record.field("event_time"), &json!(EVENT_TIME_MS));
    assert_eq!(record.str("status_code"), Some("Answered"));
    assert_eq!(record.str("origin_type"), Some("Call"));
    assert_eq!(record.field("external"), &json!(false));
    assert_eq!(
        record.str("record_id"),
        Some(format!("{SESSION_ID}:{PARTY_ID}:5").as_str())
    );
}

fn assert_envelope_carried(record: &Emitted, uuid: &str) {
    assert_eq!(record.str("notification_uuid"), Some(uuid));
    assert_eq!(record.str("subscription_id"), Some(SUBSCRIPTION_ID));
    assert_eq!(record.str("owner_id"), Some(EXTENSION_ID));
    assert_eq!(record.str("event_filter"), Some(extension_event().as_str()));
    assert_eq!(record.field("sent_at"), &json!(SENT_AT_MS));
}

#[test]
fn accepts_the_webhook_shape() {
    let record = the_party_record(&webhook("837270960869181944", one_party_body("Answered")));
    assert_standard_party_record(&record, Shape::Webhook);
    assert_envelope_carried(&record, "837270960869181944");
}

#[test]
fn accepts_the_apple_push_wrapper_reading_the_envelope_from_pn_apns() {
    let record = the_party_record(&apple_push(
        "837270960869181944",
        one_party_body("Answered"),
    ));
    assert_standard_party_record(&record, Shape::ApplePush);
    assert_envelope_carried(&record, "837270960869181944");
}

#[test]
fn apple_push_wrapper_falls_back_to_the_outer_uuid_and_subscription() {
    let mut message = apple_push("837270960869181944", one_party_body("Answered"));
    let inner = message["pn_apns"].as_object_mut().unwrap();
    inner.remove("uuid");
    inner.remove("subscriptionId");
    inner.remove("ownerId");
    let record = the_party_record(&message);
    assert_envelope_carried(&record, "837270960869181944");
}

#[test]
fn accepts_the_websocket_frame() {
    let record = the_party_record(&websocket_frame(
        "837270960869181945",
        one_party_body("Answered"),
    ));
    assert_standard_party_record(&record, Shape::WebSocket);
    assert_envelope_carried(&record, "837270960869181945");
}

#[test]
fn accepts_a_bare_body_without_envelope() {
    let record = the_party_record(&one_party_body("Answered"));
    assert_standard_party_record(&record, Shape::BareBody);
    for field in [
        "notification_uuid",
        "subscription_id",
        "owner_id",
        "event_filter",
        "sent_at",
    ] {
        assert_eq!(record.field(field), &Value::Null, "{field}");
    }
}

#[test]
fn every_shape_yields_the_same_records_apart_from_the_shape() {
    let mut outputs = Vec::new();
    for shape in [Shape::Webhook, Shape::ApplePush, Shape::WebSocket] {
        let mut records = accept(&shape.wrap("1", one_party_body("Disconnected")));
        for r in &mut records {
            r.value.as_object_mut().unwrap().remove("input_shape");
        }
        outputs.push(records);
    }
    assert_eq!(outputs[0], outputs[1]);
    assert_eq!(outputs[0], outputs[2]);
}

#[test]
fn the_event_filter_of_the_account_path_is_accepted() {
    let mut message = webhook(
        "1",
        body(SESSION_ID, 3, vec![external_party("p-x-1", "Setup")]),
    );
    message["event"] = json!(account_event());
    let record = the_party_record(&message);
    assert_eq!(record.str("event_filter"), Some(account_event().as_str()));
    // The account id comes from the filter when the body and party have none.
    assert_eq!(record.str("account_id"), Some(ACCOUNT_ID));
}

#[test]
fn the_event_filter_with_a_query_string_is_accepted() {
    let mut message = webhook("1", one_party_body("Answered"));
    message["event"] = json!(format!("{}?statusCode=Answered", extension_event()));
    assert_eq!(party_records(&message).len(), 1);
}

#[test]
fn a_non_telephony_event_is_rejected_at_the_envelope() {
    let presence = format!("/restapi/v1.0/account/{ACCOUNT_ID}/extension/{EXTENSION_ID}/presence");
    let mut message = webhook("1", one_party_body("Answered"));
    message["event"] = json!(presence);
    let rejection = assert_rejected(
        &bytes(&message),
        Stage::Envelope,
        "wrong_event",
        Some("event"),
    );
    assert!(
        rejection.reason.contains("presence"),
        "{}",
        rejection.reason
    );

    let mut message = apple_push("1", one_party_body("Answered"));
    message["pn_apns"]["event"] = json!(presence);
    assert_rejected(
        &bytes(&message),
        Stage::Envelope,
        "wrong_event",
        Some("pn_apns.event"),
    );

    let mut message = websocket_frame("1", one_party_body("Answered"));
    message[1]["event"] = json!(presence);
    assert_rejected(
        &bytes(&message),
        Stage::Envelope,
        "wrong_event",
        Some("[1].event"),
    );
}

// ---------------------------------------------------------------------------------------------
// §2 What real payloads do that the official page does not say.

#[test]
fn tolerates_and_carries_status_rcc() {
    let record = the_party_record(&webhook_with_party(|p| p["status"]["rcc"] = json!(true)));
    assert_eq!(record.field("rcc"), &json!(true));
    let record = the_party_record(&webhook_with_party(|p| {
        p["status"].as_object_mut().unwrap().remove("rcc");
    }));
    assert_eq!(record.field("rcc"), &Value::Null);
}

#[test]
fn tolerates_an_empty_park_object() {
    let record = the_party_record(&webhook_with_party(|p| p["park"] = json!({})));
    assert_eq!(record.field("park_id"), &Value::Null);
}

#[test]
fn tolerates_and_carries_a_park_id() {
    let record = the_party_record(&webhook_with_party(|p| p["park"] = json!({"id": "801"})));
    assert_eq!(record.str("park_id"), Some("801"));
}

#[test]
fn tolerates_and_carries_recordings() {
    let record = the_party_record(&webhook_with_party(|p| {
        p["recordings"] =
            json!([{"id": "9312838004", "active": true}, {"id": "9312838005", "active": false}])
    }));
    assert_eq!(
        record.field("recordings"),
        &json!([{"id": "9312838004", "active": true}, {"id": "9312838005", "active": false}])
    );
}

#[test]
fn tolerates_and_carries_ui_call_info() {
    let record = the_party_record(&webhook_with_party(|p| {
        p["uiCallInfo"] = json!({
            "primary": {"type": "QueueName", "value": "Support"},
            "additional": {"type": "CallerIdName", "value": "WIRELESS CALLER"}
        })
    }));
    assert_eq!(
        record.field("ui_call_info"),
        &json!({
            "primary_type": "QueueName",
            "primary_value": "Support",
            "additional_type": "CallerIdName",
            "additional_value": "WIRELESS CALLER"
        })
    );
}

#[test]
fn tolerates_and_carries_status_description() {
    let record = the_party_record(&webhook_with_party(|p| {
        p["status"]["description"] = json!("Call was transferred")
    }));
    assert_eq!(
        record.str("status_description"),
        Some("Call was transferred")
    );
}

#[test]
fn tolerates_and_carries_ring_out_and_ring_me_roles() {
    let record = the_party_record(&webhook_with_party(|p| {
        p["ringOutRole"] = json!("Initiator");
        p["ringMeRole"] = json!("Target");
    }));
    assert_eq!(record.str("ring_out_role"), Some("Initiator"));
    assert_eq!(record.str("ring_out_role_raw"), Some("Initiator"));
    assert_eq!(record.str("ring_me_role"), Some("Target"));
    assert_eq!(record.str("ring_me_role_raw"), Some("Target"));
}

#[test]
fn tolerates_an_owner_object() {
    let record =
        the_party_record(&webhook_with_party(
            |p| {
                p["owner"] =
                    json!({"accountId": ACCOUNT_ID, "extensionId": EXTENSION_ID, "name": "Tom"})
            },
        ));
    assert_eq!(record.str("party_id"), Some(PARTY_ID));
}

#[test]
fn tolerates_body_level_account_and_extension_ids_and_uses_the_account() {
    let mut party = party(PARTY_ID, EXTENSION_ID, "Proceeding");
    party.as_object_mut().unwrap().remove("accountId");
    let mut body = body(SESSION_ID, 5, vec![party]);
    body["accountId"] = json!("999000111");
    body["extensionId"] = json!(EXTENSION_ID);
    let mut message = webhook("1", body);
    message.as_object_mut().unwrap().remove("event");
    let record = the_party_record(&message);
    assert_eq!(record.str("account_id"), Some("999000111"));
    assert_eq!(record.str("extension_id"), Some(EXTENSION_ID));
}

#[test]
fn tolerates_fields_nobody_has_seen_yet_at_every_level() {
    let mut message = webhook_with_party(|p| {
        p["brandNew"] = json!({"deep": [1, {"x": null}], "s": "\u{00a0}"});
        p["status"]["mobilePickupData"] = json!({"ccMailboxes": ["1"], "sid": "2"});
        p["from"]["extra"] = json!(true);
    });
    message["body"]["conferenceBridge"] = json!([{"a": 1}]);
    message["futureEnvelope"] = json!(3.5);
    assert_eq!(party_records(&message).len(), 1);
}

#[test]
fn ids_sent_as_numbers_are_normalized_to_strings() {
    let mut message = webhook_with_party(|p| {
        p["extensionId"] = json!(400144455008u64);
        p["accountId"] = json!(400144452008u64);
        p["from"]["deviceId"] = json!(802398128004u64);
        p["to"]["extensionId"] = json!(400144455008u64);
    });
    message["body"]["sessionId"] = json!(402936341008u64);
    message["uuid"] = json!(837270960869181944u64);
    message["ownerId"] = json!(400144455008u64);
    let record = the_party_record(&message);
    assert_eq!(record.key, EXTENSION_ID);
    assert_eq!(record.str("extension_id"), Some(EXTENSION_ID));
    assert_eq!(record.str("account_id"), Some(ACCOUNT_ID));
    assert_eq!(record.str("session_id"), Some(LEGACY_SESSION_ID));
    assert_eq!(record.str("notification_uuid"), Some("837270960869181944"));
    assert_eq!(record.str("owner_id"), Some(EXTENSION_ID));
    assert_eq!(record.field("from")["device_id"], json!("802398128004"));
    assert_eq!(record.field("to")["extension_id"], json!(EXTENSION_ID));
}

#[test]
fn display_values_sent_as_numbers_are_kept_as_their_digits() {
    let mut message = webhook_with_party(|p| {
        p["missedCall"] = json!(true);
        p["from"]["phoneNumber"] = json!(11104);
        p["from"]["name"] = json!(101);
        p["to"]["phoneNumber"] = json!(16505551234u64);
        p["status"]["description"] = json!(486);
        p["uiCallInfo"] = json!({"primary": {"type": "QueueName", "value": 7}});
    });
    message["uuid"] = json!("u-display");
    let emitted = accept(&message);
    let party = only(&emitted, TopicKind::Parties);
    assert_eq!(party.field("from")["phone_number"], json!("11104"));
    assert_eq!(party.field("from")["phone_number_kind"], json!("Extension"));
    assert_eq!(party.field("from")["name"], json!("101"));
    assert_eq!(party.field("to")["phone_number"], json!("16505551234"));
    assert_eq!(party.str("status_description"), Some("486"));
    assert_eq!(party.field("ui_call_info")["primary_value"], json!("7"));
    // The missed call is not lost over a display value.
    only(&emitted, TopicKind::Missed);

    // Numbers the fast reader leaves to serde: negative, beyond 18 digits, not integers.
    for (number, kept) in [
        (json!(-5), "-5"),
        (json!(12345678901234567890u64), "12345678901234567890"),
        (json!(1.5), "1.5"),
        (json!(1.6505551234e10), "16505551234"),
    ] {
        let message = webhook_with_party(|p| p["from"]["name"] = number.clone());
        let record = the_party_record(&message);
        assert_eq!(record.field("from")["name"], json!(kept), "{number}");
    }
}

#[test]
fn sequence_is_an_integer_also_when_sent_as_a_string() {
    let mut message = webhook("1", one_party_body("Answered"));
    message["body"]["sequence"] = json!("12");
    assert_eq!(the_party_record(&message).field("sequence"), &json!(12));
}

#[test]
fn string_booleans_true_and_false_are_normalized() {
    let record_set = accept(&webhook_with_party(|p| {
        p["missedCall"] = json!("True");
        p["standAlone"] = json!("False");
        p["muted"] = json!("false");
        p["queueCall"] = json!("TRUE");
        p["status"]["rcc"] = json!("True");
        p["recordings"] = json!([{"id": "r1", "active": "False"}]);
    }));
    let record = only(&record_set, TopicKind::Parties);
    assert_eq!(record.field("missed_call"), &json!(true));
    assert_eq!(record.field("stand_alone"), &json!(false));
    assert_eq!(record.field("muted"), &json!(false));
    assert_eq!(record.field("queue_call"), &json!(true));
    assert_eq!(record.field("rcc"), &json!(true));
    assert_eq!(
        record.field("recordings"),
        &json!([{"id": "r1", "active": false}])
    );
    // The string boolean drives the rules as a real one would.
    assert_eq!(of_topic(&record_set, TopicKind::Missed).len(), 1);
    assert_eq!(
        only(&record_set, TopicKind::Recorded).field("active"),
        &json!(false)
    );
}

fn status_code_of(code: &str) -> (Option<String>, Option<String>) {
    let record = the_party_record(&status_of(code, None));
    (
        record.str("status_code").map(str::to_owned),
        record.str("status_code_raw").map(str::to_owned),
    )
}

#[test]
fn status_code_voicemail_spellings_are_merged_and_the_raw_value_kept() {
    for spelling in ["VoiceMail", "Voicemail"] {
        assert_eq!(
            status_code_of(spelling),
            (Some("VoiceMail".into()), Some(spelling.into()))
        );
    }
}

#[test]
fn status_code_voicemail_screening_spellings_are_merged() {
    for spelling in ["VoiceMailScreening", "VMScreening"] {
        assert_eq!(
            status_code_of(spelling),
            (Some("VoiceMailScreening".into()), Some(spelling.into()))
        );
    }
}

#[test]
fn status_code_tds_from_the_spec_is_known() {
    assert_eq!(
        status_code_of("Tds"),
        (Some("Tds".into()), Some("Tds".into()))
    );
}

#[test]
fn an_unknown_status_code_is_kept_raw_and_not_rejected() {
    assert_eq!(
        status_code_of("Ringing"),
        (Some("UNKNOWN".into()), Some("Ringing".into()))
    );
}

/// Production reasons outside the documented list (`Conference`, `Undefined`) are symbols of the
/// contract; anything newer maps to `UNKNOWN`. Either way the raw value is kept and the message is
/// accepted.
#[test]
fn reasons_outside_the_documented_list_are_kept_and_never_rejected() {
    for (reason, symbol) in [
        ("Conference", "Conference"),
        ("Undefined", "Undefined"),
        ("SomethingNewIn2031", "UNKNOWN"),
        ("", "UNKNOWN"),
    ] {
        let record = the_party_record(&status_of("Disconnected", Some(reason)));
        assert_eq!(record.str("status_reason"), Some(symbol), "{reason}");
        assert_eq!(record.str("status_reason_raw"), Some(reason), "{reason}");
    }
}

#[test]
fn unknown_values_of_other_enums_are_kept_raw() {
    let mut message = webhook_with_party(|p| {
        p["direction"] = json!("Sideways");
        p["conferenceRole"] = json!("Moderator");
        p["ringOutRole"] = json!("Bystander");
    });
    message["body"]["origin"]["type"] = json!("Teleport");
    let record = the_party_record(&message);
    for (field, raw) in [
        ("direction", "Sideways"),
        ("conference_role", "Moderator"),
        ("ring_out_role", "Bystander"),
        ("origin_type", "Teleport"),
    ] {
        assert_eq!(record.str(field), Some("UNKNOWN"), "{field}");
        assert_eq!(record.str(&format!("{field}_raw")), Some(raw), "{field}");
    }
}

#[test]
fn phone_numbers_are_kept_as_sent_with_their_kind() {
    for (number, kind) in [
        ("+17205551234", "E164"),
        ("101", "Extension"),
        ("11104", "Extension"),
        ("7205551234", "Other"),
        ("anonymous", "Other"),
        ("#[email protected]:5060", "Other"),
    ] {
        let record = the_party_record(&webhook_with_party(|p| {
            p["from"]["phoneNumber"] = json!(number);
        }));
        let from = record.field("from");
        assert_eq!(from["phone_number"], json!(number));
        assert_eq!(from["phone_number_kind"], json!(kind), "{number}");
    }
    // No number, no kind.
    let record = the_party_record(&webhook_with_party(|p| {
        p["to"].as_object_mut().unwrap().remove("phoneNumber");
    }));
    assert_eq!(record.field("to")["phone_number"], Value::Null);
    assert_eq!(record.field("to")["phone_number_kind"], Value::Null);
}

#[test]
fn direction_is_carried_as_the_party_sees_it() {
    let record = the_party_record(&webhook(
        "1",
        body(SESSION_ID, 2, vec![external_party("p-x-1", "Setup")]),
    ));
    assert_eq!(record.str("direction"), Some("Outbound"));
    assert_eq!(record.str("direction_raw"), Some("Outbound"));
}

#[test]
fn times_are_normalized_to_epoch_millis_utc() {
    let mut message = webhook("1", one_party_body("Answered"));
    message["timestamp"] = json!("2018-06-05T02:14:50.181+02:00");
    message["body"]["eventTime"] = json!("2018-06-05T00:14:50.147Z");
    let record = the_party_record(&message);
    assert_eq!(record.field("event_time"), &json!(EVENT_TIME_MS));
    assert_eq!(record.field("sent_at"), &json!(SENT_AT_MS));

    message["body"]["eventTime"] = json!("2018-06-05T00:14:50Z");
    let record = the_party_record(&message);
    assert_eq!(record.field("event_time"), &json!(1_528_157_690_000i64));
}

#[test]
fn a_missing_time_is_null_and_not_rejected() {
    let mut message = webhook("1", one_party_body("Answered"));
    message.as_object_mut().unwrap().remove("timestamp");
    message["body"].as_object_mut().unwrap().remove("eventTime");
    let record = the_party_record(&message);
    assert_eq!(record.field("event_time"), &Value::Null);
    assert_eq!(record.field("sent_at"), &Value::Null);
}

#[test]
fn a_time_that_is_not_iso_8601_is_rejected_with_its_path() {
    for shape in [
        Shape::Webhook,
        Shape::ApplePush,
        Shape::WebSocket,
        Shape::BareBody,
    ] {
        let mut body = one_party_body("Answered");
        body["eventTime"] = json!("yesterday");
        let rejection = assert_rejected(
            &bytes(&shape.wrap("1", body)),
            Stage::Validate,
            "invalid_value",
            Some(&shape.path("eventTime")),
        );
        assert!(
            rejection.reason.contains("yesterday"),
            "{}",
            rejection.reason
        );
    }
    let mut message = apple_push("1", one_party_body("Answered"));
    message["pn_apns"]["timestamp"] = json!("2018-06-05");
    assert_rejected(
        &bytes(&message),
        Stage::Validate,
        "invalid_value",
        Some("pn_apns.timestamp"),
    );
}

#[test]
fn session_and_party_ids_of_every_era_are_opaque() {
    for (session, party_id) in [
        (
            "s-a0d7a5e2c9f5d4e3b2a19z1c9d6f0e1a2b3",
            "p-a0d7a5e2c9f5d4e3b2a19z1c9d6f0e1a2b3-1",
        ),
        (
            "Y3MxNzE4NDE5MDM0MzQwMTgzODRAMTAuNjIuMjUuMTEx",
            "cs171841903434018384-2",
        ),
    ] {
        let record = the_party_record(&webhook(
            "1",
            body(session, 1, vec![party(party_id, EXTENSION_ID, "Setup")]),
        ));
        assert_eq!(record.str("telephony_session_id"), Some(session));
        assert_eq!(record.str("party_id"), Some(party_id));
    }
}

// ---------------------------------------------------------------------------------------------
// §4 Missed calls.

#[test]
fn missed_call_true_yields_one_missed_record() {
    let records = accept(&webhook_with_party(|p| {
        p["missedCall"] = json!(true);
        p["status"]["code"] = json!("Disconnected");
    }));
    let missed = only(&records, TopicKind::Missed);
    assert_eq!(missed.key, EXTENSION_ID);
    assert_eq!(missed.str("party_id"), Some(PARTY_ID));
    assert_eq!(missed.str("telephony_session_id"), Some(SESSION_ID));
    assert_eq!(missed.str("session_id"), Some(LEGACY_SESSION_ID));
    assert_eq!(missed.str("account_id"), Some(ACCOUNT_ID));
    assert_eq!(missed.field("reached_voicemail"), &json!(false));
    assert_eq!(missed.str("status_code"), Some("Disconnected"));
    assert_eq!(
        missed.str("record_id"),
        Some(format!("{SESSION_ID}:{PARTY_ID}:missed").as_str())
    );
    assert_eq!(missed.field("from")["phone_number"], json!("+17205551234"));
    assert_eq!(of_topic(&records, TopicKind::Parties).len(), 1);
}

#[test]
fn missed_call_does_not_require_a_particular_status() {
    for code in ["Proceeding", "Gone", "Setup", "SomethingElse"] {
        let records = accept(&webhook_with_party(|p| {
            p["missedCall"] = json!(true);
            p["status"]["code"] = json!(code);
        }));
        assert_eq!(of_topic(&records, TopicKind::Missed).len(), 1, "{code}");
    }
}

#[test]
fn missed_call_says_the_caller_reached_voicemail_by_status() {
    for code in ["VoiceMail", "Voicemail"] {
        let records = accept(&webhook_with_party(|p| {
            p["missedCall"] = json!(true);
            p["status"]["code"] = json!(code);
        }));
        assert_eq!(
            only(&records, TopicKind::Missed).field("reached_voicemail"),
            &json!(true),
            "{code}"
        );
    }
}

#[test]
fn missed_call_says_the_caller_reached_voicemail_by_reason() {
    let records = accept(&webhook_with_party(|p| {
        p["missedCall"] = json!(true);
        p["status"] = json!({"code": "Disconnected", "reason": "Voicemail"});
    }));
    let missed = only(&records, TopicKind::Missed);
    assert_eq!(missed.field("reached_voicemail"), &json!(true));
    assert_eq!(missed.str("status_reason"), Some("Voicemail"));
}

#[test]
fn an_inbound_disconnect_without_missed_call_is_not_a_missed_call() {
    for missed in [json!(false), Value::Null] {
        let mut message = webhook_with_party(|p| {
            p["direction"] = json!("Inbound");
            p["status"] = json!({"code": "Disconnected", "reason": "NoAnswer"});
            p["missedCall"] = missed.clone();
        });
        if missed.is_null() {
            message["body"]["parties"][0]
                .as_object_mut()
                .unwrap()
                .remove("missedCall");
        }
        let records = accept(&message);
        assert_eq!(of_topic(&records, TopicKind::Missed).len(), 0, "{missed}");
        assert_eq!(of_topic(&records, TopicKind::Parties).len(), 1);
    }
}

// ---------------------------------------------------------------------------------------------
// §4 Recorded calls.

#[test]
fn one_recorded_record_per_recording_id_with_active_carried() {
    let records = accept(&webhook_with_party(|p| {
        p["recordings"] = json!([
            {"id": "9312838004", "active": true},
            {"id": "9312838005", "active": false},
            {"id": "9312838006"}
        ]);
    }));
    let recorded = of_topic(&records, TopicKind::Recorded);
    assert_eq!(recorded.len(), 3);
    let summary: Vec<(Option<&str>, &Value)> = recorded
        .iter()
        .map(|r| (r.str("recording_id"), r.field("active")))
        .collect();
    assert_eq!(
        summary,
        [
            (Some("9312838004"), &json!(true)),
            (Some("9312838005"), &json!(false)),
            (Some("9312838006"), &Value::Null),
        ]
    );
    for r in &recorded {
        assert_eq!(r.key, EXTENSION_ID);
        assert_eq!(r.str("party_id"), Some(PARTY_ID));
        assert_eq!(
            r.str("record_id"),
            Some(
                format!(
                    "{SESSION_ID}:{PARTY_ID}:recording:{}",
                    r.str("recording_id").unwrap()
                )
                .as_str()
            )
        );
    }
}

#[test]
fn no_recorded_record_without_recordings_or_without_a_recording_id() {
    for recordings in [json!([]), json!([{"active": true}]), Value::Null] {
        let records = accept(&webhook_with_party(|p| {
            p["recordings"] = recordings.clone()
        }));
        assert_eq!(
            of_topic(&records, TopicKind::Recorded).len(),
            0,
            "{recordings}"
        );
    }
}

#[test]
fn recording_ids_sent_as_numbers_are_strings() {
    let records = accept(&webhook_with_party(|p| {
        p["recordings"] = json!([{"id": 9312838004u64, "active": true}])
    }));
    assert_eq!(
        only(&records, TopicKind::Recorded).str("recording_id"),
        Some("9312838004")
    );
}

// ---------------------------------------------------------------------------------------------
// §4 Transfers.

fn transfer_records(code: &str, reason: &str) -> Vec<Emitted> {
    let records = accept(&status_of(code, Some(reason)));
    assert_eq!(of_topic(&records, TopicKind::Parties).len(), 1);
    of_topic(&records, TopicKind::Transfers)
        .into_iter()
        .cloned()
        .collect()
}

fn assert_one_transfer(code: &str, reason: &str) -> Emitted {
    let transfers = transfer_records(code, reason);
    assert_eq!(transfers.len(), 1, "{code} + {reason}: {transfers:#?}");
    let transfer = transfers[0].clone();
    assert_eq!(transfer.str("transfer_type"), Some(reason));
    assert_eq!(transfer.str("transfer_type_raw"), Some(reason));
    assert_eq!(transfer.str("status_code"), Some(code));
    assert_eq!(transfer.key, EXTENSION_ID);
    assert_eq!(
        transfer.str("record_id"),
        Some(format!("{SESSION_ID}:{PARTY_ID}:transfer").as_str())
    );
    transfer
}

#[test]
fn blind_transfer_on_disconnected_is_a_transfer() {
    assert_one_transfer("Disconnected", "BlindTransfer");
}

#[test]
fn blind_transfer_on_gone_is_a_transfer() {
    assert_one_transfer("Gone", "BlindTransfer");
}

#[test]
fn attended_transfer_on_disconnected_is_a_transfer() {
    assert_one_transfer("Disconnected", "AttendedTransfer");
}

#[test]
fn attended_transfer_on_gone_is_a_transfer() {
    assert_one_transfer("Gone", "AttendedTransfer");
}

#[test]
fn rcc_transfer_on_disconnected_is_a_transfer() {
    assert_one_transfer("Disconnected", "RccTransfer");
}

#[test]
fn rcc_transfer_on_gone_is_a_transfer() {
    assert_one_transfer("Gone", "RccTransfer");
}

#[test]
fn dtmf_transfer_on_disconnected_is_a_transfer() {
    assert_one_transfer("Disconnected", "DtmfTransfer");
}

#[test]
fn dtmf_transfer_on_gone_is_a_transfer() {
    assert_one_transfer("Gone", "DtmfTransfer");
}

#[test]
fn attended_transfer_carries_the_peer_link() {
    let peer = json!({
        "telephonySessionId": "s-b1e8b6f3d0a6e5f4c3b2a0z2d0e7f1b2c3d4",
        "sessionId": 402936342008u64,
        "partyId": "p-b1e8b6f3d0a6e5f4c3b2a0z2d0e7f1b2c3d4-1"
    });
    let linked = json!({
        "telephony_session_id": "s-b1e8b6f3d0a6e5f4c3b2a0z2d0e7f1b2c3d4",
        "session_id": "402936342008",
        "party_id": "p-b1e8b6f3d0a6e5f4c3b2a0z2d0e7f1b2c3d4-1"
    });
    for code in ["Disconnected", "Gone"] {
        let records = accept(&webhook_with_party(|p| {
            p["status"] =
                json!({"code": code, "reason": "AttendedTransfer", "peerId": peer.clone()});
        }));
        let transfer = only(&records, TopicKind::Transfers);
        assert_eq!(transfer.str("transfer_type"), Some("AttendedTransfer"));
        assert_eq!(transfer.field("linked"), &linked);
        assert_eq!(only(&records, TopicKind::Parties).field("peer"), &linked);
    }
}

#[test]
fn a_transfer_without_a_peer_has_no_link() {
    let transfer = assert_one_transfer("Gone", "BlindTransfer");
    assert_eq!(transfer.field("linked"), &Value::Null);
}

#[test]
fn a_transfer_reason_on_a_live_status_is_not_a_transfer() {
    for code in ["Answered", "Setup", "Proceeding", "Hold"] {
        assert!(transfer_records(code, "BlindTransfer").is_empty(), "{code}");
    }
}

#[test]
fn gone_with_conference_is_not_a_transfer() {
    assert!(transfer_records("Gone", "Conference").is_empty());
}

#[test]
fn gone_with_supervising_is_not_a_transfer() {
    assert!(transfer_records("Gone", "Supervising").is_empty());
}

#[test]
fn gone_with_pickup_is_not_a_transfer() {
    assert!(transfer_records("Gone", "Pickup").is_empty());
}

#[test]
fn disconnected_with_call_flip_is_not_a_transfer() {
    assert!(transfer_records("Disconnected", "CallFlip").is_empty());
}

#[test]
fn disconnected_with_call_switch_is_not_a_transfer() {
    assert!(transfer_records("Disconnected", "CallSwitch").is_empty());
}

#[test]
fn disconnected_with_pickup_is_not_a_transfer() {
    assert!(transfer_records("Disconnected", "Pickup").is_empty());
}

#[test]
fn one_party_can_be_missed_recorded_and_transferred_at_once() {
    let records = accept(&webhook_with_party(|p| {
        p["missedCall"] = json!(true);
        p["status"] = json!({"code": "Gone", "reason": "BlindTransfer"});
        p["recordings"] = json!([{"id": "r-1", "active": false}]);
    }));
    let topics: Vec<TopicKind> = records.iter().map(|r| r.topic).collect();
    assert_eq!(
        topics,
        [
            TopicKind::Parties,
            TopicKind::Missed,
            TopicKind::Recorded,
            TopicKind::Transfers
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// §5 Per-party records and keys.

#[test]
fn an_external_party_is_published_keyed_by_the_telephony_session_id() {
    let mut message = webhook(
        "1",
        body(SESSION_ID, 4, vec![external_party("p-ext-1", "Answered")]),
    );
    message["event"] = json!(account_event());
    let record = the_party_record(&message);
    assert_eq!(record.key, SESSION_ID);
    assert_eq!(record.field("external"), &json!(true));
    assert_eq!(record.field("extension_id"), &Value::Null);
    assert_eq!(record.str("party_id"), Some("p-ext-1"));
}

#[test]
fn an_empty_extension_id_is_an_external_party() {
    let record = the_party_record(&webhook_with_party(|p| p["extensionId"] = json!("")));
    assert_eq!(record.key, SESSION_ID);
    assert_eq!(record.field("external"), &json!(true));
}

#[test]
fn derived_records_of_an_external_party_are_keyed_by_session_and_marked_external() {
    let mut party = external_party("p-ext-1", "Disconnected");
    party["missedCall"] = json!(true);
    party["recordings"] = json!([{"id": "r-9", "active": true}]);
    party["status"]["reason"] = json!("BlindTransfer");
    let records = accept(&webhook("1", body(SESSION_ID, 9, vec![party])));
    assert_eq!(records.len(), 4);
    for r in &records {
        assert_eq!(r.key, SESSION_ID, "{:?}", r.topic);
        assert_eq!(r.field("external"), &json!(true), "{:?}", r.topic);
    }
}

#[test]
fn a_multi_party_notification_yields_one_record_per_party_keyed_by_its_extension() {
    let parties = vec![
        party("p-1", EXTENSION_ID, "Answered"),
        party("p-2", OTHER_EXTENSION_ID, "Proceeding"),
        external_party("p-3", "Answered"),
        party("p-4", EXTENSION_ID, "Hold"),
    ];
    for shape in Shape::ALL {
        let records = party_records(&shape.wrap("7", body(SESSION_ID, 11, parties.clone())));
        let summary: Vec<(&str, Option<&str>, Option<&str>)> = records
            .iter()
            .map(|r| (r.key.as_str(), r.str("party_id"), r.str("status_code")))
            .collect();
        assert_eq!(
            summary,
            [
                (EXTENSION_ID, Some("p-1"), Some("Answered")),
                (OTHER_EXTENSION_ID, Some("p-2"), Some("Proceeding")),
                (SESSION_ID, Some("p-3"), Some("Answered")),
                (EXTENSION_ID, Some("p-4"), Some("Hold")),
            ],
            "{shape:?}"
        );
        for r in &records {
            // Session-level fields are carried on every party record.
            assert_eq!(r.field("sequence"), &json!(11));
            assert_eq!(r.str("telephony_session_id"), Some(SESSION_ID));
            assert_eq!(r.field("event_time"), &json!(EVENT_TIME_MS));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// §2 The few required fields: rejected at stage validate, with the path of the field.

#[test]
fn a_missing_telephony_session_id_is_rejected() {
    for shape in Shape::ALL {
        let mut body = one_party_body("Answered");
        body.as_object_mut().unwrap().remove("telephonySessionId");
        let rejection = assert_rejected(
            &bytes(&shape.wrap("1", body)),
            Stage::Validate,
            "missing_field",
            Some(&shape.path("telephonySessionId")),
        );
        assert!(
            rejection.reason.contains("telephonySessionId"),
            "{rejection}"
        );
    }
}

#[test]
fn a_blank_telephony_session_id_is_rejected() {
    let mut message = webhook("1", one_party_body("Answered"));
    message["body"]["telephonySessionId"] = json!("  ");
    assert_rejected(
        &bytes(&message),
        Stage::Validate,
        "empty_field",
        Some("body.telephonySessionId"),
    );
}

#[test]
fn a_notification_without_parties_is_rejected() {
    for shape in Shape::ALL {
        let mut body = one_party_body("Answered");
        body.as_object_mut().unwrap().remove("parties");
        assert_rejected(
            &bytes(&shape.wrap("1", body)),
            Stage::Validate,
            "missing_field",
            Some(&shape.path("parties")),
        );
    }
}

#[test]
fn a_notification_with_empty_parties_is_rejected() {
    for shape in Shape::ALL {
        let body = body(SESSION_ID, 1, vec![]);
        assert_rejected(
            &bytes(&shape.wrap("1", body)),
            Stage::Validate,
            "no_parties",
            Some(&shape.path("parties")),
        );
    }
}

#[test]
fn a_party_without_an_id_is_rejected() {
    for shape in Shape::ALL {
        let mut second = party("p-2", EXTENSION_ID, "Answered");
        second.as_object_mut().unwrap().remove("id");
        let body = body(
            SESSION_ID,
            1,
            vec![party("p-1", EXTENSION_ID, "Answered"), second],
        );
        assert_rejected(
            &bytes(&shape.wrap("1", body)),
            Stage::Validate,
            "missing_field",
            Some(&shape.path("parties[1].id")),
        );
    }
}

#[test]
fn a_party_without_a_status_code_is_rejected() {
    for shape in Shape::ALL {
        let mut party = party(PARTY_ID, EXTENSION_ID, "Answered");
        party["status"].as_object_mut().unwrap().remove("code");
        let rejection = assert_rejected(
            &bytes(&shape.wrap("1", body(SESSION_ID, 1, vec![party]))),
            Stage::Validate,
            "missing_field",
            Some(&shape.path("parties[0].status.code")),
        );
        assert!(
            rejection.to_string().starts_with("validate error: "),
            "{rejection}"
        );
    }
    let mut message = apple_push("1", one_party_body("Answered"));
    message["pn_apns"]["body"]["parties"][0]["status"]["code"] = json!("");
    assert_rejected(
        &bytes(&message),
        Stage::Validate,
        "empty_field",
        Some("pn_apns.body.parties[0].status.code"),
    );
}

#[test]
fn a_party_without_a_status_is_rejected() {
    let mut message = webhook("1", one_party_body("Answered"));
    message["body"]["parties"][0]
        .as_object_mut()
        .unwrap()
        .remove("status");
    assert_rejected(
        &bytes(&message),
        Stage::Validate,
        "missing_field",
        Some("body.parties[0].status"),
    );
}

#[test]
fn only_the_required_fields_are_required() {
    let message = json!({"telephonySessionId": "s-1", "parties": [{"id": "p-1", "status": {"code": "Setup"}}]});
    let record = the_party_record(&message);
    assert_eq!(record.key, "s-1");
    assert_eq!(record.str("record_id"), Some("s-1:p-1:-"));
    assert_eq!(record.field("sequence"), &Value::Null);
}

// ---------------------------------------------------------------------------------------------
// §3 Duplicates.

#[test]
fn the_same_subscription_and_uuid_twice_is_a_duplicate() {
    let mut processor = Processor::new(ProcessorConfig::default());
    for shape in [Shape::Webhook, Shape::ApplePush, Shape::WebSocket] {
        let message = bytes(&shape.wrap("900000000000000001", one_party_body("Answered")));
        let mut processor_for_shape = Processor::new(ProcessorConfig::default());
        let (first, records) = run(&mut processor_for_shape, &message).unwrap();
        assert!(!first.duplicate);
        assert_eq!(first.emitted, 1);
        assert_eq!(records.len(), 1);
        let (second, records) = run(&mut processor_for_shape, &message).unwrap();
        assert!(second.duplicate, "{shape:?}");
        assert_eq!(second.emitted, 0);
        assert!(records.is_empty());
        // Across shapes, the same (subscriptionId, uuid) is the same notification.
        let (outcome, _) = run(&mut processor, &message).unwrap();
        assert_eq!(outcome.duplicate, shape != Shape::Webhook, "{shape:?}");
    }
}

#[test]
fn the_same_uuid_on_another_subscription_is_not_a_transport_duplicate() {
    let mut processor = Processor::new(ProcessorConfig::default());
    let message = webhook("900000000000000001", one_party_body("Answered"));
    run(&mut processor, &bytes(&message)).unwrap();
    let mut other = message.clone();
    other["subscriptionId"] = json!("another-subscription");
    let (outcome, records) = run(&mut processor, &bytes(&other)).unwrap();
    assert!(!outcome.duplicate);
    // Still the same record and state: suppressed semantically.
    assert_eq!(outcome.suppressed, 1);
    assert!(records.is_empty());
}

/// Ids are opaque strings: two different parties whose ids, joined with `:`, spell the same
/// text are two facts. Before record ids escaped the ids they join, both were `a:b:c:7`, and the
/// second party's record was suppressed as a duplicate of the first.
#[test]
fn ids_that_spell_the_same_joined_text_are_not_duplicates() {
    let mut processor = Processor::new(ProcessorConfig::default());
    let first = webhook(
        "1",
        body("a:b", 7, vec![party("c", EXTENSION_ID, "Answered")]),
    );
    let second = webhook(
        "2",
        body("a", 7, vec![party("b:c", EXTENSION_ID, "Answered")]),
    );
    let (_, first_records) = run(&mut processor, &bytes(&first)).unwrap();
    let (outcome, second_records) = run(&mut processor, &bytes(&second)).unwrap();
    assert_eq!(outcome.suppressed, 0);
    let ids: Vec<_> = first_records
        .iter()
        .chain(&second_records)
        .map(|r| r.str("record_id").unwrap_or_default().to_owned())
        .collect();
    assert_eq!(ids, ["a%3Ab:c:7", "a:b%3Ac:7"]);
}

#[test]
fn the_same_record_and_state_from_another_uuid_is_suppressed() {
    let mut processor = Processor::new(ProcessorConfig::default());
    let body = body(
        SESSION_ID,
        7,
        vec![{
            let mut p = party(PARTY_ID, EXTENSION_ID, "Disconnected");
            p["missedCall"] = json!(true);
            p["recordings"] = json!([{"id": "r-1", "active": true}]);
            p["status"]["reason"] = json!("BlindTransfer");
            p
        }],
    );
    let (first, records) = run(&mut processor, &bytes(&webhook("1", body.clone()))).unwrap();
    assert_eq!(first.emitted, 4);
    assert_eq!(records.len(), 4);
    assert_eq!(first.suppressed, 0);
    // An overlapping subscription delivers the same event under another uuid.
    let (second, records) = run(&mut processor, &bytes(&apple_push("2", body))).unwrap();
    assert!(!second.duplicate);
    assert_eq!(second.emitted, 0);
    assert_eq!(second.suppressed, 4);
    assert!(records.is_empty());
}

#[test]
fn a_new_state_of_the_same_party_is_not_suppressed() {
    let mut processor = Processor::new(ProcessorConfig::default());
    let (_, first) = run(
        &mut processor,
        &bytes(&webhook("1", one_party_body("Answered"))),
    )
    .unwrap();
    let mut next = one_party_body("Hold");
    next["sequence"] = json!(6);
    let (outcome, second) = run(&mut processor, &bytes(&webhook("2", next))).unwrap();
    assert_eq!(outcome.emitted, 1);
    assert_eq!(outcome.suppressed, 0);
    assert_ne!(first[0].str("record_id"), second[0].str("record_id"));
}

/// The records a sequence of notifications (each a party body, by uuid) emits, as
/// `(topic, record_id, one field)` for a compact comparison.
/// `field` of each `topic` record emitted, in turn.
fn emitted_values(bodies: &[Value], topic: TopicKind, field: &str) -> Vec<Value> {
    emitted_in_turn(bodies, field)
        .into_iter()
        .filter(|(t, _, _)| *t == topic)
        .map(|(_, _, value)| value)
        .collect()
}

fn emitted_in_turn(bodies: &[Value], field: &str) -> Vec<(TopicKind, String, Value)> {
    let mut processor = Processor::new(ProcessorConfig::default());
    let mut all = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        let (_, records) = run(
            &mut processor,
            &bytes(&webhook(&i.to_string(), body.clone())),
        )
        .unwrap();
        for r in records {
            let id = r.str("record_id").unwrap_or_default().to_owned();
            all.push((
                r.topic,
                id,
                r.value.get(field).cloned().unwrap_or(Value::Null),
            ));
        }
    }
    all
}

#[test]
fn a_paused_recording_is_published_and_a_redelivery_is_not() {
    let recording = |sequence: i64, active: bool| {
        let mut p = party(PARTY_ID, EXTENSION_ID, "Answered");
        p["recordings"] = json!([{"id": "r-77", "active": active}]);
        body(SESSION_ID, sequence, vec![p])
    };
    let bodies = [
        recording(5, true),
        recording(6, false),
        // The pause again, from an overlapping subscription (another uuid): nothing new.
        recording(6, false),
    ];
    let recorded = emitted_values(&bodies, TopicKind::Recorded, "active");
    assert_eq!(recorded, [json!(true), json!(false)]);
}

/// A recording's `active` as each of `states` (sequence, active; `None` without the field) is
/// received, one notification each, and what the recorded topic publishes.
fn recording_published(states: &[(i64, Option<bool>)]) -> Vec<(i64, Value)> {
    let states: Vec<(Option<i64>, Vec<Option<bool>>)> = states
        .iter()
        .map(|&(sequence, active)| (Some(sequence), vec![active]))
        .collect();
    recordings_published(&states)
        .into_iter()
        .map(|(sequence, active)| (sequence.expect("a sequence"), active))
        .collect()
}

/// As `recording_published`, with notifications that may lack a sequence and may list the
/// recording several times.
fn recordings_published(states: &[(Option<i64>, Vec<Option<bool>>)]) -> Vec<(Option<i64>, Value)> {
    let mut processor = Processor::new(ProcessorConfig::default());
    let mut published = Vec::new();
    for (i, (sequence, copies)) in states.iter().enumerate() {
        let mut p = party(PARTY_ID, EXTENSION_ID, "Answered");
        p["recordings"] = copies
            .iter()
            .map(|active| match active {
                Some(active) => json!({"id": "r-77", "active": active}),
                None => json!({"id": "r-77"}),
            })
            .collect();
        let mut body = body(SESSION_ID, sequence.unwrap_or_default(), vec![p]);
        if sequence.is_none() {
            body.as_object_mut().unwrap().remove("sequence");
        }
        let (_, records) = run(&mut processor, &bytes(&webhook(&i.to_string(), body))).unwrap();
        for r in records
            .into_iter()
            .filter(|r| r.topic == TopicKind::Recorded)
        {
            published.push((r.value["sequence"].as_i64(), r.value["active"].clone()));
        }
    }
    published
}

#[test]
fn a_recording_seen_first_without_sequence_is_then_ordered_by_sequence() {
    // Without a sequence each value is published once; from the first notification with a
    // sequence on, a late copy of an older state is not published over a newer one.
    assert_eq!(
        recordings_published(&[
            (None, vec![Some(true)]),
            (None, vec![Some(true)]),
            (Some(5), vec![Some(true)]),
            (Some(3), vec![Some(false)]),
            (Some(5), vec![Some(true)]),
            (Some(6), vec![Some(false)]),
        ]),
        [
            (None, json!(true)),
            (Some(5), json!(true)),
            (Some(6), json!(false))
        ]
    );
}

#[test]
fn a_recording_first_known_without_active_is_published_once_its_state_is_said() {
    // A later notification without `active` tells nothing: it does not make an earlier one
    // that says the state look old.
    assert_eq!(
        recordings_published(&[
            (Some(5), vec![None]),
            (Some(7), vec![None]),
            (Some(6), vec![Some(true)]),
            (Some(6), vec![Some(true)]),
            (Some(8), vec![None]),
        ]),
        [(Some(5), Value::Null), (Some(6), json!(true))]
    );
    // The same notification again from another subscription, now with the state.
    assert_eq!(
        recordings_published(&[(Some(5), vec![None]), (Some(5), vec![Some(false)])]),
        [(Some(5), Value::Null), (Some(5), json!(false))]
    );
}

#[test]
fn a_copy_without_sequence_does_not_repeat_a_state_published_with_one() {
    assert_eq!(
        recordings_published(&[
            (Some(5), vec![Some(true)]),
            (Some(6), vec![Some(false)]),
            (None, vec![Some(true)]),
            (None, vec![Some(false)]),
        ]),
        [(Some(5), json!(true)), (Some(6), json!(false))]
    );
}

#[test]
fn forgetting_what_was_emitted_forgets_the_latest_state_of_recordings_too() {
    // After an aborted transaction the same input is read again and must be published again.
    let mut p = party(PARTY_ID, EXTENSION_ID, "Answered");
    p["recordings"] = json!([{"id": "r-77", "active": true}]);
    let message = bytes(&body(SESSION_ID, 5, vec![p]));
    let mut processor = Processor::new(ProcessorConfig::default());
    let recorded = |processor: &mut Processor| {
        let (_, records) = run(processor, &message).unwrap();
        of_topic(&records, TopicKind::Recorded).len()
    };
    assert_eq!(recorded(&mut processor), 1);
    assert_eq!(recorded(&mut processor), 0);
    processor.forget_emitted();
    assert_eq!(recorded(&mut processor), 1);
}

#[test]
fn a_copy_without_active_does_not_hide_the_state_in_the_same_notification() {
    assert_eq!(
        recordings_published(&[
            (Some(5), vec![None, None, Some(true), Some(true)]),
            (Some(5), vec![None, Some(true)]),
            (Some(6), vec![Some(false), None]),
            (Some(7), vec![Some(true)]),
        ]),
        [
            (Some(5), Value::Null),
            (Some(5), json!(true)),
            (Some(6), json!(false)),
            (Some(7), json!(true))
        ]
    );
}

#[test]
fn a_recording_resumed_after_a_pause_is_published_again() {
    assert_eq!(
        recording_published(&[
            (5, Some(true)),
            (6, Some(false)),
            (7, Some(true)),
            (9, Some(false))
        ]),
        [
            (5, json!(true)),
            (6, json!(false)),
            (7, json!(true)),
            (9, json!(false))
        ]
    );
}

#[test]
fn late_and_repeated_states_of_a_recording_are_not_published() {
    // Redeliveries under new uuids, and a copy of the pause arriving after the resume: the
    // latest record published says what the recording's latest notification said.
    assert_eq!(
        recording_published(&[
            (5, Some(true)),
            (6, Some(false)),
            (7, Some(true)),
            (6, Some(false)),
            (7, Some(true)),
            (5, Some(true)),
        ]),
        [(5, json!(true)), (6, json!(false)), (7, json!(true))]
    );
    // A notification saying the same again moves the latest sequence on: a pause older than it
    // that arrives late is not news.
    assert_eq!(
        recording_published(&[(5, Some(true)), (8, Some(true)), (6, Some(false))]),
        [(5, json!(true))]
    );
}

#[test]
fn a_recording_without_active_does_not_undo_a_known_state() {
    assert_eq!(
        recording_published(&[(5, Some(true)), (6, None), (7, Some(false))]),
        [(5, json!(true)), (7, json!(false))]
    );
    // Before any state is known, the recording is published as it is.
    assert_eq!(recording_published(&[(5, None)]), [(5, Value::Null)]);
}

#[test]
fn a_recording_listed_twice_in_one_notification_is_published_once_and_not_again() {
    let mut p = party(PARTY_ID, EXTENSION_ID, "Answered");
    p["recordings"] = json!([{"id": "r-77", "active": true}, {"id": "r-77", "active": false}]);
    let message = body(SESSION_ID, 5, vec![p]);
    let mut processor = Processor::new(ProcessorConfig::default());
    let recorded = |records: Vec<Emitted>| -> Vec<Value> {
        records
            .into_iter()
            .filter(|r| r.topic == TopicKind::Recorded)
            .map(|r| r.value["active"].clone())
            .collect()
    };
    let (_, first) = run(&mut processor, &bytes(&message)).unwrap();
    assert_eq!(recorded(first), [json!(true)]);
    // The same notification again, without a transport identity: nothing new.
    let (_, again) = run(&mut processor, &bytes(&message)).unwrap();
    assert_eq!(recorded(again), Vec::<Value>::new());
}

#[test]
fn a_missed_call_that_reaches_voicemail_is_published_again_but_not_unsaid() {
    let missed = |sequence: i64, code: &str| {
        let mut p = party(PARTY_ID, EXTENSION_ID, code);
        p["missedCall"] = json!(true);
        body(SESSION_ID, sequence, vec![p])
    };
    let voicemail =
        |bodies: &[Value]| emitted_values(bodies, TopicKind::Missed, "reached_voicemail");
    // Missed, then voicemail reached: published again.
    assert_eq!(
        voicemail(&[missed(5, "Proceeding"), missed(6, "VoiceMail")]),
        [json!(false), json!(true)]
    );
    // Disconnected after voicemail no longer says voicemail: not published, or the latest record
    // of the missed call would say the caller never reached it.
    assert_eq!(
        voicemail(&[missed(6, "VoiceMail"), missed(7, "Disconnected")]),
        [json!(true)]
    );
}

/// RingCentral's flag may first come on the `Disconnected` after `VoiceMail` (docs/domain.md §4: no
/// status is documented to carry it first), which no longer says voicemail: the caller reached it
/// all the same.
#[test]
fn a_missed_call_flagged_after_the_voicemail_status_says_voicemail_was_reached() {
    let at = |sequence: i64, code: &str, flagged: bool| {
        let mut p = party(PARTY_ID, EXTENSION_ID, code);
        p["missedCall"] = json!(flagged);
        body(SESSION_ID, sequence, vec![p])
    };
    let voicemail =
        |bodies: &[Value]| emitted_values(bodies, TopicKind::Missed, "reached_voicemail");
    assert_eq!(
        voicemail(&[
            at(5, "Proceeding", false),
            at(6, "VoiceMail", false),
            at(7, "Disconnected", true)
        ]),
        [json!(true)]
    );
    // Another party of the session, or the same party id in another session, was not at it.
    let other_party = {
        let mut p = party("p-other-2", "102", "VoiceMail");
        p["missedCall"] = json!(false);
        body(SESSION_ID, 6, vec![p])
    };
    let other_session = {
        let mut p = party(PARTY_ID, EXTENSION_ID, "VoiceMail");
        p["missedCall"] = json!(false);
        body("s-another-session", 6, vec![p])
    };
    assert_eq!(
        voicemail(&[other_party, other_session, at(7, "Disconnected", true)]),
        [json!(false)]
    );
    // The same party twice in one notification (abnormal, found by fuzzing): at the voicemail,
    // then flagged. The voicemail counts, and the notification again says nothing new.
    let twice = {
        let mut at_voicemail = party(PARTY_ID, EXTENSION_ID, "VoiceMail");
        at_voicemail["missedCall"] = json!(false);
        let mut flagged = party(PARTY_ID, EXTENSION_ID, "Disconnected");
        flagged["missedCall"] = json!(true);
        body(SESSION_ID, 7, vec![at_voicemail, flagged])
    };
    assert_eq!(voicemail(std::slice::from_ref(&twice)), [json!(true)]);
    assert_eq!(voicemail(&[twice.clone(), twice]), [json!(true)]);
    // Never at the voicemail: a plain missed call.
    assert_eq!(
        voicemail(&[at(5, "Proceeding", false), at(7, "Disconnected", true)]),
        [json!(false)]
    );
}

/// An attended transfer is reported on `Disconnected` without the peer, then on `Gone` with it:
/// both are published, the second with its link (the transfer's state includes the status).
#[test]
fn an_attended_transfer_gone_after_disconnected_is_published_with_its_link() {
    let transfer = |sequence: i64, code: &str, peer: Option<Value>| {
        let mut p = party(PARTY_ID, EXTENSION_ID, code);
        p["status"] = json!({"code": code, "reason": "AttendedTransfer"});
        if let Some(peer) = peer {
            p["status"]["peerId"] = peer;
        }
        body(SESSION_ID, sequence, vec![p])
    };
    let peer = json!({"telephonySessionId": "s-peer", "sessionId": "42", "partyId": "p-peer-1"});
    let links = emitted_values(
        &[
            transfer(8, "Disconnected", None),
            transfer(9, "Gone", Some(peer)),
        ],
        TopicKind::Transfers,
        "linked",
    );
    assert_eq!(
        links,
        [
            Value::Null,
            json!({"telephony_session_id": "s-peer", "session_id": "42", "party_id": "p-peer-1"})
        ]
    );
}

/// Out of order (docs/domain.md §3: sequence 5 after 6): both events are published. Dropping the
/// lower sequence, as RingCentral's own call-control library does, would lose a state change.
#[test]
fn a_party_event_arriving_after_a_higher_sequence_is_still_published() {
    let at = |sequence: i64, code: &str| {
        body(
            SESSION_ID,
            sequence,
            vec![party(PARTY_ID, EXTENSION_ID, code)],
        )
    };
    let statuses = emitted_values(
        &[at(6, "Hold"), at(5, "Answered")],
        TopicKind::Parties,
        "status_code_raw",
    );
    assert_eq!(statuses, [json!("Hold"), json!("Answered")]);
}

#[test]
fn a_party_event_without_sequence_is_told_apart_by_its_event_time() {
    let at = |code: &str, time: Option<&str>| {
        let mut b = json!({"telephonySessionId": SESSION_ID, "parties": [party(PARTY_ID, EXTENSION_ID, code)]});
        if let Some(time) = time {
            b["eventTime"] = json!(time);
        }
        b
    };
    // With event times: distinct ids.
    let with_times = emitted_in_turn(
        &[
            at("Hold", Some("2024-01-01T10:00:01.000Z")),
            at("Answered", Some("2024-01-01T10:00:02.000Z")),
        ],
        "status_code_raw",
    );
    let ids: Vec<&str> = with_times.iter().map(|(_, id, _)| id.as_str()).collect();
    assert_eq!(
        ids,
        [
            format!("{SESSION_ID}:{PARTY_ID}:-@1704103201000"),
            format!("{SESSION_ID}:{PARTY_ID}:-@1704103202000")
        ]
    );
    // A status that comes back at a later time is a new event, not a repeat.
    let statuses: Vec<Value> = emitted_in_turn(
        &[
            at("Hold", Some("2024-01-01T10:00:01.000Z")),
            at("Answered", Some("2024-01-01T10:00:02.000Z")),
            at("Hold", Some("2024-01-01T10:00:03.000Z")),
        ],
        "status_code_raw",
    )
    .into_iter()
    .map(|(_, _, status)| status)
    .collect();
    assert_eq!(statuses, [json!("Hold"), json!("Answered"), json!("Hold")]);
}

#[test]
fn a_bare_body_has_no_transport_identity_and_is_suppressed_semantically() {
    let mut processor = Processor::new(ProcessorConfig::default());
    let message = bytes(&one_party_body("Answered"));
    assert_eq!(run(&mut processor, &message).unwrap().0.emitted, 1);
    let (outcome, records) = run(&mut processor, &message).unwrap();
    assert!(!outcome.duplicate);
    assert_eq!(outcome.suppressed, 1);
    assert!(records.is_empty());
}

#[test]
fn a_failed_emit_is_not_remembered_as_emitted() {
    let mut processor = Processor::new(ProcessorConfig::default());
    let message = bytes(&webhook("1", one_party_body("Answered")));
    let failure = callstream::core::Rejection::new(Stage::Encode, "test", "sink down".into(), None);
    let result = processor.process(&message, |_| Err(failure.clone()));
    assert_eq!(result, Err(failure));
    let (outcome, records) = run(&mut processor, &message).unwrap();
    assert!(!outcome.duplicate);
    assert_eq!(records.len(), 1);
}

#[test]
fn a_window_of_zero_turns_suppression_off() {
    let config = ProcessorConfig {
        notification_window: 0,
        record_window: 0,
        ..ProcessorConfig::default()
    };
    let mut processor = Processor::new(config);
    let message = bytes(&webhook("1", one_party_body("Answered")));
    for _ in 0..3 {
        let (outcome, records) = run(&mut processor, &message).unwrap();
        assert!(!outcome.duplicate);
        assert_eq!(records.len(), 1);
    }
    // Within one notification too: a party listed twice gives two records.
    let twice = body(
        SESSION_ID,
        5,
        vec![
            party(PARTY_ID, EXTENSION_ID, "Answered"),
            party(PARTY_ID, EXTENSION_ID, "Answered"),
        ],
    );
    let (outcome, records) = run(&mut processor, &bytes(&webhook("2", twice))).unwrap();
    assert_eq!((records.len(), outcome.suppressed), (2, 0));
}

// ---------------------------------------------------------------------------------------------
// The official example.

#[test]
fn the_seed_example_yields_one_party_record_keyed_by_its_extension() {
    let message = seed_example();
    assert!(
        !message.contains(&b'\n'),
        "the test copy is compacted to one line"
    );
    let (outcome, records) = process(&message).expect("the seed example is accepted");
    assert_eq!(outcome.emitted, 1);
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(record.topic, TopicKind::Parties);
    assert_eq!(record.key, "400144455008");
    assert_eq!(record.str("input_shape"), Some("ApplePush"));
    assert_eq!(
        record.str("telephony_session_id"),
        Some("Y3MxNzE4NDE5MDM0MzQwMTgzODRAMTAuNjIuMjUuMTEx")
    );
    assert_eq!(record.str("party_id"), Some("cs171841903434018384-2"));
    assert_eq!(record.str("status_code"), Some("Proceeding"));
    assert_eq!(record.field("queue_call"), &json!(true));
    assert_eq!(record.field("event_time"), &json!(EVENT_TIME_MS));
    assert_eq!(record.field("sent_at"), &json!(SENT_AT_MS));
    assert_eq!(record.field("to")["phone_number_kind"], json!("Extension"));
    assert_eq!(
        record.field("sip"),
        &json!({"call_id": "555555555555", "to_tag": "123", "from_tag": "456"})
    );
    assert_eq!(record.str("notification_uuid"), Some("837270960869181944"));

    // Through the offline CLI too: one record, no dead letter.
    let mut inputs = vec![callstream::cli::offline::Input {
        name: "seed".into(),
        reader: Box::new(std::io::Cursor::new(message)),
    }];
    let mut out = Vec::new();
    let totals = callstream::cli::offline::process(
        &mut inputs,
        &mut out,
        ProcessorConfig::default(),
        &callstream::topics::TopicNames::default(),
    )
    .unwrap();
    assert_eq!((totals.accepted, totals.rejected), (1, 0));
    let lines: Vec<Value> = out
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["topic"], json!("telephony.sessions.parties"));
    assert_eq!(lines[0]["key"], json!("400144455008"));
}

#[test]
fn what_one_notification_may_carry_is_bounded_and_said_where() {
    use callstream::core::validate::{MAX_ID_BYTES, MAX_PARTIES, MAX_RECORDINGS};
    let parties = |n: usize| {
        (0..n)
            .map(|i| minimal_party(&format!("p-{i}"), "Answered"))
            .collect()
    };
    // At each limit the notification is accepted, one over it is not.
    assert_eq!(
        accept(&webhook("1", body(SESSION_ID, 5, parties(MAX_PARTIES)))).len(),
        MAX_PARTIES
    );
    let rejection = assert_rejected(
        &bytes(&webhook("1", body(SESSION_ID, 5, parties(MAX_PARTIES + 1)))),
        Stage::Validate,
        "over_limit",
        Some("body.parties"),
    );
    assert!(
        rejection
            .reason
            .contains("has 257 parties, over the limit of 256"),
        "{rejection}"
    );

    let recordings = |from: usize, n: usize| -> Value {
        (from..from + n)
            .map(|i| json!({"id": i.to_string(), "active": true}))
            .collect()
    };
    let mut two = parties(2);
    two[0]["recordings"] = recordings(0, MAX_RECORDINGS - 1);
    two[1]["recordings"] = recordings(MAX_RECORDINGS, 1);
    let records = accept(&webhook("1", body(SESSION_ID, 5, two.clone())));
    assert_eq!(
        of_topic(&records, TopicKind::Recorded).len(),
        MAX_RECORDINGS
    );
    two[1]["recordings"] = recordings(MAX_RECORDINGS, 2);
    let rejection = assert_rejected(
        &bytes(&webhook("1", body(SESSION_ID, 5, two))),
        Stage::Validate,
        "over_limit",
        Some("body.parties[1].recordings"),
    );
    assert!(
        rejection.reason.contains("recordings to 257"),
        "{rejection}"
    );

    let long = "x".repeat(MAX_ID_BYTES + 1);
    let at_limit = &long[1..];
    accept(&webhook(
        "1",
        body(at_limit, 5, vec![minimal_party(at_limit, "Answered")]),
    ));
    assert_rejected(
        &bytes(&webhook("1", body(&long, 5, parties(1)))),
        Stage::Validate,
        "over_limit",
        Some("body.telephonySessionId"),
    );
    assert_rejected(
        &bytes(&webhook(
            "1",
            body(SESSION_ID, 5, vec![minimal_party(&long, "Answered")]),
        )),
        Stage::Validate,
        "over_limit",
        Some("body.parties[0].id"),
    );
    let mut party = minimal_party("p", "Answered");
    party["recordings"] = json!([{"id": "r-1"}, {"id": long}]);
    let rejection = assert_rejected(
        &bytes(&webhook("1", body(SESSION_ID, 5, vec![party]))),
        Stage::Validate,
        "over_limit",
        Some("body.parties[0].recordings[1].id"),
    );
    assert!(
        rejection
            .reason
            .contains("is 1025 bytes long, over the limit of 1024"),
        "{rejection}"
    );
}

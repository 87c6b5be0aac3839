//! Hostile traffic end to end through the real broker: every bad message becomes a dead letter
//! with its reason, processing never stops, and every input message is accounted for
//! (processed + dead letters + duplicates = messages in).

mod kafka_support;

use std::collections::BTreeMap;
use std::time::Duration;

use callstream::core::TopicKind;
use callstream::service::dead_letters::header;
use kafka_support::*;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

/// Raw message values (None is a tombstone) and the dead-letter code each must get.
fn hostile() -> Vec<(Option<Vec<u8>>, &'static str)> {
    // Nested through a field the decoder reads, so that it must descend (skipped unknown fields
    // and arrays are skipped iteratively and cannot overflow anything either).
    let mut deep = "{\"body\":".repeat(5_000);
    deep.push_str("{}");
    deep.push_str(&"}".repeat(5_000));
    let mut deep_array = "[".repeat(5_000);
    deep_array.push_str(&"]".repeat(5_000));
    let mut binary = Vec::with_capacity(4096);
    let mut x: u32 = 0x9E37_79B9;
    for _ in 0..4096 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        binary.push((x & 0xff) as u8);
    }
    binary[0] = 0xff; // never valid UTF-8 at the start
    let parties = |n: usize| {
        (0..n)
            .map(|i| format!("{{\"id\":\"p-{i}\",\"status\":{{\"code\":\"Answered\"}}}}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let too_many_parties = format!(
        "{{\"body\":{{\"telephonySessionId\":\"s\",\"parties\":[{}]}}}}",
        parties(257)
    );
    // Within every limit, but each of its 256 party records repeats a 20 KB event filter.
    let outgrowing = format!(
        "{{\"event\":\"/restapi/v1.0/account/{}/telephony/sessions\",\"body\":{{\"telephonySessionId\":\"s\",\"parties\":[{}]}}}}",
        "1".repeat(20_000),
        parties(256)
    );
    vec![
        (Some(too_many_parties.into_bytes()), "over_limit"),
        (Some(outgrowing.into_bytes()), "output_too_large"),
        (None, "empty"),
        (Some(Vec::new()), "empty"),
        (Some(b"   ".to_vec()), "empty"),
        (Some(b"null".to_vec()), "not_an_object"),
        (Some(b"42".to_vec()), "not_an_object"),
        (Some(b"{\"body\":{\"telephonySessionId\":".to_vec()), "truncated"),
        (Some(b"{\"body\": nope}".to_vec()), "syntax"),
        (Some(binary), "not_utf8"),
        (Some(b"{\"body\":{\"telephonySessionId\":\"s\xff\"}}".to_vec()), "not_utf8"),
        (Some(deep.into_bytes()), "too_deep"),
        (Some(deep_array.into_bytes()), "not_a_frame"),
        (Some(format!("{{\"pad\":\"{}\"}}", "x".repeat(200_000)).into_bytes()), "too_large"),
        (Some(b"[1,2,3]".to_vec()), "not_a_frame"),
        (Some(b"{\"body\":{\"telephonySessionId\":\"s\",\"parties\":\"x\"}}".to_vec()), "wrong_type"),
        (Some(b"{\"body\":{\"telephonySessionId\":\"s\",\"parties\":[]}}".to_vec()), "no_parties"),
        (Some(b"{\"body\":{\"telephonySessionId\":\"s\",\"parties\":[{\"id\":\"p\"}]}}".to_vec()), "missing_field"),
        (Some(b"{\"event\":\"/restapi/v1.0/account/1/presence\",\"body\":{\"telephonySessionId\":\"s\",\"parties\":[{\"id\":\"p\",\"status\":{\"code\":\"Setup\"}}]}}".to_vec()), "wrong_event"),
        (Some(b"{\"body\":{\"telephonySessionId\":\"s\",\"eventTime\":\"yesterday\",\"parties\":[{\"id\":\"p\",\"status\":{\"code\":\"Setup\"}}]}}".to_vec()), "invalid_value"),
    ]
}

#[test]
fn hostile_messages_become_dead_letters_and_everything_is_accounted_for() {
    let t = unique_topics("hostile");
    create_topics(&t, PARTITIONS);
    let valid = corpus(2_000, 91);
    let (want, rejected_valid) = expected(&valid);
    let rejected_valid = rejected_valid.len();
    let bad = hostile();

    // Interleave: a hostile message after every ~100 valid ones, so that processing must go on.
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("message.max.bytes", "2000000")
        .create()
        .expect("producer");
    let mut bad_iter = bad.iter();
    for (i, line) in valid.iter().enumerate() {
        producer
            .send(
                BaseRecord::<str, [u8]>::to(&t.input)
                    .key("k")
                    .payload(line.as_bytes()),
            )
            .map_err(|(e, _)| e)
            .expect("send");
        if i % 100 == 50 {
            if let Some((value, _)) = bad_iter.next() {
                let key = format!("bad-{i}");
                let mut record = BaseRecord::<str, [u8]>::to(&t.input).key(&key);
                if let Some(v) = value {
                    record = record.payload(v.as_slice());
                }
                producer.send(record).map_err(|(e, _)| e).expect("send");
            }
        }
        producer.poll(Duration::ZERO);
    }
    for (value, _) in bad_iter {
        let mut record = BaseRecord::<str, [u8]>::to(&t.input).key("bad-tail");
        if let Some(v) = value {
            record = record.payload(v.as_slice());
        }
        producer.send(record).map_err(|(e, _)| e).expect("send");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
    let total = valid.len() + bad.len();

    let address = format!("127.0.0.1:{}", free_port());
    let service = Service::start(
        &t,
        "hostile-group",
        &["--metrics-addr", &address, "--max-message-bytes", "100000"],
    );
    wait_for(
        "every message accounted for",
        Duration::from_secs(120),
        || {
            metric(&address, "callstream_input_messages_total") >= total as f64
                && metric(&address, "callstream_in_flight_messages") == 0.0
        },
    );
    let processed = metric(
        &address,
        "callstream_input_messages_total{outcome=\"processed\"}",
    );
    let rejected = metric(
        &address,
        "callstream_input_messages_total{outcome=\"rejected\"}",
    );
    let duplicates = metric(
        &address,
        "callstream_input_messages_total{outcome=\"duplicate\"}",
    );
    assert!(service.stop(Duration::from_secs(30)).success());

    assert_eq!(
        processed + rejected + duplicates,
        total as f64,
        "messages in = accounted for"
    );
    assert_eq!(rejected as usize, bad.len() + rejected_valid);
    let dead = read_topic(&t.dead_letters);
    assert_eq!(dead.len(), bad.len() + rejected_valid);
    let mut codes: BTreeMap<String, usize> = BTreeMap::new();
    for letter in &dead {
        assert!(!letter.headers[header::REASON].is_empty());
        *codes
            .entry(letter.headers[header::CODE].clone())
            .or_default() += 1;
    }
    let mut want_codes: BTreeMap<String, usize> = BTreeMap::new();
    for (_, code) in &bad {
        *want_codes.entry((*code).to_owned()).or_default() += 1;
    }
    for (code, n) in &want_codes {
        assert!(
            codes.get(code).copied().unwrap_or(0) >= *n,
            "code {code}: {codes:?}"
        );
    }
    // The valid traffic came through whole.
    let parties: Vec<String> = {
        let mut v: Vec<String> = read_topic(&t.parties)
            .iter()
            .map(|r| record_id(TopicKind::Parties, &r.value))
            .collect();
        v.sort();
        v
    };
    assert_eq!(parties, want[&TopicKind::Parties]);
}

/// With every limit at its default, an input message the broker accepts but whose dead letter
/// would exceed the producer's record limit (`message.max.bytes`, 1,000,000 bytes) is cut to fit,
/// not refused: refusing it would stop the service, and a restart would read it again. So are
/// original headers too large to carry at all, and a reason that quotes a huge field. A record
/// too large for the producer only with its key is a dead letter too. Everything around them is
/// processed.
#[test]
fn dead_letters_too_large_for_the_producer_are_cut_to_fit() {
    let t = unique_topics("cut-dlq");
    create_topics(&t, 1);
    let valid = corpus(200, 93);
    let (want, rejected_valid) = expected(&valid);
    let large_value = vec![b'x'; 1_040_000];
    let large_header = "h".repeat(1_000_000);
    // An `event` of about a megabyte, which the rejection's reason quotes.
    let large_event = format!(
        "{{\"event\":\"{}\",\"body\":{{\"telephonySessionId\":\"s\",\"parties\":[{{\"id\":\"p\",\"status\":{{\"code\":\"Setup\"}}}}]}}}}",
        "e".repeat(1_039_000)
    );

    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("message.max.bytes", "2000000")
        .create()
        .expect("producer");
    let send = |record: BaseRecord<'_, str, [u8]>| {
        producer.send(record).map_err(|(e, _)| e).expect("send");
    };
    let (first, rest) = valid.split_at(100);
    for line in first {
        send(BaseRecord::to(&t.input).key("k").payload(line.as_bytes()));
    }
    send(
        BaseRecord::to(&t.input)
            .key("large-value")
            .payload(&large_value[..]),
    );
    send(
        BaseRecord::to(&t.input)
            .key("large-header")
            .payload(&b"not json"[..])
            .headers(
                rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
                    key: "upstream",
                    value: Some(&large_header),
                }),
            ),
    );
    send(
        BaseRecord::to(&t.input)
            .key("large-event")
            .payload(large_event.as_bytes()),
    );
    // A record keyed by a 520 KB extension id, which its value carries too: librdkafka would
    // refuse it (key and value over `message.max.bytes`), stopping the service at every restart.
    let long_key = format!(
        "{{\"body\":{{\"telephonySessionId\":\"s-long-key\",\"parties\":[{{\"id\":\"p\",\"extensionId\":\"{}\",\"status\":{{\"code\":\"Answered\"}}}}]}}}}",
        "1".repeat(520_000)
    );
    send(
        BaseRecord::to(&t.input)
            .key("long-key")
            .payload(long_key.as_bytes()),
    );
    for line in rest {
        send(BaseRecord::to(&t.input).key("k").payload(line.as_bytes()));
    }
    producer.flush(Duration::from_secs(30)).expect("flush");

    let service = Service::start_logged(&t, "cut-dlq-group", &[]);
    let want_dead = 4 + rejected_valid.len();
    let mut dead = Vec::new();
    wait_for("every dead letter", Duration::from_secs(120), || {
        dead = read_topic(&t.dead_letters);
        dead.len() >= want_dead
    });
    let parties: Vec<String> = {
        let mut v = Vec::new();
        wait_for("every party record", Duration::from_secs(120), || {
            v = read_topic(&t.parties)
                .iter()
                .map(|r| record_id(TopicKind::Parties, &r.value))
                .collect();
            v.sort();
            v == want[&TopicKind::Parties]
        });
        v
    };
    assert_eq!(parties, want[&TopicKind::Parties]);
    assert!(
        service.stop(Duration::from_secs(30)).success(),
        "the service kept running and stopped cleanly"
    );

    let cut = dead
        .iter()
        .find(|l| l.key.as_deref() == Some("large-value"))
        .expect("the large value's dead letter");
    assert_eq!(cut.headers[header::VALUE_TRUNCATED], "1040000");
    assert!(
        cut.value.len() > 990_000,
        "cut to {} bytes",
        cut.value.len()
    );
    assert!(large_value.starts_with(&cut.value));
    assert_eq!(cut.headers[header::SOURCE_OFFSET], "100");
    assert!(!cut.headers.contains_key(header::ORIGINAL_DROPPED));

    let dropped = dead
        .iter()
        .find(|l| l.headers.get(header::SOURCE_OFFSET).map(String::as_str) == Some("101"))
        .expect("the large header's dead letter");
    assert!(
        dropped.headers[header::ORIGINAL_DROPPED]
            .parse::<usize>()
            .unwrap()
            > 1_000_000
    );
    assert_eq!(dropped.key, None);
    assert!(!dropped.headers.contains_key("upstream"));
    assert_eq!(dropped.headers[header::CODE], "syntax");

    let quoted = dead
        .iter()
        .find(|l| l.key.as_deref() == Some("large-event"))
        .expect("the large event's dead letter");
    assert_eq!(quoted.headers[header::CODE], "wrong_event");
    assert!(
        quoted.headers[header::REASON].len() <= callstream::service::dead_letters::MAX_TEXT_BYTES
    );
    assert_eq!(
        quoted.headers[header::VALUE_TRUNCATED],
        large_event.len().to_string()
    );

    let refused = dead
        .iter()
        .find(|l| l.key.as_deref() == Some("long-key"))
        .expect("the long key's dead letter");
    assert_eq!(refused.headers[header::CODE], "record_too_large");
    assert_eq!(refused.value, long_key.as_bytes());
}

/// Sends one record whose header name is not UTF-8, which rust-rdkafka's API cannot express but
/// the protocol allows (Kafka names are bytes to librdkafka).
fn produce_with_header_name(topic: &str, key: &str, name: &[u8], payload: &[u8]) {
    use rdkafka::bindings as rd;
    use rdkafka::producer::BaseProducer;
    use std::ffi::CString;
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .expect("producer");
    let topic = CString::new(topic).expect("topic name");
    let name = CString::new(name).expect("no NUL in the name");
    let value = b"v";
    let vu = |vtype, u| rd::rd_kafka_vu_t { vtype, u };
    // Bytes librdkafka copies (F_COPY below) and never writes through.
    let mem = |bytes: &[u8]| rd::rd_kafka_vu_s__bindgen_ty_1 {
        mem: rd::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_1 {
            ptr: bytes.as_ptr() as *mut _,
            size: bytes.len(),
        },
    };
    let vus = [
        vu(
            rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_TOPIC,
            rd::rd_kafka_vu_s__bindgen_ty_1 {
                cstr: topic.as_ptr(),
            },
        ),
        vu(
            rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_KEY,
            mem(key.as_bytes()),
        ),
        vu(rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_VALUE, mem(payload)),
        vu(
            rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_HEADER,
            rd::rd_kafka_vu_s__bindgen_ty_1 {
                header: rd::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_2 {
                    name: name.as_ptr(),
                    val: value.as_ptr().cast(),
                    size: value.len() as isize,
                },
            },
        ),
        vu(
            rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_MSGFLAGS,
            rd::rd_kafka_vu_s__bindgen_ty_1 {
                i: rd::RD_KAFKA_MSG_F_COPY,
            },
        ),
    ];
    // SAFETY: every pointer is valid for the call, and the record's bytes are copied (F_COPY).
    let error =
        unsafe { rd::rd_kafka_produceva(producer.client().native_ptr(), vus.as_ptr(), vus.len()) };
    assert!(error.is_null(), "produceva failed");
    producer.flush(Duration::from_secs(30)).expect("flush");
}

/// A rejected message whose header name is not UTF-8 becomes a dead letter (the name's bad bytes
/// replaced), and the service goes on: reading such a name through rust-rdkafka panics.
#[test]
fn a_header_name_that_is_not_utf8_does_not_stop_the_service() {
    let t = unique_topics("raw-header");
    create_topics(&t, 1);
    let valid = corpus(50, 95);
    let (want, _) = expected(&valid);
    produce_with_header_name(&t.input, "bad-header", b"trace-\xff\xfe", b"not json");
    produce(&t.input, &valid);

    let service = Service::start_logged(&t, "raw-header-group", &[]);
    let mut dead = Vec::new();
    wait_for("the dead letter", Duration::from_secs(60), || {
        dead = read_topic(&t.dead_letters);
        !dead.is_empty()
    });
    let mut parties = Vec::new();
    wait_for("every party record", Duration::from_secs(60), || {
        parties = read_topic(&t.parties)
            .iter()
            .map(|r| record_id(TopicKind::Parties, &r.value))
            .collect();
        parties.sort();
        parties == want[&TopicKind::Parties]
    });
    assert!(service.stop(Duration::from_secs(30)).success());
    let letter = &dead[0];
    assert_eq!(letter.key.as_deref(), Some("bad-header"));
    assert_eq!(letter.headers[header::CODE], "syntax");
    assert_eq!(letter.headers["trace-\u{fffd}\u{fffd}"], "v");
}

//! `callstream run` against a real Apache Kafka broker (started by scripts/test.sh).

mod kafka_support;

use std::collections::BTreeMap;
use std::time::Duration;

use callstream::cli::report::now_ms;
use callstream::core::TopicKind;
use callstream::generate::{Generator, GeneratorConfig};
use callstream::service::dead_letters::header;
use kafka_support::*;
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(90);
/// How old a backlog's timestamps are where a topic refuses old ones (it accepts an hour).
const TWO_DAYS_MS: i64 = 2 * 24 * 3600 * 1000;

fn derived_topics(t: &callstream::topics::TopicNames) -> Vec<(TopicKind, String)> {
    TopicKind::ALL
        .iter()
        .map(|&k| (k, t.of(k).to_owned()))
        .collect()
}

/// Record ids per derived topic, sorted, as read back.
fn published(t: &callstream::topics::TopicNames) -> BTreeMap<TopicKind, Vec<String>> {
    derived_topics(t)
        .into_iter()
        .map(|(kind, topic)| {
            let mut ids: Vec<String> = read_topic(&topic)
                .iter()
                .map(|r| record_id(kind, &r.value))
                .collect();
            ids.sort();
            (kind, ids)
        })
        .collect()
}

/// Per recording id, `active` of its record with the highest sequence, as published.
fn latest_recording_states(t: &callstream::topics::TopicNames) -> BTreeMap<String, Value> {
    let records = read_topic(&t.recorded).into_iter().map(|r| {
        let datum = callstream::core::framing::decode_value(TopicKind::Recorded, &r.value)
            .expect("decodes with the shipped schema");
        Value::try_from(datum).expect("json")
    });
    latest_by_sequence(records)
}

/// The same, from the corpus processed in order.
fn expected_recording_states(lines: &[String]) -> BTreeMap<String, Value> {
    let mut processor = callstream::core::Processor::new(Default::default());
    let mut records = Vec::new();
    for line in lines {
        let _ = processor.process(line.as_bytes(), |r| {
            if r.topic() == TopicKind::Recorded {
                records.push(callstream::core::encode::to_json(r));
            }
            Ok(())
        });
    }
    latest_by_sequence(records.into_iter())
}

fn latest_by_sequence(records: impl Iterator<Item = Value>) -> BTreeMap<String, Value> {
    let mut latest: BTreeMap<String, (i64, Value)> = BTreeMap::new();
    for r in records {
        let id = r["record_id"].as_str().expect("record_id").to_owned();
        let sequence = r["sequence"].as_i64().unwrap_or(i64::MIN);
        let entry = latest.entry(id).or_insert((i64::MIN, Value::Null));
        if sequence >= entry.0 {
            *entry = (sequence, r["active"].clone());
        }
    }
    latest
        .into_iter()
        .map(|(id, (_, active))| (id, active))
        .collect()
}

fn count_parties(t: &callstream::topics::TopicNames) -> usize {
    read_topic(&t.parties).len()
}

fn dedup(ids: &[String]) -> Vec<String> {
    let mut v = ids.to_vec();
    v.dedup();
    v
}

#[test]
fn publishes_every_record_and_dead_letters_then_shuts_down_gracefully() {
    let t = unique_topics("e2e");
    create_topics(&t, PARTITIONS);
    let lines = corpus(400, 11);
    let (want, rejected) = expected(&lines);
    let rejected = rejected.len();
    produce(&t.input, &lines);

    let service = Service::start(&t, "e2e-group", &[]);
    let want_parties = want[&TopicKind::Parties].len();
    wait_for("all party records", TIMEOUT, || {
        count_parties(&t) >= want_parties
    });
    wait_for("all dead letters", TIMEOUT, || {
        read_topic(&t.dead_letters).len() >= rejected
    });

    // Graceful shutdown: exit 0 in bounded time, with every input offset committed.
    let status = service.stop(Duration::from_secs(30));
    assert!(status.success(), "exit status {status}");
    assert_eq!(
        committed_total("e2e-group", &t.input, PARTITIONS),
        lines.len() as i64
    );

    let got = published(&t);
    for (kind, ids) in &want {
        if *kind == TopicKind::Recorded {
            // Partitions are read in parallel: a recording's older state that arrives after a
            // newer one is not published, so the copies depend on the order. Every recording is
            // published, and what its latest record says is what its latest notification said.
            assert_eq!(dedup(&got[kind]), dedup(ids), "records of {kind:?}");
            assert_eq!(
                latest_recording_states(&t),
                expected_recording_states(&lines),
                "latest state of each recording"
            );
        } else {
            assert_eq!(&got[kind], ids, "records of {kind:?}");
        }
    }
    // Keys: the party's extension, or the telephony session id for external parties.
    for record in read_topic(&t.parties) {
        let key = record.key.expect("keyed");
        assert!(!key.is_empty());
    }
    let dead = read_topic(&t.dead_letters);
    assert_eq!(dead.len(), rejected);
    for letter in &dead {
        for name in [
            header::STAGE,
            header::CODE,
            header::REASON,
            header::SOURCE_TOPIC,
            header::SOURCE_PARTITION,
            header::SOURCE_OFFSET,
            header::SOURCE_TIMESTAMP,
            header::VERSION,
        ] {
            assert!(
                letter.headers.contains_key(name),
                "dead letter lacks {name}: {:?}",
                letter.headers
            );
        }
        assert_eq!(letter.headers[header::SOURCE_TOPIC], t.input);
        assert!(
            lines
                .iter()
                .any(|l| l.as_bytes() == letter.value.as_slice()),
            "original value kept"
        );
    }
}

#[test]
fn restart_resumes_from_the_committed_offsets() {
    let t = unique_topics("restart");
    create_topics(&t, PARTITIONS);
    let first = corpus(200, 21);
    let second = corpus(200, 22);
    produce(&t.input, &first);
    let service = Service::start(&t, "restart-group", &[]);
    let (want_first, _) = expected(&first);
    let n_first = want_first[&TopicKind::Parties].len();
    wait_for("first batch", TIMEOUT, || count_parties(&t) >= n_first);
    assert!(service.stop(Duration::from_secs(30)).success());

    produce(&t.input, &second);
    let service = Service::start(&t, "restart-group", &[]);
    let (want_second, _) = expected(&second);
    let n_total = n_first + want_second[&TopicKind::Parties].len();
    wait_for("second batch", TIMEOUT, || count_parties(&t) >= n_total);
    assert!(service.stop(Duration::from_secs(30)).success());
    // Nothing of the first batch was processed again.
    assert_eq!(count_parties(&t), n_total);
}

#[test]
fn two_processes_in_one_group_share_the_partitions() {
    let t = unique_topics("pair");
    create_topics(&t, 6);
    let lines = corpus(600, 31);
    let (want, _) = expected(&lines);
    let addresses = [0, 1].map(|_| format!("127.0.0.1:{}", free_port()));
    let [a, b] = addresses
        .each_ref()
        .map(|address| Service::start(&t, "pair-group", &["--metrics-addr", address]));
    // Both hold partitions before any input exists, so both have some of it to process.
    for address in &addresses {
        wait_for("both processes assigned partitions", TIMEOUT, || {
            http_get(&format!("http://{address}/health/ready")).0 == 200
        });
    }
    produce(&t.input, &lines);
    let want_parties = dedup(&want[&TopicKind::Parties]);
    wait_for("every party record from the pair", TIMEOUT, || {
        dedup(&published(&t)[&TopicKind::Parties]) == want_parties
    });
    for address in &addresses {
        let read = metric(address, "callstream_input_messages_total");
        assert!(
            read > 0.0 && read < lines.len() as f64,
            "each process read part of the input ({address} read {read} of {})",
            lines.len()
        );
    }
    assert!(a.stop(Duration::from_secs(30)).success());
    assert!(b.stop(Duration::from_secs(30)).success());
    assert_eq!(
        committed_total("pair-group", &t.input, 6),
        end_total(&t.input, 6)
    );
}

fn crash_and_restart(
    guarantee: &str,
    test: &str,
) -> (
    BTreeMap<TopicKind, Vec<String>>,
    BTreeMap<TopicKind, Vec<String>>,
) {
    let t = unique_topics(test);
    create_topics(&t, PARTITIONS);
    let lines = corpus(20_000, 41);
    let (want, _) = expected(&lines);
    // The crash must leave work uncommitted however fast the input is processed (a fast run had
    // committed all of it before the kill landed): commits every 5 s instead of every second
    // (at-least-once) or 100 ms (exactly-once), a kill as soon as output appears, and the second
    // half of the input produced only after the kill.
    let (first_half, second_half) = lines.split_at(lines.len() / 2);
    produce(&t.input, first_half);
    let group = format!("{test}-group");
    let txn_id = format!("{test}-txn");
    let mut extra = vec!["--guarantee", guarantee, "--transactional-id", &txn_id];
    extra.extend(if guarantee == "exactly-once" {
        ["--commit-interval-ms", "5000"]
    } else {
        ["-X", "auto.commit.interval.ms=5000"]
    });
    let service = Service::start(&t, &group, &extra);
    // Written, not yet committed under exactly-once.
    wait_for("some output before the crash", TIMEOUT, || {
        end_total_uncommitted(&t.parties, PARTITIONS) > 0
    });
    service.kill9();
    let committed = committed_total(&group, &t.input, PARTITIONS);
    assert!(
        committed < first_half.len() as i64,
        "the crash left work uncommitted (committed: {committed} of {})",
        first_half.len()
    );
    produce(&t.input, second_half);
    let service = Service::start(&t, &group, &extra);
    let total = want[&TopicKind::Parties].len();
    wait_for("catching up after restart", TIMEOUT, || {
        dedup(&published(&t)[&TopicKind::Parties]).len() >= dedup(&want[&TopicKind::Parties]).len()
            && committed_total(&group, &t.input, PARTITIONS) == lines.len() as i64
    });
    assert!(total > 0);
    assert!(service.stop(Duration::from_secs(30)).success());
    (want, published(&t))
}

#[test]
fn at_least_once_loses_nothing_when_killed_mid_stream() {
    let (want, got) = crash_and_restart("at-least-once", "alo-kill");
    for (kind, ids) in &want {
        assert_eq!(dedup(&got[kind]), dedup(ids), "no {kind:?} record lost");
    }
}

#[test]
fn exactly_once_loses_and_duplicates_nothing_when_killed_mid_stream() {
    let (want, got) = crash_and_restart("exactly-once", "eos-kill");
    // Party records are unique per notification: read_committed sees each exactly once.
    assert_eq!(got[&TopicKind::Parties], want[&TopicKind::Parties]);
    for (kind, ids) in &want {
        assert_eq!(dedup(&got[kind]), dedup(ids), "no {kind:?} record lost");
    }
}

#[test]
fn run_fails_fast_when_the_input_topic_is_missing() {
    let t = unique_topics("missing");
    let mut service = Service::start(&t, "missing-group", &[]);
    assert!(!service.exit_within(Duration::from_secs(60)).success());
}

#[test]
fn a_replica_the_group_gives_no_partition_is_ready_and_stands_by() {
    // One input partition, two replicas: the second joins and gets nothing. A rolling update
    // (maxUnavailable 0) waits for its new pod to be ready, so this one must be.
    let t = unique_topics("standby");
    create_topics(&t, 1);
    let ready = |address: &str| http_get(&format!("http://{address}/health/ready")).0 == 200;
    let first_address = format!("127.0.0.1:{}", free_port());
    let first = Service::start(&t, "standby-group", &["--metrics-addr", &first_address]);
    wait_for("the first replica ready", TIMEOUT, || ready(&first_address));
    let second_address = format!("127.0.0.1:{}", free_port());
    let second = Service::start(&t, "standby-group", &["--metrics-addr", &second_address]);
    wait_for("the second replica ready", TIMEOUT, || {
        ready(&second_address)
    });
    // Both stay in the group: input is still processed.
    let lines = corpus(50, 31);
    let (want, _) = expected(&lines);
    produce(&t.input, &lines);
    wait_for("the input processed", TIMEOUT, || {
        count_parties(&t) >= want[&TopicKind::Parties].len()
    });
    // One holds the partition, the other stands by.
    let mut held: Vec<String> = [&first_address, &second_address]
        .iter()
        .map(|address| http_get(&format!("http://{address}/health/ready")).1)
        .collect();
    held.sort();
    assert_eq!(held, ["ready: 0 partitions\n", "ready: 1 partitions\n"]);
    assert!(second.stop(Duration::from_secs(30)).success());
    assert!(first.stop(Duration::from_secs(30)).success());
}

#[test]
fn run_names_the_brokers_it_cannot_reach() {
    // Nothing listens on port 1: the start-up metadata request times out.
    let t = unique_topics("unreachable");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_callstream"))
        .args([
            "run",
            "--bootstrap-servers",
            "127.0.0.1:1",
            "--group-id",
            "unreachable",
        ])
        .args(topic_flags(&t))
        .args(["--metrics-addr", "127.0.0.1:0"])
        .output()
        .expect("run callstream");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("brokers 127.0.0.1:1: check the addresses and ports"),
        "{stderr}"
    );
    // The same error is logged once per 10 s, not several times a second (about 250 lines over
    // the 30 s before).
    let repeated = stderr.matches("librdkafka error").count();
    assert!(repeated < 30, "{repeated} error lines: {stderr}");
}

/// `topics create` and `dead-letters replay` name the brokers they cannot reach and what to
/// check, as `run` does; the replay reports no counts it never made.
#[test]
fn the_other_commands_name_the_brokers_they_cannot_reach() {
    let spawn = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_callstream"))
            .args(args)
            .args(["--bootstrap-servers", "127.0.0.1:1"])
            .env_remove("CALLSTREAM_CONFIG")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run callstream")
    };
    // Both wait out their request time-outs: side by side.
    let children = [
        spawn(&["topics", "create"]),
        spawn(&["dead-letters", "replay", "--from-beginning", "--dry-run"]),
    ];
    for child in children {
        let out = child.wait_with_output().expect("wait");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
        assert!(
            stderr.contains("brokers 127.0.0.1:1: check the addresses and ports"),
            "{stderr}"
        );
        assert!(!stdout.contains("replay"), "{stdout}");
    }
}

/// A signal while the brokers are out of reach stops the service at once, with status 0 (it has
/// read nothing). Before, it waited out the 30 s start-up request and then failed with status 1.
fn a_signal_while_the_brokers_are_out_of_reach_stops_at_once(guarantee: &str) {
    use std::io::BufRead;
    let t = unique_topics(&format!("unreachable-stop-{guarantee}"));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_callstream"))
        .args([
            "run",
            "--bootstrap-servers",
            "127.0.0.1:1",
            "--group-id",
            "unreachable-stop",
            "--guarantee",
            guarantee,
        ])
        .args(topic_flags(&t))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run callstream");
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines_tx.send(line);
        }
    });
    let mut log = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !log.contains("starting") {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no start-up line: {log}"));
        log.push_str(&line);
        log.push('\n');
    }
    let asked = std::time::Instant::now();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            asked.elapsed() < Duration::from_secs(10),
            "still running 10 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // Every line, to the end of its stderr.
    reader.join().expect("reader");
    log.extend(lines.try_iter().map(|l| l + "\n"));
    assert!(status.success(), "{status:?}: {log}");
    assert!(log.contains("stopped before reading anything"), "{log}");
}

#[test]
fn at_least_once_a_signal_while_the_brokers_are_out_of_reach_stops_at_once() {
    a_signal_while_the_brokers_are_out_of_reach_stops_at_once("at-least-once");
}

/// Initializing transactions waits for the brokers too.
#[test]
fn exactly_once_a_signal_while_the_brokers_are_out_of_reach_stops_at_once() {
    a_signal_while_the_brokers_are_out_of_reach_stops_at_once("exactly-once");
}

#[test]
fn run_warns_at_start_up_about_a_missing_output_topic() {
    let t = unique_topics("outputs");
    let mut without_transfers = t.clone();
    without_transfers.transfers = format!("{}-placeholder", t.transfers);
    create_topics(&without_transfers, PARTITIONS);
    let service = Service::start_logged(&t, "outputs-group", &[]);
    wait_for_or_explain(
        "the warning naming the missing topic",
        TIMEOUT,
        || {
            service.log().lines().any(|l| {
                l.contains("output topic not usable")
                    && l.contains(&t.transfers)
                    && l.contains("does not exist")
            })
        },
        || service.log(),
    );
    let log = service.log();
    assert!(service.stop(Duration::from_secs(30)).success());
    for present in [&t.parties, &t.missed, &t.recorded, &t.dead_letters] {
        assert!(
            !log.lines()
                .any(|l| l.contains("output topic not usable") && l.contains(present.as_str())),
            "{log}"
        );
    }
}

/// Where the record size limit of `a_record_over_the_limit_is_a_dead_letter_and_nothing_stops`
/// comes from.
#[derive(Clone, Copy)]
enum Limit {
    /// The producer's `message.max.bytes` (`-X`).
    Producer,
    /// The parties topic's `max.message.bytes`, which callstream reads at start-up.
    Topic,
    /// The dead-letter topic's, lower still (1,300 bytes): too few for a dead letter with a
    /// reason of 1 KiB, which is cut further to fit. Before, librdkafka refused that dead letter,
    /// which stopped the service.
    DeadLetterTopic,
}

/// A record over the limit (here the party record of a valid notification with a 3,000-byte
/// caller name, against a limit of 2,000 or less) is measured before it is sent, and its message
/// becomes a dead letter (`record_too_large`) with nothing of it published. Before, librdkafka (a
/// lower `message.max.bytes`) or the broker (a lower topic `max.message.bytes`) refused the
/// record, which stopped the process, and every restart met the same message again. Everything
/// after it is published, and the group commits past it. A message whose rejection quotes 3 KB
/// is a dead letter too, its reason cut to fit.
fn a_record_over_the_limit_is_a_dead_letter_and_nothing_stops(
    guarantee: &str,
    limit: Limit,
    test: &str,
) {
    let t = unique_topics(test);
    create_topics(&t, 1);
    // The topic's limit applies to whole record batches, whose 61-byte header leaves 1,939 bytes
    // for the record.
    let expected_limit = match limit {
        Limit::Producer => 2000,
        Limit::Topic => {
            set_topic_config(&t.parties, "max.message.bytes", "2000");
            1939
        }
        Limit::DeadLetterTopic => {
            // The lowest of the topics' limits applies to every record.
            set_topic_config(&t.parties, "max.message.bytes", "2000");
            set_topic_config(&t.dead_letters, "max.message.bytes", "1300");
            1239
        }
    };
    let generated: Vec<String> = Generator::new(GeneratorConfig {
        seed: 51,
        ..Default::default()
    })
    .take(300)
    .collect();
    let (before, after) = generated.split_at(150);
    let oversized = Generator::new(GeneratorConfig {
        seed: 52,
        ..Default::default()
    })
    .find(|line| line.contains("\"name\":\""))
    .expect("a notification with a name")
    .replacen(
        "\"name\":\"",
        &format!("\"name\":\"{}", "x".repeat(3_000)),
        1,
    );
    // A notification whose rejection quotes a long `event`.
    let enveloped = Generator::new(GeneratorConfig {
        seed: 53,
        ..Default::default()
    })
    .find(|line| line.contains("\"event\":\""))
    .expect("a notification in an envelope");
    let event_at = enveloped.find("\"event\":\"").expect("event") + "\"event\":\"".len();
    let event_end = event_at + enveloped[event_at..].find('"').expect("event's end");
    let long_reason = format!(
        "{}{}{}",
        &enveloped[..event_at],
        "e".repeat(3_000),
        &enveloped[event_end..]
    );
    let lines: Vec<String> = before
        .iter()
        .cloned()
        .chain([oversized.clone(), long_reason])
        .chain(after.iter().cloned())
        .collect();
    produce(&t.input, &lines);
    let group = format!("{test}-group");
    let txn_id = format!("{test}-txn");
    let mut settings = vec!["--guarantee", guarantee, "--transactional-id", &txn_id];
    if let Limit::Producer = limit {
        settings.extend(["-X", "message.max.bytes=2000"]);
    }

    let service = Service::start_logged(&t, &group, &settings);
    let (want_all, _) = expected(&lines);
    let (oversized_records, _) = expected(std::slice::from_ref(&oversized));
    let oversized_parties = &oversized_records[&TopicKind::Parties];
    assert!(!oversized_parties.is_empty());
    let want: Vec<String> = dedup(&want_all[&TopicKind::Parties])
        .into_iter()
        .filter(|id| !oversized_parties.contains(id))
        .collect();
    wait_for("every other party record", TIMEOUT, || {
        dedup(&published(&t)[&TopicKind::Parties]) == want
    });
    // Committed past everything: the dead letter is acknowledged (or its transaction committed).
    wait_for("the group's offset past everything", TIMEOUT, || {
        committed_total(&group, &t.input, 1) == lines.len() as i64
    });
    let dead = read_topic(&t.dead_letters);
    let refused: Vec<_> = dead
        .iter()
        .filter(|l| l.headers[header::CODE] == "record_too_large")
        .collect();
    assert_eq!(
        refused.len(),
        1,
        "one dead letter for the oversized message"
    );
    assert_eq!(
        refused[0].headers[header::SOURCE_OFFSET],
        before.len().to_string()
    );
    let reason = &refused[0].headers[header::REASON];
    assert!(
        reason.contains(&format!("over the limit of {expected_limit}")),
        "{reason}"
    );
    let quoted: Vec<_> = dead
        .iter()
        .filter(|l| l.headers[header::CODE] == "wrong_event")
        .collect();
    assert_eq!(quoted.len(), 1, "one dead letter for the long event");
    let reason = &quoted[0].headers[header::REASON];
    let longest = match limit {
        Limit::DeadLetterTopic => 900,
        _ => 1024,
    };
    assert!(
        reason.ends_with('…') && reason.len() <= longest,
        "{} bytes: {reason}",
        reason.len()
    );
    assert!(
        service.stop(Duration::from_secs(30)).success(),
        "the service kept running and stopped cleanly"
    );
}

#[test]
fn at_least_once_a_record_over_the_producer_limit_is_a_dead_letter() {
    a_record_over_the_limit_is_a_dead_letter_and_nothing_stops(
        "at-least-once",
        Limit::Producer,
        "alo-refused",
    );
}

#[test]
fn exactly_once_a_record_over_the_producer_limit_is_a_dead_letter() {
    a_record_over_the_limit_is_a_dead_letter_and_nothing_stops(
        "exactly-once",
        Limit::Producer,
        "eos-refused",
    );
}

#[test]
fn at_least_once_a_record_over_its_topics_limit_is_a_dead_letter() {
    a_record_over_the_limit_is_a_dead_letter_and_nothing_stops(
        "at-least-once",
        Limit::Topic,
        "alo-topic-limit",
    );
}

#[test]
fn exactly_once_a_record_over_its_topics_limit_is_a_dead_letter() {
    a_record_over_the_limit_is_a_dead_letter_and_nothing_stops(
        "exactly-once",
        Limit::Topic,
        "eos-topic-limit",
    );
}

#[test]
fn at_least_once_a_dead_letter_fits_its_topics_low_limit() {
    a_record_over_the_limit_is_a_dead_letter_and_nothing_stops(
        "at-least-once",
        Limit::DeadLetterTopic,
        "alo-dead-letter-limit",
    );
}

#[test]
fn exactly_once_a_dead_letter_fits_its_topics_low_limit() {
    a_record_over_the_limit_is_a_dead_letter_and_nothing_stops(
        "exactly-once",
        Limit::DeadLetterTopic,
        "eos-dead-letter-limit",
    );
}

/// An output topic that refuses a record for good while the service runs (its `max.message.bytes`
/// lowered below a party record; callstream read the limit at start-up) stops the service with
/// status 1 under either guarantee, the refused message not committed; raised again, a restart
/// publishes it and what followed. Before, exactly-once aborted, read the same input again and
/// failed again for ever, replacing its producer every third time.
fn a_record_refused_for_good_stops_the_service(guarantee: &str, test: &str) {
    let t = unique_topics(test);
    create_topics(&t, 1);
    let generated: Vec<String> = Generator::new(GeneratorConfig {
        seed: 81,
        ..Default::default()
    })
    .take(60)
    .collect();
    let (before, after) = generated.split_at(50);
    // A long name that lz4 cannot shrink: the topic's limit applies to the compressed batch.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let noise: String = (0..4_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(
                b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                    [(state % 62) as usize],
            )
        })
        .collect();
    let oversized = Generator::new(GeneratorConfig {
        seed: 82,
        ..Default::default()
    })
    .find(|line| line.contains("\"name\":\""))
    .expect("a notification with a name")
    .replacen("\"name\":\"", &format!("\"name\":\"{noise}"), 1);
    let group = format!("{test}-group");
    let txn_id = format!("{test}-txn");
    let settings = ["--guarantee", guarantee, "--transactional-id", &txn_id];

    produce(&t.input, before);
    let mut service = Service::start_logged(&t, &group, &settings);
    wait_for("the first messages committed", TIMEOUT, || {
        committed_total(&group, &t.input, 1) == before.len() as i64
    });
    let published_before = published(&t)[&TopicKind::Parties].len();
    set_topic_config(&t.parties, "max.message.bytes", "2000");
    let mut rest = vec![oversized.clone()];
    rest.extend(after.iter().cloned());
    produce(&t.input, &rest);
    let status = service.exit_within(TIMEOUT);
    let log = service.log();
    assert_eq!(status.code(), Some(1), "{log}");
    // Said by the delivery report or by the commit, whichever saw it first.
    let said = log.lines().find(|line| {
        line.contains("ERROR")
            && line.contains(&t.parties)
            && (line.contains("delivery to") || line.contains("refused for good"))
    });
    assert!(said.is_some(), "{log}");
    assert_eq!(
        committed_total(&group, &t.input, 1),
        before.len() as i64,
        "the refused message is not committed"
    );
    if guarantee == "exactly-once" {
        assert!(log.contains("the open transaction was aborted"), "{log}");
        assert_eq!(
            published(&t)[&TopicKind::Parties].len(),
            published_before,
            "nothing of the failed transaction is readable"
        );
    }

    // The limit raised again (the broker's default), a restart publishes everything.
    set_topic_config(&t.parties, "max.message.bytes", "1048588");
    let all: Vec<String> = before.iter().chain(&rest).cloned().collect();
    let (want, _) = expected(&all);
    let service = Service::start_logged(&t, &group, &settings);
    wait_for("every message committed after the restart", TIMEOUT, || {
        committed_total(&group, &t.input, 1) == all.len() as i64
    });
    wait_for("every party record", TIMEOUT, || {
        dedup(&published(&t)[&TopicKind::Parties]) == dedup(&want[&TopicKind::Parties])
    });
    assert!(service.stop(Duration::from_secs(30)).success());
}

#[test]
fn at_least_once_a_record_refused_for_good_stops_the_service() {
    a_record_refused_for_good_stops_the_service("at-least-once", "alo-refused-later");
}

#[test]
fn exactly_once_a_record_refused_for_good_stops_the_service() {
    a_record_refused_for_good_stops_the_service("exactly-once", "eos-refused-later");
}

/// An output topic that refuses old timestamps (`message.timestamp.before.max.ms`, KIP-937)
/// meets a backlog whose input timestamps are two days old. Callstream keeps the input's timestamp
/// on its records, so the topic refuses them for good (`INVALID_TIMESTAMP`, reported by librdkafka
/// as `INVALID_RECORD` for a batch of several): before, at-least-once stopped at every restart and
/// exactly-once aborted and read the same input again for ever. Now the topic's records are
/// stamped by the producer, everything is published, and the group commits past it.
fn a_topic_refusing_old_timestamps_gets_every_record(guarantee: &str, test: &str) {
    let t = unique_topics(test);
    create_topics(&t, 1);
    set_topic_config(&t.parties, "message.timestamp.before.max.ms", "3600000");
    set_topic_config(
        &t.dead_letters,
        "message.timestamp.before.max.ms",
        "3600000",
    );
    let mut lines: Vec<String> = Generator::new(GeneratorConfig {
        seed: 61,
        ..Default::default()
    })
    .take(200)
    .collect();
    lines.insert(100, "{not a notification".to_owned());
    let started_ms = now_ms();
    let two_days_ago = started_ms - TWO_DAYS_MS;
    produce_at(&t.input, &lines, two_days_ago);
    let group = format!("{test}-group");
    let txn_id = format!("{test}-txn");
    let service = Service::start_logged(
        &t,
        &group,
        &["--guarantee", guarantee, "--transactional-id", &txn_id],
    );
    let (want, _) = expected(&lines);
    wait_for_or_explain(
        "every party record",
        TIMEOUT,
        || dedup(&published(&t)[&TopicKind::Parties]) == dedup(&want[&TopicKind::Parties]),
        || service.log(),
    );
    wait_for("the group's offset past everything", TIMEOUT, || {
        committed_total(&group, &t.input, 1) == lines.len() as i64
    });
    // The parties topic's records were stamped by the producer; the other topics took the input's
    // timestamps.
    let parties = read_topic(&t.parties);
    assert!(parties
        .iter()
        .all(|r| r.timestamp.is_some_and(|ts| ts >= started_ms)));
    let missed = read_topic(&t.missed);
    assert!(!missed.is_empty());
    assert!(missed.iter().all(|r| r.timestamp == Some(two_days_ago)));
    // The dead letter too was stamped by the producer, and keeps the input's time in a header,
    // from which `dead-letters replay` restores it.
    let dead = read_topic(&t.dead_letters);
    assert_eq!(dead.len(), 1);
    assert!(dead[0].timestamp.is_some_and(|ts| ts >= started_ms));
    assert_eq!(
        dead[0].headers[header::SOURCE_TIMESTAMP],
        two_days_ago.to_string()
    );
    let log = service.log();
    assert!(log.contains("taken as refusing its timestamp"), "{log}");
    assert!(service.stop(Duration::from_secs(30)).success());
}

#[test]
fn at_least_once_a_topic_refusing_old_timestamps_gets_every_record() {
    a_topic_refusing_old_timestamps_gets_every_record("at-least-once", "alo-old-timestamps");
}

#[test]
fn exactly_once_a_topic_refusing_old_timestamps_gets_every_record() {
    a_topic_refusing_old_timestamps_gets_every_record("exactly-once", "eos-old-timestamps");
}

/// Exactly-once: an abort forgets what its transaction emitted, and only that. Before, it
/// cleared the duplicate windows, so a redelivery (the same subscription and uuid) of a
/// notification committed before the abort, read after it, was published again. Here the abort
/// comes from a topic refusing old timestamps: the first part of the input, with current
/// timestamps, is committed; the second, two days old and with redeliveries of the first among
/// it, is refused once, aborted and read again, stamped by the producer. A read_committed reader
/// sees exactly what a fault-free run publishes.
#[test]
fn exactly_once_an_abort_forgets_only_what_its_transaction_emitted() {
    let test = "eos-abort-keeps-window";
    let t = unique_topics(test);
    create_topics(&t, 1);
    set_topic_config(&t.parties, "message.timestamp.before.max.ms", "3600000");
    let lines: Vec<String> = Generator::new(GeneratorConfig {
        seed: 67,
        ..Default::default()
    })
    .take(400)
    .collect();
    let (first, rest) = lines.split_at(200);
    let mut second = Vec::new();
    for (i, line) in rest.iter().enumerate() {
        second.push(line.clone());
        if i % 10 == 0 {
            second.push(first[i].clone());
        }
    }
    let group = format!("{test}-group");
    let txn_id = format!("{test}-txn");
    produce(&t.input, first);
    let service = Service::start_logged(
        &t,
        &group,
        &["--guarantee", "exactly-once", "--transactional-id", &txn_id],
    );
    wait_for_or_explain(
        "the first part committed",
        TIMEOUT,
        || committed_total(&group, &t.input, 1) == first.len() as i64,
        || service.log(),
    );
    let two_days_ago = now_ms() - TWO_DAYS_MS;
    produce_at(&t.input, &second, two_days_ago);
    let all: Vec<String> = first.iter().chain(&second).cloned().collect();
    wait_for_or_explain(
        "the group's offset past everything",
        TIMEOUT,
        || committed_total(&group, &t.input, 1) == all.len() as i64,
        || service.log(),
    );
    let log = service.log();
    assert!(
        log.contains("delivery failed inside a transaction"),
        "{log}"
    );
    assert!(log.contains("taken as refusing its timestamp"), "{log}");
    assert!(!log.contains("could not be rolled back"), "{log}");
    let (want, _) = expected(&all);
    let got = published(&t);
    for kind in TopicKind::ALL {
        let want = want.get(&kind).cloned().unwrap_or_default();
        let got = got.get(&kind).cloned().unwrap_or_default();
        assert!(
            got == want,
            "{kind:?}: {} records published, {} expected; published twice: {:?}",
            got.len(),
            want.len(),
            got.windows(2)
                .filter(|w| w[0] == w[1])
                .map(|w| &w[0])
                .collect::<Vec<_>>()
        );
    }
    assert!(!want[&TopicKind::Parties].is_empty());
    assert!(service.stop(Duration::from_secs(30)).success());
}

#[test]
fn a_fenced_producer_stops_the_process_with_a_clear_error() {
    let t = unique_topics("fenced");
    create_topics(&t, PARTITIONS);
    produce(&t.input, &corpus(50, 101));
    let extra = [
        "--guarantee",
        "exactly-once",
        "--transactional-id",
        "fenced-txn",
    ];
    let mut first = Service::start(&t, "fenced-group", &extra);
    wait_for("the first instance to publish", TIMEOUT, || {
        count_parties(&t) > 0
    });
    // A second instance with the same transactional id fences the first.
    let second = Service::start(&t, "fenced-group-2", &extra);
    let deadline = std::time::Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = first.child.try_wait().expect("wait") {
            break status;
        }
        // The first notices when it next touches its transaction: give it input to do so.
        produce(&t.input, &corpus(5, 102));
        assert!(
            std::time::Instant::now() < deadline,
            "the fenced instance kept running"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(status.code(), Some(1), "fenced: exit status 1");
    drop(second);
}

#[test]
fn generate_produces_to_the_input_topic_of_the_environment_or_the_configuration_file() {
    let from_env = unique_topics("generate-env");
    let from_file = unique_topics("generate-file");
    create_topics(&from_env, 1);
    create_topics(&from_file, 1);
    let config =
        std::env::temp_dir().join(format!("callstream-generate-{}.toml", std::process::id()));
    // The file also names brokers that are not there: the command line's are the ones used.
    std::fs::write(
        &config,
        format!(
            "[topics]\ninput = \"{}\"\n[kafka.librdkafka]\n\"bootstrap.servers\" = \"127.0.0.1:1\"\n",
            from_file.input
        ),
    )
    .expect("write the configuration file");
    let generate = |extra: &[&str], input_topic_env: Option<&str>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_callstream"));
        command
            .args([
                "generate",
                "--bootstrap-servers",
                &bootstrap(),
                "--count",
                "20",
            ])
            // A property of the producer given as for `run` (cli_config shows a wrong one is
            // refused).
            .args(["-X", "client.id=callstream-generate-test"])
            .args(extra)
            .env_remove("CALLSTREAM_INPUT_TOPIC")
            .env_remove("CALLSTREAM_CONFIG");
        if let Some(topic) = input_topic_env {
            command.env("CALLSTREAM_INPUT_TOPIC", topic);
        }
        let out = command.output().expect("run generate");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // The environment wins over the file; the file over the default.
    generate(
        &["--config", config.to_str().unwrap()],
        Some(&from_env.input),
    );
    generate(&["--config", config.to_str().unwrap()], None);
    std::fs::remove_file(&config).ok();
    for topic in [&from_env.input, &from_file.input] {
        let records = read_topic(topic);
        assert_eq!(records.len(), 20, "{topic}");
        for record in records {
            serde_json::from_slice::<serde_json::Value>(&record.value).expect("a notification");
        }
    }
}

#[test]
fn dead_letters_are_replayed_to_the_input_topic_once_with_their_own_headers() {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use rdkafka::ClientConfig;

    let t = unique_topics("replay");
    create_topics(&t, 2);
    // Dead letters as callstream writes them, and one record someone else put there; in a
    // transaction, as under exactly-once, so that a marker takes the partitions' last offsets.
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("transactional.id", format!("{}-letters", t.input))
        .create()
        .expect("producer");
    producer
        .init_transactions(Duration::from_secs(30))
        .expect("transactions");
    producer.begin_transaction().expect("begin");
    let letter = |key: &str, value: &str, code: &str, extra: &[(&str, &str)]| {
        let mut headers = OwnedHeaders::new().insert(Header {
            key: "trace-id",
            value: Some(key.as_bytes()),
        });
        let mut callstream = vec![
            (header::STAGE, "decode"),
            (header::CODE, code),
            (header::REASON, "for the test"),
            (header::SOURCE_TOPIC, t.input.as_str()),
            (header::SOURCE_PARTITION, "0"),
            (header::SOURCE_OFFSET, "7"),
        ];
        callstream.extend_from_slice(extra);
        for (name, text) in callstream {
            headers = headers.insert(Header {
                key: name,
                value: Some(text.as_bytes()),
            });
        }
        // All in partition 0, so that where a replay stops is known.
        producer
            .send(
                BaseRecord::to(&t.dead_letters)
                    .partition(0)
                    .key(key)
                    .payload(value)
                    .headers(headers)
                    .timestamp(1_700_000_000_000),
            )
            .expect("queued");
    };
    letter("k1", "v1", "wrong_type", &[]);
    // Its original time in a header: the dead letter's own is the producer's.
    letter(
        "k2",
        "v2",
        "syntax",
        &[(header::SOURCE_TIMESTAMP, "1600000000000")],
    );
    letter(
        "k3",
        "v3",
        "wrong_type",
        &[(header::VALUE_TRUNCATED, "5000000")],
    );
    producer
        .send(
            BaseRecord::to(&t.dead_letters)
                .partition(0)
                .key("k4")
                .payload("not a dead letter"),
        )
        .expect("queued");
    // Larger than a producer limited to 1,000-byte records takes (below).
    let large = "v5".repeat(1_000);
    letter("k5", &large, "invalid_value", &[]);
    letter("k6", "v6", "invalid_value", &[]);
    producer
        .commit_transaction(Duration::from_secs(30))
        .expect("committed");

    // `callstream dead-letters replay` from the test's dead-letter topic.
    let run_replay = |input: &str, group: &str, extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_callstream"))
            .args([
                "dead-letters",
                "replay",
                "--bootstrap-servers",
                &bootstrap(),
            ])
            .args([
                "--input-topic",
                input,
                "--dead-letter-topic",
                &t.dead_letters,
            ])
            .args(["--group-id", &format!("{}-{group}", t.input)])
            .args(extra)
            .env_remove("CALLSTREAM_CONFIG")
            .output()
            .expect("run dead-letters replay")
    };
    let replay = |extra: &[&str]| {
        let out = run_replay(&t.input, "replay", extra);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let values = || -> Vec<String> {
        let mut v: Vec<String> = read_topic(&t.input)
            .iter()
            .map(|r| String::from_utf8_lossy(&r.value).into_owned())
            .collect();
        v.sort();
        v
    };

    // A group that never replayed must be told to start at the beginning.
    let never = run_replay(&t.input, "never", &[]);
    assert_eq!(never.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&never.stderr).contains("--from-beginning"));
    // Nor can it replay into an input topic that is not there.
    let missing = run_replay("no-such-input", "missing", &["--from-beginning"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("input topic no-such-input"));

    // A dry run sends nothing and remembers nothing.
    let said = replay(&["--from-beginning", "--code", "wrong_type", "--dry-run"]);
    assert!(said.starts_with("would replay 1 dead letters"), "{said}");
    assert!(values().is_empty());
    let after_dry_run = run_replay(&t.input, "replay", &[]);
    assert_eq!(
        after_dry_run.status.code(),
        Some(1),
        "the dry run committed nothing"
    );

    let said = replay(&["--from-beginning", "--code", "wrong_type"]);
    assert!(said.starts_with("replayed 1 dead letters"), "{said}");
    assert!(
        said.contains("3 not asked for, 1 not from callstream, 1 incomplete"),
        "{said}"
    );
    assert!(said.contains(&format!("{}/0/7", t.input)), "{said}");
    let records = read_topic(&t.input);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].key.as_deref(), Some("k1"));
    assert_eq!(records[0].value, b"v1");
    assert_eq!(
        records[0].headers,
        BTreeMap::from([("trace-id".to_owned(), "k1".to_owned())]),
        "the message's own headers, none of callstream's"
    );

    // The group remembers how far it got; --from-beginning starts over.
    let said = replay(&[]);
    assert!(said.starts_with("replayed 0 dead letters"), "{said}");
    let said = replay(&["--from-beginning", "--stage", "decode", "--code", "syntax"]);
    assert!(said.starts_with("replayed 1 dead letters"), "{said}");
    assert_eq!(values(), ["v1", "v2"]);
    // Each at its original time: the dead letter's own, or the one its header names.
    let times: BTreeMap<String, Option<i64>> = read_topic(&t.input)
        .into_iter()
        .map(|r| (String::from_utf8_lossy(&r.value).into_owned(), r.timestamp))
        .collect();
    assert_eq!(times["v1"], Some(1_700_000_000_000));
    assert_eq!(times["v2"], Some(1_600_000_000_000));

    // A dead letter the producer refuses stops the replay there: it commits up to it, and run
    // again goes on from it, without sending again what came before.
    let target = unique_topics("replay-target");
    create_topics(&target, 1);
    let into = |extra: &[&str]| run_replay(&target.input, "target", extra);
    let failed = into(&["--from-beginning", "-X", "message.max.bytes=1000"]);
    assert_eq!(failed.status.code(), Some(1), "{failed:?}");
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(
        stderr.contains(&format!("{}/0/4", t.dead_letters)),
        "{stderr}"
    );
    assert!(stderr.contains("run it again"), "{stderr}");
    // What it did is said all the same.
    assert!(
        String::from_utf8_lossy(&failed.stdout).starts_with("replayed 2 dead letters"),
        "{failed:?}"
    );
    let again = into(&[]);
    assert!(again.status.success(), "{again:?}");
    assert!(
        String::from_utf8_lossy(&again.stdout).starts_with("replayed 2 dead letters"),
        "{again:?}"
    );
    let mut sent: Vec<String> = read_topic(&target.input)
        .iter()
        .map(|r| String::from_utf8_lossy(&r.value).into_owned())
        .collect();
    sent.sort();
    assert_eq!(sent, ["v1", "v2", large.as_str(), "v6"]);

    // An input topic that refuses times older than an hour gets them with the current time,
    // instead of refusing each and stopping the replay there for good.
    let strict = unique_topics("replay-strict");
    create_topics(&strict, 1);
    set_topic_config(&strict.input, "message.timestamp.before.max.ms", "3600000");
    let started_ms = now_ms();
    let out = run_replay(&strict.input, "strict", &["--from-beginning"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("replayed 4 dead letters"), "{stdout}");
    assert!(
        stdout.contains("4 of them with the current time"),
        "{stdout}"
    );
    let restamped = read_topic(&strict.input);
    assert_eq!(restamped.len(), 4);
    assert!(restamped
        .iter()
        .all(|r| r.timestamp.is_some_and(|ts| ts >= started_ms)));
}

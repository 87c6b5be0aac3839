//! Metrics, health endpoints and logs of a real run against the real broker, scraped by a real
//! Prometheus server (Debian's `prometheus` package, installed by scripts/test.sh).

mod kafka_support;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use callstream::core::TopicKind;
use kafka_support::*;
use serde_json::Value;

/// Kills the service if the test fails before it stops it.
struct Guard(Option<std::process::Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `name{labels} value` lines of the exposition format, as a map.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// Every phone number in the corpus (the generator writes them as `"phoneNumber":"..."`).
fn phone_numbers(lines: &[String]) -> Vec<String> {
    let mut numbers = Vec::new();
    for line in lines {
        for part in line.split("\"phoneNumber\":").skip(1) {
            let number: String = part
                .trim_start_matches('"')
                .chars()
                .take_while(|c| *c == '+' || c.is_ascii_digit())
                .collect();
            if number.len() >= 8 {
                numbers.push(number);
            }
        }
    }
    numbers.sort();
    numbers.dedup();
    numbers
}

#[test]
fn metrics_count_what_was_processed_and_a_real_prometheus_scrapes_them() {
    let t = unique_topics("metrics");
    create_topics(&t, PARTITIONS);
    let mut lines = corpus(500, 61);
    // A rejected line whose error message carries a phone number, to check log masking.
    lines.push(r#"{"body":{"telephonySessionId":"s-z","parties":[{"id":"p-1","status":{"code":"Setup"},"from":{"phoneNumber":17205550142}}]}}"#.into());
    let (want, rejected) = expected(&lines);
    let rejected = rejected.len();
    produce(&t.input, &lines);

    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_callstream"))
        .args([
            "run",
            "--bootstrap-servers",
            &bootstrap(),
            "--group-id",
            "metrics-group",
        ])
        .args(topic_flags(&t))
        .args([
            "--metrics-addr",
            &address,
            "--log-level",
            "callstream=debug,warn",
            "--log-format",
            "json",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut service = Guard(Some(child));

    // Ready once partitions are assigned.
    wait_for("ready", Duration::from_secs(60), || {
        http_get(&format!("http://{address}/health/ready")).0 == 200
    });
    assert_eq!(http_get(&format!("http://{address}/health/live")).0, 200);
    assert_eq!(http_get(&format!("http://{address}/nothing")).0, 404);

    let processed = (lines.len() - rejected) as f64;
    let metrics_url = format!("http://{address}/metrics");
    wait_for(
        "counters to reach the input",
        Duration::from_secs(90),
        || {
            let s = samples(&http_get(&metrics_url).1);
            s.get(r#"callstream_input_messages_total{outcome="processed"}"#)
                .copied()
                .unwrap_or(0.0)
                + s.get(r#"callstream_input_messages_total{outcome="duplicate"}"#)
                    .copied()
                    .unwrap_or(0.0)
                >= processed
                && s.get(r#"callstream_in_flight_messages"#).copied() == Some(0.0)
        },
    );
    let text = http_get(&metrics_url).1;
    let s = samples(&text);
    let get = |k: &str| s.get(k).copied().unwrap_or(0.0);
    assert_eq!(
        get(r#"callstream_input_messages_total{outcome="processed"}"#)
            + get(r#"callstream_input_messages_total{outcome="duplicate"}"#),
        processed
    );
    assert_eq!(
        get(r#"callstream_input_messages_total{outcome="rejected"}"#),
        rejected as f64
    );
    let dead: f64 = s
        .iter()
        .filter(|(k, _)| k.starts_with("callstream_dead_letters_total{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(dead, rejected as f64);
    for kind in TopicKind::ALL {
        let published = get(&format!(
            "callstream_output_records_total{{topic=\"{}\"}}",
            kind.label()
        ));
        let wanted = want.get(&kind).cloned().unwrap_or_default();
        if kind == TopicKind::Recorded {
            // Partitions are read in parallel, and a recording's older state that comes after a
            // newer one is not published: between one record per recording and all its states,
            // and what the topic holds.
            let mut distinct = wanted.clone();
            distinct.dedup();
            assert!(
                (distinct.len() as f64..=wanted.len() as f64).contains(&published),
                "{kind:?}: {published} published, {} to {} expected",
                distinct.len(),
                wanted.len()
            );
            assert_eq!(published, read_topic(t.of(kind)).len() as f64, "{kind:?}");
        } else {
            assert_eq!(published, wanted.len() as f64, "{kind:?}");
        }
    }
    assert_eq!(
        get("callstream_processing_duration_seconds_count"),
        lines.len() as f64
    );

    // promtool accepts the exposition.
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed by scripts/test.sh");
    use std::io::Write;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // A real Prometheus server scrapes the service and answers queries with the same values.
    let prom_port = free_port();
    let dir = std::env::temp_dir().join(format!("callstream-prom-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: callstream\n    static_configs:\n      - targets: ['{address}']\n"),
    )
    .unwrap();
    let mut prometheus = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus is installed by scripts/test.sh");
    let query = format!(
        "http://127.0.0.1:{prom_port}/api/v1/query?query=callstream_input_messages_total%7Boutcome%3D%22rejected%22%7D"
    );
    let mut answer = Value::Null;
    wait_for(
        "prometheus to scrape callstream",
        Duration::from_secs(60),
        || {
            let (status, body) = http_get(&query);
            answer = serde_json::from_str(&body).unwrap_or(Value::Null);
            status == 200
                && answer["data"]["result"]
                    .as_array()
                    .is_some_and(|r| !r.is_empty())
        },
    );
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let result = &answer["data"]["result"][0];
    assert_eq!(result["metric"]["job"], "callstream");
    assert_eq!(
        result["value"][1].as_str().unwrap().parse::<f64>().unwrap(),
        rejected as f64
    );

    // Shutdown; then no log line holds a full phone number of the input.
    let child = service.0.take().expect("running");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let logs = String::from_utf8_lossy(&output.stderr);
    assert!(logs.contains("dead letter"), "debug logs were captured");
    for number in phone_numbers(&lines)
        .iter()
        .chain(std::iter::once(&"17205550142".to_owned()))
    {
        let digits = number.trim_start_matches('+');
        assert!(
            !logs.contains(digits),
            "a log line holds the phone number {number}"
        );
    }
    for line in logs.lines() {
        assert!(
            serde_json::from_str::<Value>(line).is_ok(),
            "not a JSON log line: {line}"
        );
    }
}

/// The lag gauge of every input partition, once all three are reported.
fn partition_lags(address: &str) -> Option<Vec<f64>> {
    let s = samples(&http_get(&format!("http://{address}/metrics")).1);
    let lags: Vec<f64> = (0..PARTITIONS)
        .filter_map(|p| {
            s.get(&format!(
                "callstream_consumer_lag_messages{{partition=\"{p}\"}}"
            ))
            .copied()
        })
        .collect();
    (lags.len() == PARTITIONS as usize).then_some(lags)
}

/// The lag shows what is not committed, and falls to zero once everything is: under exactly-once
/// too, where the offsets are committed by the producer's transactions, which the consumer's own
/// statistics do not see (its lag stayed at what was committed when the partitions were assigned).
fn consumer_lag_falls_to_zero_once_everything_is_committed(guarantee: &str) {
    let t = unique_topics(&format!("lag-{guarantee}"));
    create_topics(&t, PARTITIONS);
    let group = format!("lag-{guarantee}-group");
    let first = corpus(300, 71);
    produce(&t.input, &first);

    // A first run commits the first batch, so that the second run starts from committed offsets.
    let address = format!("127.0.0.1:{}", free_port());
    let args = ["--guarantee", guarantee, "--metrics-addr", &address];
    let service = Service::start(&t, &group, &args);
    wait_for("the first batch committed", TIMEOUT, || {
        committed_total(&group, &t.input, PARTITIONS) == first.len() as i64
    });
    assert!(service.stop(Duration::from_secs(30)).success());

    // The second run writes its party records to a topic that does not exist yet, so nothing
    // but a few dead letters can be committed: the lag must show the backlog. Once the topic
    // exists, everything is committed and the lag must fall to zero.
    let second = corpus(300, 72);
    let (_, rejected) = expected(&second);
    let mut later = t.clone();
    later.parties = format!("{}-later", t.parties);
    produce(&t.input, &second);
    let held = [
        &args[..],
        &[
            "-X",
            "topic.metadata.propagation.max.ms=1000",
            "--message-timeout-ms",
            "5000",
        ],
    ]
    .concat();
    let service = Service::start(&later, &group, &held);
    let last = std::cell::RefCell::new(Vec::new());
    let behind = |lags: &[f64]| lags.iter().sum::<f64>();
    wait_for_or_explain(
        "the lag to show the backlog held behind the missing topic",
        TIMEOUT,
        || {
            let lags = partition_lags(&address).unwrap_or_default();
            let lag = behind(&lags);
            *last.borrow_mut() = lags;
            lag >= (second.len() - rejected.len()) as f64
        },
        || format!("lags last reported: {:?}", last.borrow()),
    );
    assert!(
        behind(&last.borrow()) <= second.len() as f64,
        "{:?}",
        last.borrow()
    );
    create_topics(&later, PARTITIONS);
    wait_for_or_explain(
        "every partition's lag at zero with everything committed",
        TIMEOUT,
        || {
            let Some(lags) = partition_lags(&address) else {
                return false;
            };
            let zero = behind(&lags) == 0.0;
            *last.borrow_mut() = lags;
            zero && committed_total(&group, &t.input, PARTITIONS)
                == (first.len() + second.len()) as i64
        },
        || format!("lags last reported: {:?}", last.borrow()),
    );
    assert!(service.stop(Duration::from_secs(30)).success());
}

const TIMEOUT: Duration = Duration::from_secs(90);

#[test]
fn at_least_once_consumer_lag_falls_to_zero_once_everything_is_committed() {
    consumer_lag_falls_to_zero_once_everything_is_committed("at-least-once");
}

#[test]
fn exactly_once_consumer_lag_falls_to_zero_once_everything_is_committed() {
    consumer_lag_falls_to_zero_once_everything_is_committed("exactly-once");
}

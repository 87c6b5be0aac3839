//! `callstream demo`: the README's run command works with nothing installed (librdkafka's mock
//! cluster in process) and prints a per-topic summary with decoded examples.

use std::process::{Command, Output};

fn demo(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_callstream"))
        .arg("demo")
        .args(args)
        .output()
        .expect("run demo")
}

#[test]
fn the_demo_processes_the_bundled_and_generated_traffic_and_prints_a_summary() {
    let output = demo(&["--count", "300", "--duration", "120"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("fed 307 notifications"), "{stdout}");
    // Logs to a pipe carry no colour codes.
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("INFO"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "{stderr}");
    for topic in [
        "telephony.sessions.parties:",
        "telephony.calls.missed:",
        "telephony.calls.recorded:",
        "telephony.calls.transfers:",
        "telephony.sessions.dlq: 3 records",
    ] {
        assert!(stdout.contains(topic), "summary lacks {topic}: {stdout}");
    }
    // The official example's party is keyed by its extension, decoded from Avro.
    assert!(
        stdout.contains("\"record_id\""),
        "decoded examples: {stdout}"
    );
    let processed: u64 = stdout
        .split("input: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("input line");
    assert!(processed > 250, "{stdout}");
}

/// The numbers of the summary's `input:` line: processed, rejected, suppressed.
fn input_counts(stdout: &str) -> Vec<u64> {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("input: "))
        .expect("input line");
    line.split_whitespace()
        .filter_map(|word| word.parse().ok())
        .collect()
}

/// More than librdkafka's mock cluster keeps (the last 5 MiB of each partition, about 19,000 of
/// these notifications over the input's three): fed as the service reads, none is lost. Before,
/// the whole backlog was fed first and its oldest messages deleted unread, and the demo still
/// ended with status 0.
#[test]
fn the_demo_reads_a_backlog_larger_than_the_mock_cluster_keeps() {
    let output = demo(&["--count", "30000", "--duration", "300", "--examples", "0"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("fed 30007 notifications"), "{stdout}");
    assert_eq!(
        input_counts(&stdout).iter().sum::<u64>(),
        30_007,
        "{stdout}"
    );
}

/// Stopped by its deadline before it has read everything, the demo says so and fails.
#[test]
fn a_demo_stopped_before_the_end_says_so_and_fails() {
    let output = demo(&["--count", "30000", "--duration", "1", "--examples", "0"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("stopped before the end"), "{stdout}");
    assert!(
        stdout.contains("of the 30007 notifications were read"),
        "{stdout}"
    );
}

/// A metrics address already taken is named in the error.
#[test]
fn a_metrics_address_in_use_is_named() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = taken.local_addr().expect("address").to_string();
    let output = demo(&["--count", "10", "--metrics-addr", &address]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&address), "{stderr}");
    assert!(stderr.contains("--metrics-addr"), "{stderr}");
}

/// A log filter that does not parse is refused, as `run` refuses it.
#[test]
fn the_demo_refuses_a_log_filter_that_does_not_parse() {
    let output = demo(&["--log-level", "callstream=debgu"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("log.level"));
}

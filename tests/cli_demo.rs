//! `callstream demo`: the README's run command works with nothing installed (librdkafka's mock
//! cluster in process) and prints a per-topic summary with decoded examples.

use std::process::Command;

#[test]
fn the_demo_processes_the_bundled_and_generated_traffic_and_prints_a_summary() {
    let output = Command::new(env!("CARGO_BIN_EXE_callstream"))
        .args(["demo", "--count", "300", "--duration", "120"])
        .output()
        .expect("run demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("fed 307 notifications"), "{stdout}");
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

//! The binary runs on mimalloc with arenas committed on demand (src/main.rs sets that default from
//! `.preinit_array`, with a hard-coded option number): mimalloc's verbose start-up report says
//! which value took effect.
#![cfg(all(feature = "mimalloc", target_os = "linux", target_env = "gnu"))]

use std::process::Command;

/// mimalloc's report of its options at start-up (`MIMALLOC_VERBOSE=1`), for `--version`.
fn mimalloc_report(env: &[(&str, &str)]) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_callstream"));
    command.arg("--version").env("MIMALLOC_VERBOSE", "1");
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("MIMALLOC_")) {
        if k != "MIMALLOC_VERBOSE" {
            command.env_remove(k);
        }
    }
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().expect("run callstream --version");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn option_line<'r>(report: &'r str, option: &str) -> Option<&'r str> {
    let name = format!("option '{option}':");
    report.lines().find(|line| line.contains(&name))
}

#[test]
fn arenas_are_committed_on_demand_by_default() {
    let report = mimalloc_report(&[]);
    let line = option_line(&report, "arena_eager_commit")
        .unwrap_or_else(|| panic!("no mimalloc report of arena_eager_commit in:\n{report}"));
    assert!(line.trim_end().ends_with(": 0"), "{line}");
}

#[test]
fn the_environment_still_decides_over_callstreams_default() {
    let report = mimalloc_report(&[("MIMALLOC_ARENA_EAGER_COMMIT", "1")]);
    let line = option_line(&report, "arena_eager_commit")
        .unwrap_or_else(|| panic!("no mimalloc report of arena_eager_commit in:\n{report}"));
    assert!(line.trim_end().ends_with(": 1"), "{line}");
}

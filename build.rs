//! Records the git revision for the `callstream_build_info` metric (`unknown` outside a checkout).

use std::process::Command;

fn main() {
    let revision = std::env::var("CALLSTREAM_GIT_REVISION").ok().or_else(|| {
        Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_owned())
    });
    println!(
        "cargo:rustc-env=CALLSTREAM_GIT_REVISION={}",
        revision.unwrap_or_else(|| "unknown".into())
    );
    println!("cargo:rerun-if-env-changed=CALLSTREAM_GIT_REVISION");
    // Rebuild when HEAD moves, so the metric does not report a stale revision.
    for path in [".git/HEAD", ".git/refs/heads"] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}

#!/usr/bin/env bash
# End-to-end benchmark: starts a real broker (scripts/kafka.sh, its own state directory), builds
# the release binaries, runs src/bin/bench-e2e.rs against them, and stops the broker.
#   scripts/bench-e2e.sh [--count N] [--runs R] [--rate PER_SECOND] [--latency-seconds S]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export KAFKA_STATE_DIR="${KAFKA_STATE_DIR:-/tmp/callstream-bench-kafka}"
export KAFKA_HEAP="${KAFKA_HEAP:--Xmx1g -Xms512m}"
cargo build --release --locked --bins 2>&1 | tail -n 1
trap 'scripts/kafka.sh stop' EXIT
line="$(scripts/kafka.sh start | tail -n 1)"
"${CARGO_TARGET_DIR:-target}/release/bench-e2e" --bootstrap-servers "${line#bootstrap=}" \
  --broker-pid "$(cat "$KAFKA_STATE_DIR/pid")" "$@"

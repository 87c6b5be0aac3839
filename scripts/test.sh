#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need, starts a real Apache
# Kafka broker (scripts/kafka.sh), runs every test against it, and stops the broker.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

need() { command -v "$1" >/dev/null 2>&1; }
if ! need cargo; then echo "test.sh: cargo (Rust) is required" >&2; exit 1; fi
if ! need java || ! need mvn; then
  echo "test.sh: Java 17+ and Maven are required to fetch and run the Kafka broker" >&2; exit 1
fi
# librdkafka is built from source by rdkafka-sys: it needs a C toolchain, cmake-free make, and
# OpenSSL headers; install them when missing and possible.
if ! pkg-config --exists openssl 2>/dev/null || ! need make || ! need cc; then
  if need apt-get && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq build-essential pkg-config libssl-dev zlib1g-dev >/dev/null
  fi
fi

# The observability tests scrape the service with a real Prometheus and check its output with
# promtool: Debian's prometheus package has both.
if ! need prometheus || ! need promtool; then
  if need apt-get && [ "$(id -u)" = 0 ]; then
    echo "test.sh: installing Debian's prometheus package (prometheus, promtool)" >&2
    apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  else
    echo "test.sh: prometheus and promtool are required (apt-get install prometheus)" >&2; exit 1
  fi
fi
need python3 || { echo "test.sh: python3 is required (broker readiness check, test registry)" >&2; exit 1; }

# On failure, what the broker logged last (fencing, coordinator moves) is printed before its data
# goes with it.
cleanup() {
  local status=$?
  local log="${KAFKA_STATE_DIR:-/tmp/callstream-kafka}/server.log"
  if [[ $status -ne 0 && -f "$log" ]]; then
    echo "test.sh: the broker's last warnings and state changes ($log):" >&2
    grep -E " (WARN|ERROR) |[Ff]enc|[Ee]lect" "$log" | tail -n 60 >&2 || true
  fi
  scripts/kafka.sh stop || true
}
trap cleanup EXIT

bootstrap_line="$(scripts/kafka.sh start | tail -n 1)"
export CALLSTREAM_TEST_BOOTSTRAP="${bootstrap_line#bootstrap=}"
echo "test.sh: Kafka broker at $CALLSTREAM_TEST_BOOTSTRAP"

# Build once, then run: unit, core, property and integration tests.
cargo build --tests --locked 2>&1 | tail -n 3
cargo test --locked -- --test-threads=2

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

cleanup() { scripts/kafka.sh stop || true; }
trap cleanup EXIT

bootstrap_line="$(scripts/kafka.sh start | tail -n 1)"
export CALLSTREAM_TEST_BOOTSTRAP="${bootstrap_line#bootstrap=}"
echo "test.sh: Kafka broker at $CALLSTREAM_TEST_BOOTSTRAP"

# Build once, then run: unit, core, property and integration tests.
cargo build --tests --locked 2>&1 | tail -n 3
cargo test --locked -- --test-threads=2

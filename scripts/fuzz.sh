#!/usr/bin/env bash
# Fuzzes the pure core (decode -> envelope -> validate -> normalize -> split -> classify -> encode)
# with cargo-fuzz (libFuzzer + AddressSanitizer), each target for a bounded time.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 60 seconds, every target)
#
# Targets (fuzz/fuzz_targets/): process_bytes (arbitrary bytes through Processor::process) and
# structured_json (generated or mutated notification JSON that reaches classify). Every emitted
# record must encode, frame and decode back with its Avro schema; rejections must be documented
# Rejections; nothing may panic.
#
# Installs cargo-fuzz when it is missing. cargo-fuzz needs nightly compiler flags (-Zsanitizer,
# sanitizer coverage): RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them. The corpus of a
# target, fuzz/corpus/<target>/, is seeded when empty from samples/demo.jsonl, tests/data/*.json
# and 200 generated notifications (`callstream generate --count 200 --seed 3`, built with the
# caller's CARGO_TARGET_DIR). Exits 1 if any target finds a crash; libFuzzer's output names the
# reproducer (fuzz/artifacts/<target>/crash-...). Replay one with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run <target> fuzz/artifacts/<target>/crash-...
# Extra libFuzzer flags: FUZZ_ARGS="-jobs=2 -workers=2" scripts/fuzz.sh 300
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds=${1:-60}
shift || true
case $seconds in
  '' | *[!0-9]*) echo "fuzz.sh: SECONDS_PER_TARGET must be a whole number, got '$seconds'" >&2; exit 2 ;;
esac
all_targets=(process_bytes structured_json)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all_targets[@]}")

need() { command -v "$1" >/dev/null 2>&1; }
need cargo || { echo "fuzz.sh: cargo (Rust) is required" >&2; exit 1; }
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi
# libfuzzer-sys compiles libFuzzer (C++); rdkafka-sys, built with the callstream crate, needs a C
# toolchain and OpenSSL headers.
if ! need c++ || ! need make || ! pkg-config --exists openssl 2>/dev/null; then
  if need apt-get && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq build-essential pkg-config libssl-dev zlib1g-dev >/dev/null
  fi
fi

export RUSTC_BOOTSTRAP=1

# --- Seeds ---------------------------------------------------------------------------------------
# Sources: one notification per file. process_bytes takes them as they are; structured_json takes
# "<notification> NUL <choices>" (a seed mutated by the choices; none: the seed unchanged) and,
# for inputs without a JSON prefix, builds a notification from the bytes (random seeds).
sources=$(mktemp -d)
trap 'rm -rf "$sources"' EXIT
n=0
add_source() { n=$((n + 1)); printf '%s' "$2" >"$sources/src-$1-$(printf %04d $n)"; }
while IFS= read -r line || [ -n "$line" ]; do
  [ -n "$line" ] && add_source demo "$line"
done <samples/demo.jsonl
for f in tests/data/*.json; do
  [ -f "$f" ] && add_source data "$(cat "$f")"
done
corpus_empty() { [ -z "$(find "fuzz/corpus/$1" -type f ! -name 'seed-*' -print -quit 2>/dev/null)" ]; }
needs_seeds=0
for t in "${targets[@]}"; do corpus_empty "$t" && needs_seeds=1; done
if [ $needs_seeds = 1 ]; then
  if generated=$(cargo run -q --bin callstream -- generate --count 200 --seed 3 2>/dev/null); then
    while IFS= read -r line; do
      [ -n "$line" ] && add_source gen "$line"
    done <<<"$generated"
  else
    echo "fuzz.sh: warning: 'callstream generate' failed; seeding without generated traffic" >&2
  fi
fi
for t in "${targets[@]}"; do
  dir=fuzz/corpus/$t
  mkdir -p "$dir"
  corpus_empty "$t" || continue
  case $t in
    process_bytes) cp "$sources"/src-* "$dir"/ ;;
    structured_json)
      for f in "$sources"/src-*; do
        { cat "$f"; printf '\0'; } >"$dir/$(basename "$f")"
      done
      for i in $(seq 1 32); do head -c 256 /dev/urandom >"$dir/src-random-$i"; done
      ;;
    *) cp "$sources"/src-* "$dir"/ ;;
  esac
  echo "fuzz.sh: seeded $dir with $(find "$dir" -type f | wc -l) inputs" >&2
done

# --- Fuzz ----------------------------------------------------------------------------------------
# The fuzz crate is its own workspace with its own target dir (fuzz/target), whatever the caller's
# CARGO_TARGET_DIR is.
unset CARGO_TARGET_DIR
failed=()
for t in "${targets[@]}"; do
  echo "fuzz.sh: fuzzing $t for ${seconds}s" >&2
  log="$sources/$t.log"
  extra=()
  # The raw-bytes target gets the notification's JSON tokens and field names as a dictionary.
  [ "$t" = process_bytes ] && extra+=(-dict=fuzz/dict/notification.dict)
  # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
  if cargo fuzz run "$t" "fuzz/corpus/$t" -- -max_total_time="$seconds" -print_final_stats=1 \
    -rss_limit_mb=4096 "${extra[@]}" ${FUZZ_ARGS:-} 2>&1 | tee "$log"; then
    :
  else
    failed+=("$t")
    echo "fuzz.sh: $t FAILED; reproducer:" >&2
    grep -E 'Test unit written to|artifact_prefix' "$log" | sed 's/^/  /' >&2 || true
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: crashes in: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz.sh: no crash in ${targets[*]} (${seconds}s each)" >&2

#!/usr/bin/env bash
# Soak: a backlog of N notifications (default 1,000,000) through the release binary against a real
# broker, with the process's resident memory sampled every second. Writes target/soak/memory.csv
# (seconds, rss_mib, processed) and prints a summary: peak RSS and throughput per 10 s window.
#   scripts/soak.sh [N]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
count="${1:-1000000}"
export KAFKA_STATE_DIR="${KAFKA_STATE_DIR:-/tmp/callstream-soak-kafka}"
export KAFKA_HEAP="${KAFKA_HEAP:--Xmx1g -Xms512m}"
cargo build --release --locked --bins 2>&1 | tail -n 1
bin="${CARGO_TARGET_DIR:-target}/release/callstream"
out=target/soak
mkdir -p "$out"
pid=""
cleanup() { [[ -n "$pid" ]] && kill "$pid" 2>/dev/null; scripts/kafka.sh stop; }
trap cleanup EXIT
line="$(scripts/kafka.sh start | tail -n 1)"
bootstrap="${line#bootstrap=}"
"$bin" topics create --bootstrap-servers "$bootstrap" --include-input --partitions 6 >/dev/null
echo "soak: producing $count notifications"
"$bin" generate --count "$count" --seed 42 --bootstrap-servers "$bootstrap" 2>/dev/null
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
"$bin" run --bootstrap-servers "$bootstrap" --group-id soak --metrics-addr "127.0.0.1:$port" --log-level warn &
pid=$!
processed() {
  python3 - "$port" <<'PY'
import sys, urllib.request
try:
    text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=2).read().decode()
except Exception:
    print(0); sys.exit()
print(int(sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines() if l.startswith("callstream_input_messages_total"))))
PY
}
echo "seconds,rss_mib,processed" >"$out/memory.csv"
start=$SECONDS
while :; do
  rss_kib="$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")"
  done_count="$(processed)"
  echo "$((SECONDS - start)),$((rss_kib / 1024)),$done_count" >>"$out/memory.csv"
  [[ "$done_count" -ge "$count" ]] && break
  if ((SECONDS - start > 1800)); then echo "soak: did not finish in 30 minutes" >&2; exit 1; fi
  sleep 1
done
peak="$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")"
kill -TERM "$pid"; wait "$pid" || true; pid=""
python3 - "$out/memory.csv" "$count" "$((peak / 1024))" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
count, peak = int(sys.argv[2]), int(sys.argv[3])
secs = int(rows[-1]["seconds"]) or 1
print(f"soak: {count} notifications in {secs} s ({count / secs:.0f}/s), peak RSS {peak} MiB")
print("window   rss_mib  notifications/s")
prev = (0, 0)
for r in rows:
    t, p = int(r["seconds"]), int(r["processed"])
    if t and t % 10 == 0 or r is rows[-1]:
        rate = (p - prev[1]) / max(t - prev[0], 1)
        print(f"{prev[0]:>3}-{t:<4} {int(r['rss_mib']):>7}  {rate:>12.0f}")
        prev = (t, p)
PY

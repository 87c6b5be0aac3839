#!/usr/bin/env bash
# Alternating A/B comparison of two callstream binaries on the same backlog: starts a broker
# (scripts/kafka.sh, its own state directory), preloads N notifications (3 partitions), then runs
# A and B alternately, each as a new consumer group reading the whole backlog, and prints per run
# the rate (first input message to all N processed and acknowledged), the CPU time per
# notification, the broker's CPU time per notification over the same span (the broker shares the
# cores, so a build that makes it work harder is slower for it) and the peak RSS, then the medians. Alternating pairs let a slow phase of the
# machine or of the broker (whose log grows with every run) hit both binaries alike.
#   scripts/bench-ab.sh BINARY_A BINARY_B [PAIRS=5] [N=600000]
# CALLSTREAM_ARGS adds options to both binaries' `run` (e.g. "--max-in-flight-messages 5000").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ $# -lt 2 ]]; then
  echo "usage: scripts/bench-ab.sh BINARY_A BINARY_B [PAIRS=5] [N=600000]" >&2
  exit 2
fi
a="$(realpath "$1")"; b="$(realpath "$2")"; pairs="${3:-5}"; count="${4:-600000}"
# A broker of its own: one already running in the state directory would be reused, with its data.
export KAFKA_STATE_DIR="${KAFKA_STATE_DIR:-/tmp/callstream-ab-kafka-$$}"
export KAFKA_HEAP="${KAFKA_HEAP:--Xmx1g -Xms512m}"
results="$(mktemp)"
pid=""
cleanup() {
  [[ -n "$pid" ]] && kill "$pid" 2>/dev/null
  rm -f "$results"
  scripts/kafka.sh stop
}
trap cleanup EXIT
line="$(scripts/kafka.sh start | tail -n 1)"
bootstrap="${line#bootstrap=}"
"$a" topics create --bootstrap-servers "$bootstrap" --include-input --partitions 3 >/dev/null
"$a" generate --count "$count" --seed 42 --bootstrap-servers "$bootstrap" >/dev/null
run() { # label binary group
  local port
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  "$2" run --bootstrap-servers "$bootstrap" --group-id "$3" --metrics-addr "127.0.0.1:$port" \
    --log-level warn ${CALLSTREAM_ARGS:-} &
  pid=$!
  python3 - "$1" "$port" "$count" "$pid" "$(cat "$KAFKA_STATE_DIR/pid")" >>"$results" <<'PY'
import os, sys, time, urllib.request
label, port, count, pid, broker = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
def cpu_seconds(p):
    stat = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
def sample():
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return None
    value = lambda prefix: sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines() if l.startswith(prefix))
    return value("callstream_input_messages_total"), value("callstream_in_flight_messages ")
start, first = time.time(), None
while True:
    if not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split(")")[-1].split()[0] == "Z":
        sys.exit(f"{label}: callstream exited before it caught up")
    s = sample()
    if s:
        if s[0] > 0 and first is None:
            first, broker_first = time.time(), cpu_seconds(broker)
        if s[0] >= count and s[1] == 0:
            break
    if time.time() - start > 600:
        sys.exit(f"{label}: did not catch up in 10 minutes")
    time.sleep(0.02)
end, broker_cpu = time.time(), cpu_seconds(broker) - broker_first
cpu = cpu_seconds(pid)
hwm = next(int(l.split()[1]) for l in open(f"/proc/{pid}/status") if l.startswith("VmHWM"))
print(f"{label} {count / (end - first):.0f} {cpu / count * 1e6:.2f} {hwm / 1024:.1f} {broker_cpu / count * 1e6:.2f}")
PY
  kill -TERM "$pid"; wait "$pid" || true
  pid=""
  tail -n 1 "$results" | awk '{printf "%s: %s notifications/s, CPU %s µs per notification (broker %s µs), peak RSS %s MiB\n", $1, $2, $3, $5, $4}'
}
for i in $(seq 1 "$pairs"); do
  run A "$a" "ab-a-$i-$$"
  run B "$b" "ab-b-$i-$$"
done
python3 - "$results" <<'PY'
import sys, statistics
rows = [l.split() for l in open(sys.argv[1])]
for label in "AB":
    r = [(float(x[1]), float(x[2]), float(x[4])) for x in rows if x[0] == label]
    print(f"{label} median: {statistics.median(v for v, _, _ in r):.0f} notifications/s, CPU {statistics.median(c for _, c, _ in r):.2f} µs per notification, broker {statistics.median(k for _, _, k in r):.2f} µs")
a = [float(x[1]) for x in rows if x[0] == "A"]; b = [float(x[1]) for x in rows if x[0] == "B"]
print(f"B ahead in {sum(y > x for x, y in zip(a, b))} of {len(a)} pairs; median rate ratio B/A {statistics.median(y / x for x, y in zip(a, b)):.2f}")
PY

#!/usr/bin/env bash
# A real Apache Kafka broker for tests, without Docker.
#
#   scripts/kafka.sh start   fetch (once, cached), format KRaft storage, start one combined
#                            broker+controller on free loopback ports, wait until it serves
#                            metadata, and print `bootstrap=127.0.0.1:<port>` as the last line.
#   scripts/kafka.sh stop    stop it and remove its data.
#   scripts/kafka.sh status  print the bootstrap address if it is running.
#   scripts/kafka.sh fetch   only download the jars into the cache.
#   scripts/kafka.sh restart|pause|resume
#                            fault injection: stop and start the same broker (same ports and data),
#                            or freeze it with SIGSTOP and thaw it with SIGCONT.
#
# The jars come from Maven Central (org.apache.kafka:kafka_2.13 and its runtime dependencies) through
# a throwaway Maven project; later runs reuse the cache and start without downloading.
#
# Environment: KAFKA_VERSION (default below), CALLSTREAM_CACHE (default ~/.cache/callstream),
# KAFKA_STATE_DIR (default /tmp/callstream-kafka), KAFKA_HEAP (default -Xmx768m).
set -euo pipefail

KAFKA_VERSION="${KAFKA_VERSION:-4.1.1}"
LOG4J_VERSION="2.24.3"
SLF4J_VERSION="2.0.16"
# The cache directory names the classpath's revision: a change to the dependencies below fetches
# anew instead of reusing an older classpath.
CLASSPATH_REVISION=2
CACHE="${CALLSTREAM_CACHE:-$HOME/.cache/callstream}/kafka_2.13-$KAFKA_VERSION-r$CLASSPATH_REVISION"
STATE="${KAFKA_STATE_DIR:-/tmp/callstream-kafka}"
HEAP="${KAFKA_HEAP:--Xmx768m -Xms256m}"
READY_TIMEOUT_S="${KAFKA_READY_TIMEOUT_S:-120}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

log() { echo "kafka.sh: $*" >&2; }

fetch() {
  if [[ -f "$CACHE/.complete" ]]; then
    return 0
  fi
  command -v mvn >/dev/null || { log "Maven (mvn) is required to fetch the broker"; exit 1; }
  command -v java >/dev/null || { log "Java 17+ is required to run the broker"; exit 1; }
  log "fetching kafka_2.13 $KAFKA_VERSION and its dependencies from Maven Central into $CACHE"
  local project
  project="$(mktemp -d)"
  cat >"$project/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.callstream</groupId>
  <artifactId>kafka-broker-classpath</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>$KAFKA_VERSION</version>
    </dependency>
    <!-- A logging backend, so the broker logs to its file. kafka_2.13 brings slf4j-api 1.7,
         which cannot find an slf4j2 binding and logs nothing: the 2.x API is named directly. -->
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-api</artifactId>
      <version>$SLF4J_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j2-impl</artifactId>
      <version>$LOG4J_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-core</artifactId>
      <version>$LOG4J_VERSION</version>
    </dependency>
  </dependencies>
</project>
POM
  rm -rf "$CACHE.tmp"
  mkdir -p "$CACHE.tmp/libs"
  (cd "$project" && mvn -B -q dependency:copy-dependencies -DincludeScope=runtime \
      -DoutputDirectory="$CACHE.tmp/libs") >&2
  rm -rf "$project" "$CACHE"
  mv "$CACHE.tmp" "$CACHE"
  touch "$CACHE/.complete"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Readiness: a Metadata request (v0) that lists at least one broker. An open port is not enough;
# a KRaft broker appears in metadata only once it is registered and unfenced.
metadata_ready() {
  python3 - "$1" <<'PY'
import socket, struct, sys
port = int(sys.argv[1])
try:
    s = socket.create_connection(("127.0.0.1", port), timeout=2)
    client = b"kafka.sh"
    body = struct.pack(">hhih", 3, 0, 1, len(client)) + client + struct.pack(">i", 0)
    s.sendall(struct.pack(">i", len(body)) + body)
    size = struct.unpack(">i", s.recv(4))[0]
    data = b""
    while len(data) < size:
        chunk = s.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    brokers = struct.unpack(">i", data[4:8])[0]
    sys.exit(0 if brokers > 0 else 1)
except Exception:
    sys.exit(1)
PY
}

start() {
  if [[ -f "$STATE/pid" ]] && kill -0 "$(cat "$STATE/pid")" 2>/dev/null; then
    log "already running"
    echo "bootstrap=$(cat "$STATE/bootstrap")"
    return 0
  fi
  fetch
  rm -rf "$STATE"
  mkdir -p "$STATE/data"
  local port controller_port
  port="$(free_port)"
  controller_port="$(free_port)"
  while [[ "$controller_port" == "$port" ]]; do controller_port="$(free_port)"; done
  cat >"$STATE/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$STATE/data
num.partitions=3
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=3
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
PROPS
  cat >"$STATE/log4j2.properties" <<'L4J'
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = info
L4J
  local cp="$CACHE/libs/*"
  local cluster_id
  cluster_id="$(java -cp "$cp" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)"
  java -cp "$cp" -Dkafka.logs.dir="$STATE" -Dlog4j2.configurationFile="$STATE/log4j2.properties" \
    kafka.tools.StorageTool format --standalone -t "$cluster_id" -c "$STATE/server.properties" \
    >"$STATE/format.log" 2>&1 || { cat "$STATE/format.log" >&2; exit 1; }
  echo "127.0.0.1:$port" >"$STATE/bootstrap"
  launch
}

# Starts the broker on the existing configuration and data, and waits until it serves metadata.
launch() {
  local cp="$CACHE/libs/*"
  local port
  port="$(cut -d: -f2 <"$STATE/bootstrap")"
  # setsid: the broker must outlive the shell that started it (a test script's subshell).
  setsid java $HEAP -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -Dkafka.logs.dir="$STATE" -Dlog4j2.configurationFile="$STATE/log4j2.properties" \
    -cp "$cp" kafka.Kafka "$STATE/server.properties" >>"$STATE/stdout.log" 2>&1 </dev/null &
  echo $! >"$STATE/pid"
  local deadline=$((SECONDS + READY_TIMEOUT_S))
  until metadata_ready "$port"; do
    if ! kill -0 "$(cat "$STATE/pid")" 2>/dev/null; then
      log "broker exited during start-up; last lines of its logs:"
      tail -n 30 "$STATE/stdout.log" "$STATE/server.log" >&2 2>/dev/null || true
      exit 1
    fi
    if ((SECONDS > deadline)); then
      log "broker not ready after ${READY_TIMEOUT_S}s"
      stop
      exit 1
    fi
    sleep 0.5
  done
  log "broker ready (pid $(cat "$STATE/pid"), data in $STATE)"
  echo "bootstrap=127.0.0.1:$port"
}

# Stops the broker process, keeping its configuration and data.
halt() {
  if [[ -f "$STATE/pid" ]]; then
    local pid
    pid="$(cat "$STATE/pid")"
    if kill -0 "$pid" 2>/dev/null; then
      kill -CONT "$pid" 2>/dev/null || true
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      kill -9 "$pid" 2>/dev/null || true
    fi
  fi
}

stop() {
  halt
  rm -rf "$STATE"
}

running() {
  [[ -f "$STATE/pid" ]] && kill -0 "$(cat "$STATE/pid")" 2>/dev/null
}

status() {
  if [[ -f "$STATE/pid" ]] && kill -0 "$(cat "$STATE/pid")" 2>/dev/null; then
    echo "bootstrap=$(cat "$STATE/bootstrap")"
  else
    echo "not running"
    return 1
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  # Fault injection for tests: the same broker, ports and data.
  restart) running || { log "not running"; exit 1; }; halt; launch ;;
  pause) running || { log "not running"; exit 1; }; kill -STOP "$(cat "$STATE/pid")" ;;
  resume) running || { log "not running"; exit 1; }; kill -CONT "$(cat "$STATE/pid")" ;;
  status) status ;;
  fetch) fetch ;;
  *) echo "usage: $0 start|stop|status|fetch|restart|pause|resume" >&2; exit 2 ;;
esac

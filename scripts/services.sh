#!/usr/bin/env bash
# scripts/services.sh — local backing services for Wafer's tests, CI and developers.
#
# Owns two processes, both bound to 127.0.0.1 only, and everything under $WAFER_SERVICES_DIR
# (default ~/.cache/wafer-services):
#   * a real single-node Apache Kafka broker (KRaft, combined broker + controller) run on the JDK from
#     Maven Central jars. The jars are fetched once with mvn (scripts/kafka/pom.xml) into
#     $WAFER_SERVICES_DIR/kafka-<version>/libs. Data dir, generated server.properties, log, GC and
#     safepoint log (kafka-gc.log, two files of 10 MB at most) and pid file live in
#     $WAFER_SERVICES_DIR/run/. The data dir is wiped on every fresh start, so each start is clean.
#   * a Redis server (Debian package redis-server), daemonized, no persistence, pid/log in the run dir.
# Missing tools (java 17+, mvn, redis-server) are installed with apt-get. No Docker, no systemd.
#
# Usage: scripts/services.sh [start|stop|restart|status|kafka-class CLASS [ARGS...]]
#   start        (default) install what is missing, start both services, wait until they really answer.
#                Idempotent: a service that is already up is left alone.
#   stop         stop both (SIGTERM, bounded wait, then SIGKILL). Exit 0 if nothing was running.
#   restart      stop, then start (fresh, empty broker).
#   status       print the state of each; exit 0 if both are up, 1 otherwise.
#   kafka-class  run a Java main class from the cached Kafka jars with quiet logging, e.g.
#                scripts/services.sh kafka-class org.apache.kafka.tools.TopicCommand \
#                    --bootstrap-server 127.0.0.1:9092 --list
#
# Environment:
#   WAFER_KAFKA_PORT (9092)              PLAINTEXT listener; the CONTROLLER listener is
#   WAFER_KAFKA_CONTROLLER_PORT (9093)   on this port.
#   WAFER_REDIS_PORT (6379)
#   WAFER_SERVICES_DIR (~/.cache/wafer-services)
#   WAFER_KAFKA_VERSION (4.1.2)          any 4.x served by Maven Central.
#   WAFER_KAFKA_HEAP_OPTS ("-Xms128m -Xmx512m")
#   WAFER_KAFKA_START_TIMEOUT (60)       seconds to wait for the broker to answer.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KAFKA_POM="$SCRIPT_DIR/kafka/pom.xml"
KAFKA_LOG4J="$SCRIPT_DIR/kafka/log4j2.yaml"
KAFKA_TOOLS_LOG4J="$SCRIPT_DIR/kafka/tools-log4j2.yaml"

KAFKA_VERSION="${WAFER_KAFKA_VERSION:-4.1.2}"
KAFKA_PORT="${WAFER_KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${WAFER_KAFKA_CONTROLLER_PORT:-9093}"
REDIS_PORT="${WAFER_REDIS_PORT:-6379}"
SERVICES_DIR="${WAFER_SERVICES_DIR:-${HOME:-/root}/.cache/wafer-services}"
KAFKA_HEAP_OPTS="${WAFER_KAFKA_HEAP_OPTS:--Xms128m -Xmx512m}"
KAFKA_START_TIMEOUT="${WAFER_KAFKA_START_TIMEOUT:-60}"

KAFKA_HOME="$SERVICES_DIR/kafka-$KAFKA_VERSION"
KAFKA_LIBS="$KAFKA_HOME/libs"
RUN_DIR="$SERVICES_DIR/run"
KAFKA_RUN="$RUN_DIR/kafka"
KAFKA_DATA="$KAFKA_RUN/data"
KAFKA_PROPS="$KAFKA_RUN/server.properties"
KAFKA_LOG="$RUN_DIR/kafka.log"
KAFKA_PID="$RUN_DIR/kafka.pid"
REDIS_DATA="$RUN_DIR/redis"
REDIS_LOG="$RUN_DIR/redis.log"
REDIS_PID="$RUN_DIR/redis.pid"

JAVA="java"
APT_UPDATED=0

log() { printf 'services: %s\n' "$*" >&2; }
die() { printf 'services: ERROR: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# ---------------------------------------------------------------------------------------------- install

apt_install() {
  local sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || die "need root (or sudo) to apt-get install $*"
    sudo=(sudo)
  fi
  if [[ $APT_UPDATED -eq 0 ]]; then
    log "apt-get update"
    "${sudo[@]}" apt-get update -qq >&2
    APT_UPDATED=1
  fi
  log "apt-get install -y $*"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

java_major() { # prints the major version of the given java binary, or 0
  local v
  v="$("$1" -XshowSettings:properties -version 2>&1 | awk -F' = ' '/java.specification.version/ { print $2 }')"
  printf '%s\n' "${v:-0}"
}

ensure_java() {
  local candidate
  for candidate in "${JAVA_HOME:+$JAVA_HOME/bin/java}" "$(command -v java || true)" /usr/lib/jvm/java-17-openjdk-*/bin/java; do
    if [[ -n $candidate && -x $candidate ]] && (( $(java_major "$candidate") >= 17 )); then
      JAVA="$candidate"
      return
    fi
  done
  apt_install openjdk-17-jre-headless
  for candidate in /usr/lib/jvm/java-17-openjdk-*/bin/java; do
    [[ -x $candidate ]] && { JAVA="$candidate"; return; }
  done
  die "no Java 17+ found after installing openjdk-17-jre-headless"
}

ensure_kafka_jars() {
  [[ -f $KAFKA_LIBS/.complete ]] && return
  command -v mvn >/dev/null || apt_install maven
  local t0 tmp
  t0="$(now)"
  log "fetching Kafka $KAFKA_VERSION jars with mvn into $KAFKA_LIBS (once)"
  mkdir -p "$KAFKA_HOME"
  tmp="$(mktemp -d "$KAFKA_HOME/libs.tmp.XXXXXX")"
  if ! mvn -B -q --no-transfer-progress -f "$KAFKA_POM" -Dkafka.version="$KAFKA_VERSION" \
      dependency:copy-dependencies -DoutputDirectory="$tmp" >"$tmp.mvn.log" 2>&1; then
    cat "$tmp.mvn.log" >&2
    rm -rf "$tmp" "$tmp.mvn.log"
    die "mvn could not fetch the Kafka $KAFKA_VERSION jars (see above)"
  fi
  rm -f "$tmp.mvn.log"
  [[ -f $tmp/kafka_2.13-$KAFKA_VERSION.jar ]] || { rm -rf "$tmp"; die "kafka_2.13-$KAFKA_VERSION.jar missing after mvn"; }
  rm -rf "$KAFKA_LIBS"
  mv "$tmp" "$KAFKA_LIBS"
  touch "$KAFKA_LIBS/.complete"
  log "Kafka jars cached ($(du -sh "$KAFKA_LIBS" | cut -f1)) in $(since "$t0") s"
}

ensure_redis() {
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null && return
  apt_install redis-server
}

# ---------------------------------------------------------------------------------------------- helpers

pid_running() { # pid_running PID: the process exists and is not a zombie
  local stat
  [[ $1 =~ ^[0-9]+$ ]] || return 1
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"
  [[ ${stat:0:1} != Z ]]
}

pid_alive() { # pid_alive PIDFILE PATTERN: the pid in PIDFILE runs and its command line contains PATTERN
  local pid
  [[ -f $1 ]] || return 1
  pid="$(<"$1")"
  pid_running "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$2"
}

port_open() { # port_open PORT: something accepts TCP connections on 127.0.0.1:PORT
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Kafka protocol check without a JVM: send ApiVersions v0 (api_key 18, correlation_id 1, client_id
# "wafer") and expect a response whose correlation_id is 1 and error_code is 0.
kafka_api_versions_ok() {
  local reply
  reply="$(
    exec 2>/dev/null
    exec 3<>"/dev/tcp/127.0.0.1/$KAFKA_PORT" || exit 1
    printf '\x00\x00\x00\x0f\x00\x12\x00\x00\x00\x00\x00\x01\x00\x05wafer' >&3
    timeout 3 head -c 10 <&3 | od -An -tx1 | tr -d ' \n'
  )" || return 1
  [[ ${reply:8:12} == 000000010000 ]]
}

kafka_classpath() { printf '%s/*' "$KAFKA_LIBS"; }

TOOL_JVM_OPTS=(-Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1)

run_kafka_class() { # run_kafka_class CLASS ARGS... (quiet logging, cached jars)
  "$JAVA" "${TOOL_JVM_OPTS[@]}" -Dlog4j2.configurationFile="$KAFKA_TOOLS_LOG4J" -cp "$(kafka_classpath)" "$@"
}

run_kafka_class_timeout() { # run_kafka_class_timeout SECONDS CLASS ARGS...
  local secs="$1"
  shift
  timeout "$secs" "$JAVA" "${TOOL_JVM_OPTS[@]}" -Dlog4j2.configurationFile="$KAFKA_TOOLS_LOG4J" \
    -cp "$(kafka_classpath)" "$@"
}

kafka_up() { pid_alive "$KAFKA_PID" kafka.Kafka && kafka_api_versions_ok; }
redis_up() { command -v redis-cli >/dev/null && [[ $(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]; }

stop_pid() { # stop_pid NAME PIDFILE PATTERN
  local name="$1" pidfile="$2" pattern="$3" pid i
  if ! pid_alive "$pidfile" "$pattern"; then
    rm -f "$pidfile"
    log "$name: not running"
    return
  fi
  pid="$(<"$pidfile")"
  log "$name: stopping (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 300; i++)); do  # 30 s
    pid_running "$pid" || break
    sleep 0.1
  done
  if pid_running "$pid"; then
    log "$name: still running after 30 s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do pid_running "$pid" || break; sleep 0.1; done
  fi
  rm -f "$pidfile"
  log "$name: stopped"
}

kafka_fail() {
  log "Kafka: $*; last 50 lines of $KAFKA_LOG:"
  tail -n 50 "$KAFKA_LOG" >&2 || true
  exit 1
}

# ---------------------------------------------------------------------------------------------- kafka

write_kafka_properties() {
  cat >"$KAFKA_PROPS" <<EOF
# Generated by scripts/services.sh: single-node KRaft broker for tests. Do not edit; edit the script.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$KAFKA_DATA
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=true
delete.topic.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
EOF
}

start_kafka() {
  if kafka_up; then
    log "Kafka: already running (pid $(<"$KAFKA_PID"), 127.0.0.1:$KAFKA_PORT)"
    return
  fi
  if pid_alive "$KAFKA_PID" kafka.Kafka; then
    # Our broker process exists but does not answer (still starting, or wedged): give it the
    # normal start budget, then give up rather than killing it behind the user's back.
    log "Kafka: pid $(<"$KAFKA_PID") exists but does not answer yet; waiting"
    wait_kafka "$(now)"
    return
  fi
  rm -f "$KAFKA_PID"
  if port_open "$KAFKA_PORT"; then
    if kafka_api_versions_ok; then
      log "Kafka: a broker not started by this script already answers on 127.0.0.1:$KAFKA_PORT; using it (stop/status cannot manage it)"
      return
    fi
    die "Kafka: port 127.0.0.1:$KAFKA_PORT is taken by something that is not a Kafka broker"
  fi
  port_open "$KAFKA_CONTROLLER_PORT" && die "Kafka: controller port 127.0.0.1:$KAFKA_CONTROLLER_PORT is already in use"

  ensure_java
  ensure_kafka_jars

  local t0 cluster_id
  t0="$(now)"
  mkdir -p "$KAFKA_RUN"
  rm -rf "$KAFKA_DATA"
  write_kafka_properties
  # 16 random bytes, base64url without padding: what `kafka-storage.sh random-uuid` prints.
  # Like Kafka's own Uuid.randomUuid, never one starting with '-': the storage
  # tool would read it as an option and fail (one start in 64, at random).
  cluster_id="-"
  while [[ "$cluster_id" == -* ]]; do
    cluster_id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
  done
  : >"$KAFKA_LOG"
  if ! run_kafka_class kafka.tools.StorageTool format -t "$cluster_id" -c "$KAFKA_PROPS" >>"$KAFKA_LOG" 2>&1; then
    kafka_fail "formatting the data dir failed"
  fi

  log "Kafka $KAFKA_VERSION: starting on 127.0.0.1:$KAFKA_PORT (log: $KAFKA_LOG)"
  # shellcheck disable=SC2086 # KAFKA_HEAP_OPTS is a list of JVM flags
  nohup "$JAVA" $KAFKA_HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
    "-Xlog:gc,safepoint:file=${KAFKA_LOG%.log}-gc.log:time,uptime:filecount=2,filesize=10m" \
    -Dlog4j2.configurationFile="$KAFKA_LOG4J" -cp "$(kafka_classpath)" \
    kafka.Kafka "$KAFKA_PROPS" >>"$KAFKA_LOG" 2>&1 </dev/null 9>&- &
  echo "$!" >"$KAFKA_PID"
  wait_kafka "$t0"
}

wait_kafka() { # wait_kafka T0: bounded wait until the broker answers a real metadata request
  local t0="$1" deadline
  deadline=$(( $(date +%s) + KAFKA_START_TIMEOUT ))
  until kafka_api_versions_ok; do
    # Only check that the pid runs: right after the fork its command line is still this script's.
    pid_running "$(<"$KAFKA_PID")" || kafka_fail "the broker process exited during startup"
    (( $(date +%s) < deadline )) || kafka_fail "no answer on 127.0.0.1:$KAFKA_PORT after ${KAFKA_START_TIMEOUT} s"
    sleep 0.2
  done
  # A real metadata round trip through the admin client (lists topics).
  ensure_java
  if ! run_kafka_class_timeout 30 org.apache.kafka.tools.TopicCommand \
      --bootstrap-server "127.0.0.1:$KAFKA_PORT" --list >/dev/null 2>>"$KAFKA_LOG"; then
    kafka_fail "the broker answers ApiVersions but a metadata query (TopicCommand --list) failed"
  fi
  log "Kafka: ready on 127.0.0.1:$KAFKA_PORT (pid $(<"$KAFKA_PID"), $(since "$t0") s)"
}

# ---------------------------------------------------------------------------------------------- redis

start_redis() {
  ensure_redis
  if redis_up; then
    log "Redis: already running on 127.0.0.1:$REDIS_PORT"
    return
  fi
  port_open "$REDIS_PORT" && die "Redis: port 127.0.0.1:$REDIS_PORT is taken by something that does not answer PING"
  local t0 i
  t0="$(now)"
  mkdir -p "$REDIS_DATA"
  rm -f "$REDIS_PID"
  log "Redis: starting on 127.0.0.1:$REDIS_PORT (log: $REDIS_LOG)"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes \
    --pidfile "$REDIS_PID" --logfile "$REDIS_LOG" --dir "$REDIS_DATA" \
    --save '' --appendonly no 9>&- ||
    { tail -n 50 "$REDIS_LOG" >&2 || true; die "Redis: redis-server failed to start"; }
  for ((i = 0; i < 100; i++)); do  # 10 s
    redis_up && { log "Redis: ready on 127.0.0.1:$REDIS_PORT ($(since "$t0") s)"; return; }
    sleep 0.1
  done
  tail -n 50 "$REDIS_LOG" >&2 || true
  die "Redis: no PONG on 127.0.0.1:$REDIS_PORT after 10 s"
}

stop_redis() {
  if [[ ! -f $REDIS_PID ]] && redis_up; then
    log "Redis: one not started by this script answers on 127.0.0.1:$REDIS_PORT; leaving it alone"
    return
  fi
  stop_pid Redis "$REDIS_PID" redis-server
}

# ---------------------------------------------------------------------------------------------- commands

lock() { # serialize concurrent start/stop calls (e.g. parallel test jobs)
  mkdir -p "$RUN_DIR"
  exec 9>"$RUN_DIR/.lock"
  flock -w 300 9 || die "could not lock $RUN_DIR/.lock within 300 s"
}

cmd_start() {
  lock
  start_redis
  start_kafka
}

cmd_stop() {
  lock
  stop_pid Kafka "$KAFKA_PID" kafka.Kafka
  stop_redis
}

cmd_status() {
  local rc=0
  if kafka_up; then
    echo "kafka: up (pid $(<"$KAFKA_PID"), 127.0.0.1:$KAFKA_PORT, version $KAFKA_VERSION)"
  elif kafka_api_versions_ok; then
    echo "kafka: up (127.0.0.1:$KAFKA_PORT, not started by this script)"
  else
    echo "kafka: down"
    rc=1
  fi
  if redis_up; then
    if pid_alive "$REDIS_PID" redis-server; then
      echo "redis: up (pid $(<"$REDIS_PID"), 127.0.0.1:$REDIS_PORT)"
    else
      echo "redis: up (127.0.0.1:$REDIS_PORT, not started by this script)"
    fi
  else
    echo "redis: down"
    rc=1
  fi
  return "$rc"
}

cmd_kafka_class() {
  (( $# >= 1 )) || die "usage: $0 kafka-class CLASS [ARGS...]"
  ensure_java
  ensure_kafka_jars
  run_kafka_class "$@"
}

main() {
  local cmd="${1:-start}"
  (( $# > 0 )) && shift
  case "$cmd" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    restart) cmd_stop; cmd_start ;;
    status) cmd_status ;;
    kafka-class) cmd_kafka_class "$@" ;;
    -h | --help | help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' ;;
    *) die "unknown command '$cmd' (use start, stop, restart, status or kafka-class)" ;;
  esac
}

main "$@"

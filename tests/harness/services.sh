#!/usr/bin/env bash
# Real services for integration and end-to-end tests: a single-node KRaft
# Apache Kafka broker and a throwaway PostgreSQL 15 cluster, both bound to
# free 127.0.0.1 ports under one run directory.
#
#   services.sh start [DIR]   start both, create the membersync topics, write
#                             DIR/env; prints DIR on stdout (progress and
#                             timings go to stderr).  DIR must be absent or
#                             empty; default: a fresh mktemp dir under /tmp.
#   services.sh stop DIR      stop both (broker TERM then KILL, PG immediate)
#                             and remove DIR.  Safe to call twice.
#   services.sh env DIR       print DIR/env (shell exports; see write_env).
#   services.sh topics [--bootstrap HOST:PORT] [--replication-factor N]
#                      [NAME:PARTITIONS ...]
#                             create topics with Kafka's TopicCommand
#                             (idempotent); default: the six membersync
#                             topics of DESIGN section 3.
#   services.sh tool CLASS [ARGS...]
#                             run a Kafka command-line class (for example
#                             org.apache.kafka.tools.GetOffsetShell) on the
#                             cached broker classpath.
#
# Environment: MEMBERSYNC_CACHE (default ~/.cache/membersync; scripts/setup.sh
# puts the broker jars in its kafka/libs), MS_PG_BIN (PostgreSQL bin dir),
# MS_KAFKA_JVM_OPTS (replaces the broker's JVM options), MS_KAFKA_STOP_GRACE
# (seconds between TERM and KILL, default 5), MS_KAFKA_CDS=0 (no class-data
# sharing archives for the tools), MS_SERVICES_OWNER_PID (start
# only: a watchdog stops the services once that process is gone, so even a
# SIGKILLed test run leaves nothing behind).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
self="$here/$(basename "${BASH_SOURCE[0]}")"
cache=${MEMBERSYNC_CACHE:-$HOME/.cache/membersync}
kafka_libs="$cache/kafka/libs"
pg_bin=${MS_PG_BIN:-/usr/lib/postgresql/15/bin}
marker=.membersync-harness

# The membersync topics and their partition counts (DESIGN section 3).
default_topics=(
  membersync.sync-requests.v1:12
  membersync.sync-jobs.cornerstone.v1:12
  membersync.sync-jobs.consio.v1:12
  membersync.sync-events.v1:12
  membersync.member-changes.v1:24
  membersync.dlq.v1:3
)

log() { echo "services: $*" >&2; }
die() { echo "services: error: $*" >&2; exit 1; }
now() { date +%s.%N; }
elapsed() { python3 -c 'import sys; print("%.1fs" % (float(sys.argv[2]) - float(sys.argv[1])))' "$1" "$(now)"; }

need_kafka_libs() {
  compgen -G "$kafka_libs/kafka_2.13-*.jar" >/dev/null ||
    die "no Kafka broker jars in $kafka_libs: run scripts/setup.sh first"
}

# Runs a Kafka command-line class.  Short-lived tools start faster with a
# small heap, the serial collector and C1 only, and much faster (about 0.5 s
# instead of 1 s per call) from an application class-data-sharing archive.
# The archive is dumped by the first call of each class and kept in the
# cache, keyed by the JVM build, the classpath and the class, so a stale one
# is never used.  Tools log at WARN to stderr.
kafka_tool() {
  local cls=$1; shift
  need_kafka_libs
  local conf="$cache/kafka/tools-log4j"
  mkdir -p "$conf"
  write_once "$conf/log4j.properties" \
    'log4j.rootLogger=WARN, stderr' \
    'log4j.appender.stderr=org.apache.log4j.ConsoleAppender' \
    'log4j.appender.stderr.Target=System.err' \
    'log4j.appender.stderr.layout=org.apache.log4j.PatternLayout' \
    'log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n'
  write_log4j2 "$conf/log4j2.properties"
  local opts=(-Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:-UsePerfData
    -Djava.awt.headless=true
    "-Dlog4j.configuration=file:$conf/log4j.properties"
    "-Dlog4j2.configurationFile=$conf/log4j2.properties")
  local java jvm key jsa
  java=$(readlink -f "$(command -v java)")
  jvm=$(dirname "$(dirname "$java")")/lib/server/libjvm.so
  key=$( { echo "$java $cls ${opts[*]}"; stat -c '%s %Y' "$jvm" 2>/dev/null; ls -l "$kafka_libs"; } |
    sha256sum | cut -c1-16)
  jsa="$cache/kafka/cds/$cls-$key.jsa"
  if [ "${MS_KAFKA_CDS:-1}" = 0 ]; then
    :
  elif [ -f "$jsa" ]; then
    opts+=("-XX:SharedArchiveFile=$jsa" -Xlog:cds=off -Xlog:cds+dynamic=off)
  elif mkdir -p "$cache/kafka/cds" 2>/dev/null && [ -w "$cache/kafka/cds" ]; then
    # Dump to a private name and rename, so concurrent first calls are safe.
    local tmp="$jsa.$$.$RANDOM" rc=0
    java "${opts[@]}" "-XX:ArchiveClassesAtExit=$tmp" -Xlog:cds=off -Xlog:cds+dynamic=off \
      -cp "$kafka_libs/*" "$cls" "$@" || rc=$?
    if [ -s "$tmp" ]; then mv -f "$tmp" "$jsa"; else rm -f "$tmp"; fi
    return $rc
  fi
  java "${opts[@]}" -cp "$kafka_libs/*" "$cls" "$@"
}

# Kafka 4 registers a log4j2 controller at startup; without a configuration
# log4j2 prints a spurious "No configuration found" error.
write_log4j2() {
  write_once "$1" 'status=error' 'rootLogger.level=warn' \
    'rootLogger.appenderRef.c.ref=c' 'appender.c.type=Console' 'appender.c.name=c' \
    'appender.c.target=SYSTEM_ERR' 'appender.c.layout.type=PatternLayout' \
    'appender.c.layout.pattern=[%d] %p %m (%c)%n'
}

# write_once FILE LINE...: creates FILE atomically (concurrent runs share the
# cache) unless it exists.
write_once() {
  local f=$1; shift
  [ -f "$f" ] && return 0
  printf '%s\n' "$@" >"$f.$$.tmp" && mv -f "$f.$$.tmp" "$f"
}

create_topics() {
  local bootstrap=${MS_KAFKA_BOOTSTRAP:-} rf=1 specs=()
  while [ $# -gt 0 ]; do
    case $1 in
      --bootstrap) bootstrap=$2; shift 2 ;;
      --replication-factor) rf=$2; shift 2 ;;
      -*) die "topics: unknown option $1" ;;
      *) specs+=("$1"); shift ;;
    esac
  done
  [ -n "$bootstrap" ] || die "topics: --bootstrap or MS_KAFKA_BOOTSTRAP is required"
  [ ${#specs[@]} -gt 0 ] || specs=("${default_topics[@]}")
  local s
  for s in "${specs[@]}"; do
    [[ $s =~ ^[A-Za-z0-9._-]+:[0-9]+$ ]] || die "topics: expected NAME:PARTITIONS, got '$s'"
  done
  # One JVM per topic (TopicCommand creates one topic per call), two at a
  # time on our two cores.  --if-not-exists makes a retry harmless.
  one() {
    local name=${1%%:*} parts=${1##*:} _
    for _ in 1 2 3; do
      kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$bootstrap" \
        --create --if-not-exists --topic "$name" --partitions "$parts" \
        --replication-factor "$rf" >/dev/null && return 0
      sleep 1
    done
    echo "services: could not create topic $name" >&2
    return 1
  }
  local i=0 rc=0 pids=()
  # The first call alone: it may dump the class-data-sharing archive the
  # others then use.
  one "${specs[0]}" || rc=1
  for s in "${specs[@]:1}"; do
    one "$s" &
    pids+=($!)
    i=$((i + 1))
    if [ $((i % 2)) -eq 0 ]; then
      for p in "${pids[@]}"; do wait "$p" || rc=1; done
      pids=()
    fi
  done
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  return $rc
}

free_ports() { # N -> N distinct free loopback ports, one a line
  python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
for s in socks:
    print(s.getsockname()[1])
EOF
}

as_pg() { # runs a PostgreSQL server binary unprivileged
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# reaped_bg PIDFILE CMD...: starts CMD in the background, in a session of
# its own (a terminal's Ctrl-C then reaches our traps, which stop it in
# order, not the server directly), under a bash that only waits for it.
# Without that parent, the exited server would stay a zombie until init
# reaps it (here up to two seconds later), visible to "pgrep postgres".
# PIDFILE gets CMD's pid.  The caller redirects output.
reaped_bg() {
  local pidfile=$1; shift
  setsid bash -c '"$@" & echo $! >"$0"; wait $!' "$pidfile" "$@" </dev/null &
}

pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
# Alive and not a zombie.
proc_running() {
  local st
  st=$(sed -n 's/^[0-9]* (.*) \([A-Z]\) .*/\1/p' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# The broker of run dir DIR, found by its command line (so neither a missing
# pid file nor a recycled pid can mislead us).
# (Only the JVM itself: reaped_bg's bash has the same words in its command.)
broker_pid() {
  local p
  for p in $(pgrep -f -- "kafka\.Kafka $1/server\.properties" || true); do
    [ "$(cat "/proc/$p/comm" 2>/dev/null)" = java ] && { echo "$p"; return 0; }
  done
  return 0
}

# Processes of a PostgreSQL cluster: every backend's cwd is the data dir.
pg_procs() {
  local p
  local user=postgres
  [ "$(id -u)" -eq 0 ] || user=$(id -u)
  for p in $(pgrep -u "$user" || true); do
    [ "$(readlink "/proc/$p/cwd" 2>/dev/null)" = "$1" ] && echo "$p"
  done
  return 0
}

stop_services() {
  local dir=$1 grace=${MS_KAFKA_STOP_GRACE:-5}
  [ -d "$dir" ] || return 0
  # A caller-made directory that start never got to use.
  if [ ! -f "$dir/$marker" ] && [ -z "$(ls -A "$dir")" ]; then rmdir "$dir"; return 0; fi
  [ -f "$dir/$marker" ] || die "stop: $dir is not a services.sh run directory; not touching it"
  local t0; t0=$(now)
  local wd; wd=$(cat "$dir/watchdog.pid" 2>/dev/null || true)
  if pid_alive "$wd" && [ "$wd" != "$$" ]; then kill "$wd" 2>/dev/null || true; fi
  if pid_alive "${initdb_pid:-}"; then kill "$initdb_pid" 2>/dev/null || true; wait "$initdb_pid" 2>/dev/null || true; fi
  # TERM the broker and stop PostgreSQL at the same time; both take a moment.
  local kpid n=0; kpid=$(broker_pid "$dir")
  [ -z "$kpid" ] || kill -TERM "$kpid" 2>/dev/null || true
  local data="$dir/pg/data" postmaster=
  if [ -f "$data/postmaster.pid" ]; then
    postmaster=$(head -1 "$data/postmaster.pid" 2>/dev/null || true)
    as_pg "$pg_bin/pg_ctl" -D "$data" -m immediate -w -t 10 stop >/dev/null 2>&1 || true
  fi
  local t_pg; t_pg=$(elapsed "$t0")
  # pg_ctl returns once the postmaster is gone; if it failed, KILL whatever
  # of the cluster is left (backends then exit on postmaster death).
  local left; left=$(pg_procs "$data")
  if [ -n "$left" ]; then
    kill -KILL $left 2>/dev/null || true
    while [ -n "$(pg_procs "$data")" ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
  fi
  if [ -n "$kpid" ]; then
    n=0
    while proc_running "$kpid" && [ $n -lt $((grace * 10)) ]; do sleep 0.1; n=$((n + 1)); done
    if proc_running "$kpid"; then
      log "broker $kpid ignored TERM for ${grace}s; KILL"
      kill -KILL "$kpid" 2>/dev/null || true
    fi
  fi
  local t_kafka; t_kafka=$(elapsed "$t0")
  # Their parents (reaped_bg) reap them at once; wait for that, so that
  # "pgrep postgres" right after a stop comes back empty.
  n=0
  while { [ -e "/proc/${kpid:-none}" ] || [ -e "/proc/${postmaster:-none}" ]; } && [ $n -lt 50 ]; do
    sleep 0.1; n=$((n + 1))
  done
  # Deleting thousands of partition and relation files is slow on a disk
  # mounted with "discard" (4 s here after an e2e run): move the directory
  # aside at once and delete it in the background.
  local trash
  if trash=$(mktemp -d "$(dirname "$dir")/.membersync-trash.XXXXXX" 2>/dev/null) &&
    mv "$dir" "$trash/"; then
    setsid rm -rf "$trash" </dev/null >/dev/null 2>&1 &
  else
    rm -rf "$dir"
  fi
  log "stopped in $(elapsed "$t0") (postgres down after $t_pg, broker after $t_kafka)"
}

write_env() {
  local dir=$1 kport=$2 pgport=$3
  {
    printf 'export MS_RUN_DIR=%q\n' "$dir"
    printf 'export MS_KAFKA_BOOTSTRAP=%q\n' "127.0.0.1:$kport"
    printf 'export MS_KAFKA_PID=%q\n' "$(cat "$dir/kafka.pid")"
    printf 'export MS_KAFKA_LIBS=%q\n' "$kafka_libs"
    printf 'export MS_PG_DSN=%q\n' "postgresql://postgres@127.0.0.1:$pgport/membersync"
    printf 'export MS_PG_HOST=127.0.0.1\n'
    printf 'export MS_PG_PORT=%q\n' "$pgport"
    printf 'export MS_PG_DATA=%q\n' "$dir/pg/data"
    printf 'export MS_PG_BIN=%q\n' "$pg_bin"
    printf 'export MS_SERVICES_SH=%q\n' "$self"
  } >"$dir/env.tmp"
  mv "$dir/env.tmp" "$dir/env"
}

start_services() {
  local dir=${1:-}
  local t0; t0=$(now)
  need_kafka_libs
  command -v java >/dev/null || die "java not found: run scripts/setup.sh"
  [ -x "$pg_bin/initdb" ] || die "no PostgreSQL in $pg_bin (set MS_PG_BIN or run scripts/setup.sh)"
  if [ -z "$dir" ]; then
    dir=$(mktemp -d /tmp/membersync-services.XXXXXX)
  else
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    [ -z "$(ls -A "$dir")" ] || die "start: $dir is not empty"
  fi
  [[ $dir != *[[:space:]]* ]] || die "start: run directory must not contain spaces: $dir"
  touch "$dir/$marker"

  # From here on a failure (or INT/TERM) tears down what was started and
  # shows the end of the logs, so nothing is left running.
  # (The traps name a global: an EXIT trap runs after the function's locals
  # are gone.)
  starting_dir=$dir
  trap 'rc=$?; trap - INT TERM EXIT; fail_start "$starting_dir" $rc' EXIT
  trap 'trap - INT TERM EXIT; fail_start "$starting_dir" 130' INT
  trap 'trap - INT TERM EXIT; fail_start "$starting_dir" 143' TERM

  local ports kport cport pgport n
  mapfile -t ports < <(free_ports 3)
  kport=${ports[0]} cport=${ports[1]} pgport=${ports[2]}

  # --- PostgreSQL: initdb in the background while the broker's storage is
  # formatted (the two JVM-free/JVM steps overlap on two cores).
  mkdir -p "$dir/pg"
  : >"$dir/pg.log"
  if [ "$(id -u)" -eq 0 ]; then
    chmod 755 "$dir"
    chown postgres "$dir/pg" "$dir/pg.log"
    runuser -u postgres -- test -x "$dir/pg" || die "user postgres cannot reach $dir"
  fi
  as_pg "$pg_bin/initdb" -D "$dir/pg/data" -A trust -U postgres --no-sync -E UTF8 --locale=C \
    >>"$dir/pg.log" 2>&1 &
  initdb_pid=$!

  # --- Kafka: configuration and storage format.
  cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
listeners=PLAINTEXT://127.0.0.1:$kport,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$kport,CONTROLLER://127.0.0.1:$cport
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
controller.quorum.bootstrap.servers=127.0.0.1:$cport
log.dirs=$dir/kafka-data
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
auto.create.topics.enable=false
log.segment.bytes=1048576
log.retention.check.interval.ms=60000
EOF
  cat >"$dir/log4j.properties" <<'EOF'
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.request.logger=WARN
EOF
  write_log4j2 "$dir/log4j2.properties"
  local cluster_id
  # Kafka's own random ids never start with "-" (the tool would read one as
  # an option); neither do ours.
  cluster_id=$(python3 -c '
import base64, uuid
while True:
    s = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not s.startswith("-"):
        print(s)
        break')
  local t1; t1=$(now)
  kafka_tool kafka.tools.StorageTool format --standalone --cluster-id "$cluster_id" \
    --config "$dir/server.properties" >>"$dir/kafka.log" 2>&1
  log "kafka storage formatted in $(elapsed "$t1")"

  # --- Kafka broker, in its own session so a terminal's Ctrl-C reaches our
  # traps (which stop it in order) rather than the JVM directly.
  local jvm_opts
  # Serial GC and C1 only: about a second faster to start and lighter on two
  # cores than the defaults; throughput is irrelevant for tests.
  read -r -a jvm_opts <<<"${MS_KAFKA_JVM_OPTS:--Xmx512m -Xms128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:+ExitOnOutOfMemoryError}"
  t1=$(now)
  reaped_bg "$dir/kafka.pid" \
    java "${jvm_opts[@]}" -XX:-UsePerfData -Djava.awt.headless=true \
    "-Dlog4j.configuration=file:$dir/log4j.properties" \
    "-Dlog4j2.configurationFile=$dir/log4j2.properties" \
    -cp "$kafka_libs/*" kafka.Kafka "$dir/server.properties" \
    >>"$dir/kafka.log" 2>&1
  if [ -n "${MS_SERVICES_OWNER_PID:-}" ]; then
    setsid bash "$self" _watchdog "$dir" "$MS_SERVICES_OWNER_PID" >>"$dir/watchdog.log" 2>&1 </dev/null &
    echo $! >"$dir/watchdog.pid"
  fi

  # --- PostgreSQL start while the broker boots.
  wait "$initdb_pid" || die "initdb failed (see $dir/pg.log)"
  # postgres itself rather than "pg_ctl start", whose postmaster would be
  # orphaned at once (see reaped_bg); trust auth on loopback comes from initdb.
  local pg_cmd=()
  [ "$(id -u)" -ne 0 ] || pg_cmd=(runuser -u postgres --)
  reaped_bg "$dir/pg.pid" "${pg_cmd[@]}" "$pg_bin/postgres" -D "$dir/pg/data" -p "$pgport" \
    -k "$dir/pg" -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
    -c full_page_writes=off -c max_connections=200 >>"$dir/pg.log" 2>&1
  n=0
  until "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$pgport" -d postgres; do
    if [ -s "$dir/pg.pid" ] && ! pid_alive "$(cat "$dir/pg.pid")"; then
      die "PostgreSQL exited during startup (see $dir/pg.log)"
    fi
    [ $n -lt 600 ] || die "PostgreSQL did not start within 60s (see $dir/pg.log)"
    sleep 0.1; n=$((n + 1))
  done
  "$pg_bin/psql" -X -q -h 127.0.0.1 -p "$pgport" -U postgres -d postgres -v ON_ERROR_STOP=1 \
    -c 'create database membersync' >/dev/null
  [ "$("$pg_bin/psql" -X -A -t -h 127.0.0.1 -p "$pgport" -U postgres -d membersync -c 'select 1')" = 1 ] ||
    die "PostgreSQL does not answer select 1"
  log "postgres ready on 127.0.0.1:$pgport"

  # --- Broker readiness: KafkaRaftServer logs "Kafka Server started" once
  # the broker is unfenced and serving; the topic creation below then needs
  # a metadata round trip (list + create) to succeed.
  local kpid
  n=0
  while [ ! -s "$dir/kafka.pid" ]; do sleep 0.05; done
  kpid=$(cat "$dir/kafka.pid")
  until grep -q 'Kafka Server started' "$dir/kafka.log"; do
    pid_alive "$kpid" || die "the broker exited during startup"
    [ $n -lt 1200 ] || die "the broker did not start within 60s"
    sleep 0.05; n=$((n + 1))
  done
  log "kafka broker up on 127.0.0.1:$kport in $(elapsed "$t1") (pid $kpid)"
  t1=$(now)
  create_topics --bootstrap "127.0.0.1:$kport" "${default_topics[@]}"
  log "topics created in $(elapsed "$t1")"

  write_env "$dir" "$kport" "$pgport"
  trap - INT TERM EXIT
  log "services started in $(elapsed "$t0"); env in $dir/env"
  echo "$dir"
}

fail_start() {
  local dir=$1 rc=$2
  [ "$rc" -ne 0 ] || rc=1
  log "start failed (status $rc); last lines of the logs:"
  local f
  for f in "$dir/kafka.log" "$dir/pg.log"; do
    [ -f "$f" ] && { echo "--- $f" >&2; tail -n 30 "$f" >&2; }
  done
  stop_services "$dir" || true
  exit "$rc"
}

watchdog() {
  local dir=$1 owner=$2
  while kill -0 "$owner" 2>/dev/null && [ -d "$dir" ]; do sleep 1; done
  if [ -d "$dir" ]; then
    echo "services: owner $owner is gone; stopping $dir" >&2
    stop_services "$dir"
  fi
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
  start) start_services "${1:-}" ;;
  stop) [ $# -eq 1 ] || die "usage: services.sh stop DIR"; stop_services "$1" ;;
  env) [ -f "${1:-}/env" ] || die "usage: services.sh env DIR (no env file in '${1:-}')"; cat "$1/env" ;;
  topics) create_topics "$@" ;;
  tool) [ $# -ge 1 ] || die "usage: services.sh tool CLASS [ARGS...]"; kafka_tool "$@" ;;
  _watchdog) watchdog "$@" ;;
  *)
    sed -n '2,/^set -euo/p' "$self" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
    ;;
esac

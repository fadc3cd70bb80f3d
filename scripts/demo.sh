#!/usr/bin/env bash
# Quick start 1: a demo sync of both member systems on the embedded default.
# Installs and builds what is missing, starts a throw-away PostgreSQL (Kafka is
# librdkafka's embedded mock cluster inside `membersync dev`), runs the demo
# and removes the database again.  Extra arguments go to `membersync dev`
# (e.g. --members 100000, or --serve to keep the roles running).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/setup.sh" >&2
build="$root/build"
if [ ! -f "$build/build.ninja" ]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$build" -j2 --target membersync membersync-sim >&2

pg_bin=${MS_PG_BIN:-/usr/lib/postgresql/15/bin}
dir=$(mktemp -d /tmp/membersync-demo.XXXXXX)
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
  as_pg "$pg_bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT INT TERM
[ "$(id -u)" -eq 0 ] && chown postgres "$dir"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_pg "$pg_bin/initdb" -D "$dir/data" -A trust -U postgres --no-sync -E UTF8 --locale=C >/dev/null
as_pg "$pg_bin/pg_ctl" -D "$dir/data" -l "$dir/pg.log" -w -t 60 \
  -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
as_pg "$pg_bin/createdb" -h 127.0.0.1 -p "$port" -U postgres membersync
echo "demo: PostgreSQL on 127.0.0.1:$port (removed on exit); Kafka: embedded mock cluster" >&2

# Role logs (JSON lines) go to a file; the summaries are printed as they come.
export MEMBERSYNC_POSTGRES_DSN="postgresql://postgres@127.0.0.1:$port/membersync"
set +e
"$build/membersync" --config "$root/config/membersync.conf" dev "$@" |
  tee "$dir/roles.log" | grep --line-buffered -v '^{"ts"'
status=${PIPESTATUS[0]}
set -e
"$build/membersync" --config "$root/config/membersync.conf" status
exit $status

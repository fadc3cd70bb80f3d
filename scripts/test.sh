#!/usr/bin/env bash
# Runs every membersync test: installs what is missing (scripts/setup.sh),
# builds two trees, starts a real Kafka broker and PostgreSQL once
# (tests/harness/services.sh) and runs ctest in both trees against them.
#
#   build       RelWithDebInfo (-O2 -g)
#   build-asan  -DMS_SANITIZE=ON (AddressSanitizer + UBSan), -O2 -g, asserts on
#
# Environment:
#   MS_TEST_LABELS          ctest -L regex, e.g. "unit" or "unit|integration"
#                           (default: every test)
#   MEMBERSYNC_E2E_DATASET  passed through to the e2e tests
#   MS_BUILD_DIR, MS_ASAN_BUILD_DIR   tree locations (default build, build-asan)
#   MS_TEST_TIMEOUT         ctest default per-test timeout in s (default 600;
#                           tests with their own TIMEOUT keep it)
#   MS_KAFKA_BOOTSTRAP + MS_PG_DSN    if both set, use those services instead
#                           of starting our own
# Exits non-zero if any tree fails to build or has a failing test, or if no
# test ran.  Works from any directory.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
services_sh="$repo/tests/harness/services.sh"
build_dir=${MS_BUILD_DIR:-$repo/build}
asan_dir=${MS_ASAN_BUILD_DIR:-$repo/build-asan}
labels=${MS_TEST_LABELS:-}
t_start=$(date +%s)

say() { echo "test.sh: $*"; }
secs() { echo "$(($(date +%s) - $1))s"; }

# --- Cleanup.  Long steps run in their own process group in the background
# so that a TERM to this script is handled at once (bash defers traps while a
# foreground child runs) and reaches the whole step: ctest, the tests and
# what they started.
child=
run_dir=
own_services=0
cleanup() {
  local rc=$1
  trap - EXIT INT TERM HUP
  if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
    kill -TERM -- "-$child" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$child" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$child" 2>/dev/null || true
  fi
  if [ "$own_services" = 1 ] && [ -n "$run_dir" ]; then
    bash "$services_sh" stop "$run_dir" || true
  fi
  exit "$rc"
}
trap 'cleanup $?' EXIT
trap 'echo "test.sh: interrupted" >&2; cleanup 130' INT
trap 'echo "test.sh: terminated" >&2; cleanup 143' TERM
trap 'cleanup 129' HUP

# A minimal supervisor for each step: it runs CMD in its own process group,
# turns a TERM into a TERM for that whole group, and gets that TERM itself
# from the kernel if this script dies, even by SIGKILL (PR_SET_PDEATHSIG), so
# that a killed run leaves no ctest, test or test process behind.
supervisor='
import ctypes, os, signal, sys
parent = os.getppid()
ctypes.CDLL(None).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
if os.getppid() != parent:
    sys.exit(143)
pid = os.fork()
if pid == 0:
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_DFL)
    try:
        os.execvp(sys.argv[1], sys.argv[1:])
    except OSError as e:
        sys.stderr.write("%s: %s\n" % (sys.argv[1], e))
        os._exit(127)
def forward(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.killpg(os.getpgrp(), signal.SIGTERM)
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(s, forward)
while True:
    try:
        _, status = os.waitpid(pid, 0)
        break
    except InterruptedError:
        continue
sys.exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))
'

# step CMD...: runs CMD as a new process group under the supervisor and
# waits; returns its status.
step() {
  setsid python3 -c "$supervisor" "$@" &
  child=$!
  local rc=0
  wait "$child" || rc=$?
  child=
  return $rc
}

# --- 1. Dependencies.
t=$(date +%s)
step bash "$repo/scripts/setup.sh"
say "setup done in $(secs "$t")"

# --- 2. LeakSanitizer check.  LSan stops the process with ptrace-like
# machinery at exit; under a debugger, strace, or a sandbox that forbids
# ptrace (seccomp, yama ptrace_scope=3) it aborts with "LeakSanitizer has
# encountered a fatal error" and every ASan test would fail for that reason
# alone.  So probe it once: leaks are detected where it works (it does on our
# Debian 12 machines) and detect_leaks=0 is used only where it cannot work.
probe=$(mktemp -d)
printf '#include <stdlib.h>\nvoid *volatile keep;\nint main(void) { keep = malloc(42); keep = 0; return 0; }\n' >"$probe/leak.c"
detect_leaks=0
if cc -fsanitize=address -g -o "$probe/leak" "$probe/leak.c" 2>"$probe/cc.err"; then
  if ASAN_OPTIONS=detect_leaks=1 "$probe/leak" >"$probe/out" 2>&1; then :; fi
  if grep -q "detected memory leaks" "$probe/out"; then
    detect_leaks=1
  else
    say "LeakSanitizer does not work here, running ASan with detect_leaks=0: $(head -c 300 "$probe/out" | tr '\n' ' ')"
  fi
else
  say "cannot build an ASan probe: $(head -c 300 "$probe/cc.err" | tr '\n' ' ')"
fi
rm -rf "$probe"

# --- 3. Build both trees.
declare -A status summary
configure_and_build() { # DIR CMAKE_ARGS...
  local dir=$1; shift
  local gen=()
  [ -f "$dir/CMakeCache.txt" ] || gen=(-G Ninja)
  step cmake -S "$repo" -B "$dir" "${gen[@]}" "$@" >/dev/null &&
    step cmake --build "$dir" -j2
}
trees=("$build_dir" "$asan_dir")
for dir in "${trees[@]}"; do
  t=$(date +%s)
  if [ "$dir" = "$asan_dir" ]; then
    # Same -O2 as the other tree (GCC's -Werror warnings such as
    # -Wformat-truncation depend on the optimisation level, and one level for
    # both keeps "builds here" meaning "builds there"), but without NDEBUG:
    # the sanitizer run keeps assert() checks.
    args=(-DMS_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O2 -g")
  else
    args=(-DMS_SANITIZE=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo)
  fi
  say "building $dir"
  if configure_and_build "$dir" "${args[@]}"; then
    status[$dir]=built
    say "built $dir in $(secs "$t")"
  else
    status[$dir]=FAIL
    summary[$dir]="build failed"
    say "BUILD FAILED: $dir"
  fi
done

# --- 4. Services, if any selected test needs them.
label_args=()
[ -z "$labels" ] || label_args=(-L "$labels")
needs_services() {
  local dir
  for dir in "${trees[@]}"; do
    [ "${status[$dir]}" = built ] || continue
    ctest --test-dir "$dir" -N "${label_args[@]}" --show-only=json-v1 2>/dev/null |
      python3 -c '
import json, sys
tests = json.load(sys.stdin).get("tests", [])
labels = {l for t in tests for p in t.get("properties", []) if p.get("name") == "LABELS" for l in p.get("value", [])}
sys.exit(0 if labels & {"integration", "e2e"} else 1)' && return 0
  done
  return 1
}
if needs_services; then
  if [ -n "${MS_KAFKA_BOOTSTRAP:-}" ] && [ -n "${MS_PG_DSN:-}" ]; then
    say "using the services in the environment: $MS_KAFKA_BOOTSTRAP, $MS_PG_DSN"
  else
    t=$(date +%s)
    run_dir=$(mktemp -d /tmp/membersync-test.XXXXXX)
    own_services=1
    # The watchdog stops the services even if this script is SIGKILLed.
    MS_SERVICES_OWNER_PID=$$ step bash "$services_sh" start "$run_dir" >/dev/null
    set -a
    # shellcheck disable=SC1091
    . "$run_dir/env"
    set +a
    say "services up in $(secs "$t"): kafka $MS_KAFKA_BOOTSTRAP, postgres $MS_PG_DSN"
  fi
else
  say "no selected test needs Kafka or PostgreSQL; not starting them"
fi
[ -z "${MEMBERSYNC_E2E_DATASET:-}" ] || { export MEMBERSYNC_E2E_DATASET; say "MEMBERSYNC_E2E_DATASET=$MEMBERSYNC_E2E_DATASET"; }

# --- 5. ctest in both trees, one after the other (they share the services).
supp="$repo/tests/harness/lsan.supp"
for dir in "${trees[@]}"; do
  [ "${status[$dir]}" = built ] || continue
  t=$(date +%s)
  log="$dir/Testing/test-sh.log"
  mkdir -p "$dir/Testing"
  say "testing $dir${labels:+ (labels: $labels)}"
  envs=()
  if [ "$dir" = "$asan_dir" ]; then
    lsan="detect_leaks=$detect_leaks"
    envs=(MS_ASAN=1
      "ASAN_OPTIONS=$lsan:halt_on_error=1:check_initialization_order=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
      "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}")
    [ ! -f "$supp" ] || envs+=("LSAN_OPTIONS=suppressions=$supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}")
  fi
  rc=0
  step env "${envs[@]}" ctest --test-dir "$dir" --output-on-failure --no-tests=error -j2 \
    --timeout "${MS_TEST_TIMEOUT:-600}" -O "$log" "${label_args[@]}" || rc=$?
  line=$(grep -E 'tests passed, [0-9]+ tests? failed out of' "$log" | tail -1 || true)
  [ -n "$line" ] || line=$(grep -E '^No tests were found' "$log" | tail -1 || true)
  if [ $rc -eq 0 ]; then status[$dir]=PASS; else status[$dir]=FAIL; fi
  summary[$dir]="${line:-ctest exited with $rc} ($(secs "$t"))"
done

# --- 6. Summary (services stopped first, so the summary is the last output).
if [ "$own_services" = 1 ]; then
  bash "$services_sh" stop "$run_dir" || true
  own_services=0
fi
rc=0
echo
for dir in "${trees[@]}"; do
  [ "${status[$dir]}" = PASS ] || rc=1
  say "$(basename "$dir"): ${status[$dir]}: ${summary[$dir]:-}"
done
say "total $(secs "$t_start")"
exit $rc

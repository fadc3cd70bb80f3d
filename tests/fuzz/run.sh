#!/usr/bin/env bash
# Builds the libFuzzer targets of issue 4 (point 7) with clang and runs each.
#
#   tests/fuzz/run.sh [RUNS|SECONDSs]     default 20000 (runs per target)
#
#   tests/fuzz/run.sh 20000     short run: 20 000 executions per target (the
#                               CTest test `fuzz_short`, label fuzz)
#   tests/fuzz/run.sh 1000000   the long run: >= 1M executions per target
#   tests/fuzz/run.sh 600s      time-boxed: 600 seconds per target
#
# Targets (tests/fuzz/*.c), built with -fsanitize=fuzzer,address,undefined
# from the project sources they exercise, compiled directly:
#   fuzz_avro              ms_avro_decode, both framings (+ encode round trip)
#   fuzz_canon_cornerstone ms_canon_record on json_loads of the input
#   fuzz_canon_consio      the same with the Consio mapping
#   fuzz_conf              ms_conf_load on a temporary file
# Seed corpora: valid events of every schema (written by fuzz_avro itself),
# the sample member exports split into records, config/membersync.conf.
# Corpora grow under $MS_FUZZ_DIR/corpus/TARGET and are reused; a crash
# leaves its input in $MS_FUZZ_DIR/artifacts and fails the script.
#
# Environment: MS_FUZZ_DIR (build and corpus dir, default build-fuzz),
# MS_FUZZ_CC (default clang), MS_FUZZ_JOBS (parallel fuzzing processes per
# target, default 1).  Prints one summary line per target:
#   fuzz: TARGET: N executions in S s, corpus C inputs, OK
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=${MS_FUZZ_DIR:-$repo/build-fuzz}
cc=${MS_FUZZ_CC:-clang}
budget=${1:-20000}
jobs=${MS_FUZZ_JOBS:-1}

command -v "$cc" >/dev/null || { echo "fuzz: $cc not found (scripts/setup.sh installs clang)" >&2; exit 2; }
case $budget in
  *s) limit=(-max_total_time="${budget%s}") ;;
  *[!0-9]*|'') echo "usage: tests/fuzz/run.sh [RUNS|SECONDSs]" >&2; exit 2 ;;
  *) limit=(-runs="$budget") ;;
esac
mkdir -p "$out/artifacts"

# --- build -----------------------------------------------------------------
cmake -DSRC_DIR="$repo/schemas/avro" -DEXT=avsc -DTABLE=ms_schema_srcs \
  -DOUT_FILE="$out/ms_schemas_gen.c" -P "$repo/cmake/embed.cmake"
cflags=(-std=c11 -g -O1 -Wall -Wextra -Werror -D_GNU_SOURCE -fno-omit-frame-pointer
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
  -I"$repo/common" -I"$repo/connectors")
read -r -a deps <<<"$(pkg-config --cflags --libs jansson avro-c libcurl libconfig libutf8proc uuid)"
common=("$repo/common/ms_util.c" "$repo/common/ms_log.c")
canon=("$repo/connectors/ms_canon.c" "$repo/connectors/cornerstone_map.c"
  "$repo/connectors/consio_map.c")
build() { # NAME SOURCES... (after --: extra flags)
  local name=$1; shift
  echo "fuzz: building $name" >&2
  "$cc" "${cflags[@]}" "$@" "${deps[@]}" -lpthread -lm -o "$out/$name"
}
build fuzz_avro "$repo/tests/fuzz/fuzz_avro.c" "$repo/common/ms_avro.c" "$out/ms_schemas_gen.c" "${common[@]}"
build fuzz_canon_cornerstone -DFUZZ_SYSTEM=MS_SYSTEM_CORNERSTONE "$repo/tests/fuzz/fuzz_canon.c" "${canon[@]}" "${common[@]}"
build fuzz_canon_consio -DFUZZ_SYSTEM=MS_SYSTEM_CONSIO "$repo/tests/fuzz/fuzz_canon.c" "${canon[@]}" "${common[@]}"
build fuzz_conf "$repo/tests/fuzz/fuzz_conf.c" "$repo/common/ms_conf.c" "${common[@]}"

# --- seed corpora ------------------------------------------------------------
seed_records() { # SYSTEM DIR: one file per record of the sample exports, and whole pages
  python3 - "$repo/tests/data/sample/$1" "$2" <<'PY'
import json, os, sys
src, dst = sys.argv[1], sys.argv[2]
for f in sorted(os.listdir(src)):
    if not f.startswith("members-"):
        continue
    recs = json.load(open(os.path.join(src, f)))
    for i, r in enumerate(recs[:200]):
        open(os.path.join(dst, "%s-%d.json" % (f[:-5], i)), "w").write(json.dumps(r, ensure_ascii=False))
    open(os.path.join(dst, "%s-page.json" % f[:-5]), "w").write(json.dumps(recs[:20]))
PY
}
for t in fuzz_avro fuzz_canon_cornerstone fuzz_canon_consio fuzz_conf; do
  mkdir -p "$out/corpus/$t"
done
[ -n "$(ls -A "$out/corpus/fuzz_canon_cornerstone")" ] || seed_records cornerstone "$out/corpus/fuzz_canon_cornerstone"
[ -n "$(ls -A "$out/corpus/fuzz_canon_consio")" ] || seed_records consio "$out/corpus/fuzz_canon_consio"
[ -n "$(ls -A "$out/corpus/fuzz_conf")" ] || cp "$repo/config/membersync.conf" "$out/corpus/fuzz_conf/membersync.conf"

# --- run -------------------------------------------------------------------
rc=0
for t in fuzz_avro fuzz_canon_cornerstone fuzz_canon_consio fuzz_conf; do
  log="$out/$t.log"
  env=()
  [ "$t" != fuzz_avro ] || env=(MS_FUZZ_SEED_DIR="$out/corpus/$t")
  t0=$(date +%s.%N)
  extra=()
  [ "$jobs" -le 1 ] || extra=(-fork="$jobs")
  # libconfig leaks on most syntax errors (lsan.supp): a per-input leak
  # check would then run a full LeakSanitizer scan for nearly every input
  # (300 executions/s instead of thousands).  LeakSanitizer still checks
  # the whole run at exit, with the suppression, so a leak of ms_conf's own
  # is still found.
  [ "$t" != fuzz_conf ] || extra+=(-detect_leaks=0)
  if env "${env[@]}" ASAN_OPTIONS=detect_leaks=1:halt_on_error=1 \
      LSAN_OPTIONS=suppressions="$repo/tests/fuzz/lsan.supp" \
      UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      "$out/$t" "${limit[@]}" "${extra[@]}" -max_len=65536 -timeout=20 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="$out/artifacts/$t-" "$out/corpus/$t" \
      >"$log" 2>&1; then
    status=OK
  else
    status="FAILED (see $log)"
    rc=1
    tail -n 40 "$log" >&2
  fi
  t1=$(date +%s.%N)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  [ -n "$execs" ] || execs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -1)
  echo "fuzz: $t: ${execs:-?} executions in $(python3 -c "print('%.0f' % ($t1 - $t0))") s, corpus $(ls "$out/corpus/$t" | wc -l) inputs, $status"
done
exit $rc

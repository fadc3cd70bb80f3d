#!/usr/bin/env bash
# Installs what the Kafka-ecosystem interoperability tests (tests/interop)
# need, into a cache folder so nothing touches the system Python:
#   <cache>/venv-interop         a Python venv with Confluent's Python client
#                                (confluent-kafka with its Avro and schema
#                                registry extras) and fastavro, pinned in
#                                tests/interop/requirements.txt
#   <cache>/apicurio-registry    Apicurio Registry, a real schema registry with
#                                a Confluent-compatible REST API, from its
#                                distribution archive on Maven Central
#                                (io.apicurio:apicurio-registry-app, classifier
#                                all); it runs on the JRE the Kafka broker uses
# <cache> is $MEMBERSYNC_CACHE, default ~/.cache/membersync.  The Python used
# for the venv is $MS_PYTHON, default python3 (3.8 or newer).
#
# Idempotent and fast when done: each part carries a stamp of what produced
# it and is only rebuilt when that changes (or the part is broken).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${MEMBERSYNC_CACHE:-$HOME/.cache/membersync}
py=${MS_PYTHON:-python3}
# Pinned so that the registry never changes behaviour under us; bump
# deliberately (the tests read the version from the folder's stamp).
apicurio_version=3.0.9
mkdir -p "$cache"

# --- the Python venv -------------------------------------------------------
venv="$cache/venv-interop"
reqs="$here/tests/interop/requirements.txt"
want=$( { sha256sum "$reqs" | cut -d' ' -f1; "$py" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1)
if [ "$(cat "$venv/.membersync-stamp" 2>/dev/null)" != "$want" ] ||
   ! "$venv/bin/python" -c 'import confluent_kafka, fastavro' 2>/dev/null; then
  echo "setup-python: installing tests/interop/requirements.txt into $venv"
  rm -rf "$venv"
  "$py" -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$reqs"
  "$venv/bin/python" -c 'import confluent_kafka, fastavro
from confluent_kafka.schema_registry.avro import AvroSerializer'
  echo "$want" > "$venv/.membersync-stamp"
fi

# --- Apicurio Registry -----------------------------------------------------
reg="$cache/apicurio-registry"
if [ "$(cat "$reg/.version" 2>/dev/null)" != "$apicurio_version" ] ||
   [ ! -f "$reg/apicurio-registry-app-$apicurio_version-runner.jar" ]; then
  command -v mvn >/dev/null || { echo "setup-python: mvn is required (scripts/setup.sh installs it)" >&2; exit 1; }
  command -v java >/dev/null || { echo "setup-python: java is required (scripts/setup.sh installs it)" >&2; exit 1; }
  echo "setup-python: fetching Apicurio Registry $apicurio_version from Maven Central into $reg"
  tmp=$(mktemp -d "$cache/.apicurio.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  # mvn -q still prints colour codes: keep its output for a failure only.
  mvn -q -B dependency:copy \
    -Dartifact="io.apicurio:apicurio-registry-app:$apicurio_version:tar.gz:all" \
    -DoutputDirectory="$tmp" >"$tmp/mvn.log" 2>&1 || { cat "$tmp/mvn.log" >&2; exit 1; }
  mkdir -p "$tmp/unpacked"
  tar -xzf "$tmp/apicurio-registry-app-$apicurio_version-all.tar.gz" -C "$tmp/unpacked"
  [ -f "$tmp/unpacked/apicurio-registry-app-$apicurio_version-runner.jar" ] || {
    echo "setup-python: the Apicurio archive has no runner jar" >&2; exit 1; }
  echo "$apicurio_version" > "$tmp/unpacked/.version"
  rm -rf "$reg"
  mv "$tmp/unpacked" "$reg"
  rm -rf "$tmp"
  trap - EXIT
fi
echo "setup-python: ok (venv $venv, Apicurio Registry $apicurio_version in $reg)"

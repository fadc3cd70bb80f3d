#!/usr/bin/env bash
# Installs everything membersync needs to build and test on Debian 12.
# Idempotent: a second run only checks what is already there and returns fast.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${MEMBERSYNC_CACHE:-$HOME/.cache/membersync}
mkdir -p "$cache"

apt_pkgs=(build-essential cmake ninja-build pkg-config
  librdkafka-dev libavro-dev libcurl4-openssl-dev libpq-dev libconfig-dev
  libjansson-dev libmicrohttpd-dev libjwt-dev libutf8proc-dev uuid-dev
  libcmocka-dev postgresql openjdk-17-jdk-headless maven clang-format clang libclang-rt-14-dev
  curl ca-certificates procps)

missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The Apache Kafka broker is not packaged by Debian: resolve it from Maven
# Central into a cache folder once; the marker records which pom produced it.
kafka_libs="$cache/kafka/libs"
stamp="$cache/kafka/pom.sha"
want=$(sha256sum "$here/tools/kafka/pom.xml" | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: resolving the Kafka broker from Maven Central into $kafka_libs"
  rm -rf "$kafka_libs"; mkdir -p "$kafka_libs"
  mvn -q -f "$here/tools/kafka/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$kafka_libs" -DincludeScope=runtime
  echo "$want" > "$stamp"
fi

# Tools for the browser, deploy and interoperability tests, each idempotent
# and quick once cached.
for extra in setup-browser.sh setup-helm.sh setup-python.sh; do
  if [ -f "$here/scripts/$extra" ]; then
    bash "$here/scripts/$extra"
  fi
done
echo "setup: ok (kafka libs in $kafka_libs)"

#!/usr/bin/env bash
# Installs the tools the deploy checks (tests/deploy) need, into a cache folder
# so nothing touches the system Python or /usr/local:
#   <cache>/bin/helm    built from source with `go install` (helm is packaged
#                       neither by Debian nor by npm; the Go module proxy
#                       serves its module)
#   <cache>/venv        a Python venv with kubernetes-validate, which bundles
#                       the Kubernetes OpenAPI schemas for offline validation
# <cache> is $MEMBERSYNC_CACHE, default ~/.cache/membersync.
#
# Idempotent and fast when cached: each tool is checked against the pinned
# version and only rebuilt or reinstalled when it differs.
set -euo pipefail

cache=${MEMBERSYNC_CACHE:-$HOME/.cache/membersync}
# Pinned so that a chart check never changes behaviour under us; bump both
# deliberately.  helm v4 is the current major line; the chart is apiVersion v2,
# which helm v3 reads too.
helm_module=helm.sh/helm/v4
helm_version=v4.3.2
kv_version=1.37.0

mkdir -p "$cache/bin"

have_helm=
if [ -x "$cache/bin/helm" ]; then
  have_helm=$("$cache/bin/helm" version --template '{{.Version}}' 2>/dev/null || true)
fi
if [ "$have_helm" != "$helm_version" ]; then
  command -v go >/dev/null || { echo "setup-helm: go is required to build helm" >&2; exit 1; }
  echo "setup-helm: building helm $helm_version with go install (a few minutes, once)"
  # -trimpath and a version-stamped ldflag keep `helm version` meaningful.
  GOBIN="$cache/bin" GOFLAGS=-buildvcs=false go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$helm_version" \
    "$helm_module/cmd/helm@$helm_version"
  have_helm=$("$cache/bin/helm" version --template '{{.Version}}' 2>/dev/null || true)
  if [ "$have_helm" != "$helm_version" ]; then
    echo "setup-helm: built helm reports version '$have_helm', want $helm_version" >&2
    exit 1
  fi
fi

venv="$cache/venv"
stamp="$venv/.kubernetes-validate-$kv_version"
if [ ! -f "$stamp" ] || [ ! -x "$venv/bin/kubernetes-validate" ]; then
  echo "setup-helm: installing kubernetes-validate $kv_version into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "kubernetes-validate==$kv_version"
  touch "$stamp"
fi
echo "setup-helm: ok (helm $have_helm in $cache/bin, kubernetes-validate $kv_version in $venv)"

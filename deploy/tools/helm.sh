#!/usr/bin/env bash
# Print the path of a pinned helm, building it once from the Go module proxy into .local/bin
# (as the broker's jars come from Maven). Exit 1 with a reason on stderr when it cannot be had.
#   deploy/tools/helm.sh           build if missing, print the path
#   deploy/tools/helm.sh --check   print the path only if already built
set -euo pipefail
HELM_MODULE=helm.sh/helm/v4
HELM_VERSION=v4.3.2
root="$(cd "$(dirname "$0")/../.." && pwd)"
bin="$root/.local/bin"
helm="$bin/helm"
stamp="$bin/.helm-$HELM_VERSION"

if [[ -x "$helm" && -f "$stamp" ]]; then
    echo "$helm"
    exit 0
fi
if [[ "${1:-}" == "--check" ]]; then
    echo "helm $HELM_VERSION is not built yet (run deploy/tools/helm.sh)" >&2
    exit 1
fi
if ! command -v go >/dev/null; then
    echo "helm cannot be built: no go command on PATH" >&2
    exit 1
fi
mkdir -p "$bin"
log="$root/.local/helm-build.log"
echo "building helm $HELM_VERSION from the Go module proxy (once; log: $log)" >&2
# Compiling helm takes minutes of CPU: at the lowest priority, beside other work.
if ! GOBIN="$bin" GOFLAGS=-mod=mod nice -n 19 go install "$HELM_MODULE/cmd/helm@$HELM_VERSION" \
        >"$log" 2>&1; then
    echo "helm $HELM_VERSION could not be built from the Go module proxy (see $log)" >&2
    exit 1
fi
touch "$stamp"
echo "$helm"

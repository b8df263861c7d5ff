#!/usr/bin/env bash
# `make bench`: start the local stack if needed, run the side-by-side benchmark, and stop the
# stack again only if this script started it. Extra arguments go to bench/pipeline.py.
set -uo pipefail
cd "$(dirname "$0")/.."
BOXSYNC=.venv/bin/boxsync
started=0
if ! $BOXSYNC stack status --check >/dev/null 2>&1; then started=1; fi
stop_stack() { if [ "$started" = 1 ]; then $BOXSYNC stack down; fi; }
trap stop_stack EXIT
$BOXSYNC stack up >/dev/null || exit 1
.venv/bin/python -m bench.pipeline "$@" || exit 1
echo
.venv/bin/python -m bench.gateway

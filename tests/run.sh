#!/usr/bin/env bash
# `make test`: lint and type-check, start the local stack if it is not running, run every
# test tier, and stop the stack again only if this script started it.
set -uo pipefail
cd "$(dirname "$0")/.."
BOXSYNC=.venv/bin/boxsync

echo "== lint: ruff, mypy"
.venv/bin/ruff check . || exit 1
.venv/bin/mypy || exit 1

started=0
if ! $BOXSYNC stack status --check >/dev/null 2>&1; then started=1; fi
stop_stack() { if [ "$started" = 1 ]; then echo "== stopping the stack this run started"; $BOXSYNC stack down; fi; }
trap stop_stack EXIT

echo "== stack"
$BOXSYNC stack up || exit 1

echo "== tests: unit, integration, e2e"
.venv/bin/python -m pytest -q -p no:cacheprovider --durations=8 "$@"

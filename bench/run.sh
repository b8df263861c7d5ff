#!/usr/bin/env bash
# `make bench`: start the local stack if needed, run the benchmark parts one after the other,
# print a summary table of this run, and stop the stack again only if this script started it.
# Extra arguments go to bench/pipeline.py. A part that fails does not stop the others; the
# script then exits 1 (a target not met is a FAIL in the table, not an error).
set -uo pipefail
cd "$(dirname "$0")/.."
BOXSYNC=.venv/bin/boxsync
PY=.venv/bin/python
started=0
if ! $BOXSYNC stack status --check >/dev/null 2>&1; then started=1; fi
stop_stack() { if [ "$started" = 1 ]; then $BOXSYNC stack down; fi; }
trap stop_stack EXIT
$BOXSYNC stack up >/dev/null || exit 1
rm -rf .local/bench-results  # the summary shows this run only
failed=0
section() { printf '\n=== %s ===\n' "$1"; }

section "1/5 pipeline: jira.events → task.updates against a bare loop, filters off and on (issues 2, 3, 4)"
$PY -m bench.pipeline "$@" || failed=1
section "2/5 webhook gateway under load (issue 3)"
$PY -m bench.gateway || failed=1
section "3/5 full sync of a 100,000-task box from a local Jira (issue 5)"
$PY -m bench.full_sync || failed=1
section "4/5 the collapse against its Kafka Streams peer, EOS v2 and at-least-once (issue 17)"
$PY -m bench.peer || failed=1  # builds bench/streams with mvn -q package first
section "5/5 full sync of 100,000 tasks from a local Jira that enforces a points quota and a burst limit (issue 18)"
$PY -m bench.limits || failed=1
section "summary of this run"
$PY -m bench.results
exit $failed

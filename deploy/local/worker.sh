#!/usr/bin/env bash
# Start (`start`) or stop (`stop`) a `boxsync worker` in the background for `make run`.
# The pid and log live under .local/; `start` returns once /readyz answers 200.
set -euo pipefail
cd "$(dirname "$0")/../.."
BOXSYNC=.venv/bin/boxsync
PID_FILE=.local/worker.pid
LOG_FILE=.local/worker.log
PORT="${BOXSYNC_WEB_PORT:-6066}"

running() { [ -f "$PID_FILE" ] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; }

case "${1:-}" in
  start)
    if running; then echo "worker: already running (pid $(cat "$PID_FILE"))"; exit 0; fi
    mkdir -p .local
    nohup "$BOXSYNC" worker >>"$LOG_FILE" 2>&1 </dev/null &
    echo $! >"$PID_FILE"
    for _ in $(seq 1 120); do
      if ! running; then
        echo "worker: exited during start; last lines of $LOG_FILE:" >&2
        tail -n 5 "$LOG_FILE" >&2; exit 1
      fi
      if .venv/bin/python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$PORT/readyz', timeout=2)" 2>/dev/null; then
        echo "worker: ready (pid $(cat "$PID_FILE"), http://127.0.0.1:$PORT, log $LOG_FILE)"
        exit 0
      fi
      sleep 0.5
    done
    echo "worker: not ready after 60 s; see $LOG_FILE" >&2; exit 1 ;;
  stop)
    if running; then
      pid=$(cat "$PID_FILE"); kill -TERM "$pid"
      for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
      echo "worker: stopped (pid $pid)"
    else
      echo "worker: not running"
    fi
    rm -f "$PID_FILE" ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac

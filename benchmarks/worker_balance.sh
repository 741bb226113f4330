#!/usr/bin/env bash
# Issue 26: how the load spreads over gunicorn's worker processes. Starts `triage serve` (private
# XDG_DATA_HOME / XDG_RUNTIME_DIR in a temporary folder, removed at the end) with an access log of
# one line per request carrying the worker's pid, drives it with wrk at 16 and 32 connections and
# prints, per worker pid, the requests it served and the CPU seconds it used, beside wrk's figures.
#   benchmarks/worker_balance.sh [SECONDS] [WORKERS] [THREADS]
# Extra gunicorn settings through GUNICORN_CMD_ARGS (e.g. GUNICORN_CMD_ARGS=--reuse-port); the
# access log costs a little throughput, so take requests/s from http_compare.sh, not from here.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}; workers=${2:-2}; threads=${3:-2}
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install -y wrk" >&2; exit 2; }
tmp=$(mktemp -d "${TMPDIR:-/var/tmp}/mscc-worker-balance.XXXXXX")
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  [ -n "${KEEP_TMP:-}" ] && echo "kept $tmp" || rm -rf "$tmp"
}
trap cleanup EXIT
mkdir -m 700 "$tmp/data" "$tmp/run"
grep -v "age_years" benchmarks/wrk_triage.lua >"$tmp/cases.lua"   # valid cases only
port=$(.venv/bin/python -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
XDG_DATA_HOME="$tmp/data" XDG_RUNTIME_DIR="$tmp/run" \
  GUNICORN_CMD_ARGS="${GUNICORN_CMD_ARGS:-} --access-logfile $tmp/access.log --access-logformat %(p)s" \
  .venv/bin/triage serve --port "$port" --workers "$workers" --threads "$threads" 2>"$tmp/server.log" &
pid=$!
for _ in $(seq 150); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
workers_pids() { pgrep -P "$pid" | sort -n; }
cpu() { awk '{ printf "%.2f", ($14 + $15) / 100 }' "/proc/$1/stat"; }   # utime + stime, clock ticks of 1/100 s
echo "triage serve: $workers workers x $threads threads ${GUNICORN_CMD_ARGS:+(GUNICORN_CMD_ARGS=$GUNICORN_CMD_ARGS)}; wrk -t2, ${secs}s"
for c in 16 32; do
  : >"$tmp/access.log"
  declare -A before=()
  for w in $(workers_pids); do before[$w]=$(cpu "$w"); done
  wrk -t2 -c"$c" -d"${secs}s" --latency -s "$tmp/cases.lua" "http://127.0.0.1:$port/v1/triage" >"$tmp/wrk.out" &
  wrk_pid=$!
  sleep $((secs / 2))   # half-way: the established connections each worker holds
  ss -tnpH state established "( sport = :$port )" >"$tmp/conns" || true
  wait "$wrk_pid"; out=$(cat "$tmp/wrk.out")
  sleep 0.5
  echo "== $c connections: $(grep -E 'Requests/sec' <<<"$out" | tr -s ' ')  p99$(grep -E '^ +99%' <<<"$out" | awk '{print " "$2}')  $(grep -E 'Non-2xx|Socket errors' <<<"$out" | tr -s ' ' | tr '\n' ' ')"
  for w in $(workers_pids); do
    n=$(grep -cx "<$w>" "$tmp/access.log" || true)
    awk -v w="$w" -v n="$n" -v a="${before[$w]:-0}" -v b="$(cpu "$w")" \
      -v k="$(grep -c "pid=$w," "$tmp/conns" || true)" \
      'BEGIN { printf "   worker %s: %6d requests, %5.2f CPU s, %3d connections half-way\n", w, n, b - a, k }'
  done
done

#!/usr/bin/env bash
# HTTP benchmark: starts the real server (gunicorn, as `triage serve`), drives it with wrk on
# loopback (16 connections, 2 threads) and prints requests/s and latency percentiles for
# POST /v1/triage and for the CDS Hooks call. Load generator and server share this machine.
#   benchmarks/http_bench.sh [SECONDS] [WORKERS] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}; workers=${2:-2}; threads=${3:-8}
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install -y wrk" >&2; exit 2; }
port=$(.venv/bin/python -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
# A private record and CDS store in a temporary folder on disk, removed at the end (never the user's).
# CDS Hooks calls without a JWT (--allow-unauthenticated-cds): without it every call is a 401 and the
# benchmark would measure the refusal, not the service.
tmp=$(mktemp -d "${TMPDIR:-/var/tmp}/mscc-http-bench.XXXXXX")
mkdir -m 700 "$tmp/data" "$tmp/run"
XDG_DATA_HOME="$tmp/data" XDG_RUNTIME_DIR="$tmp/run" \
  .venv/bin/triage serve --port "$port" --workers "$workers" --threads "$threads" --allow-unauthenticated-cds 2>/dev/null &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
echo "server: gunicorn, $workers workers x $threads threads; wrk: 2 threads, 16 connections, ${secs}s"
for target in "v1/triage wrk_triage.lua" "cds-services/mscc-triage wrk_cds.lua"; do
  set -- $target
  echo "== POST /$1"
  wrk -t2 -c16 -d"${secs}s" --latency -s "benchmarks/$2" "http://127.0.0.1:$port/$1" \
    | grep -E "Requests/sec|^ +(50|90|99)%|requests in|Non-2xx|errors"
done

#!/usr/bin/env bash
# HTTP comparison for issue 26: POST /v1/triage of `triage serve` (record on disk) against the minimal
# Flask + gunicorn + durable-rules app (benchmarks/minimal_app.py), same workers x threads, same bodies,
# in one run; and the same `triage serve` with its record on tmpfs (/dev/shm), for what recording on
# disk costs. Each server is started in turn, warmed up, then driven by wrk at 16 and 32 connections;
# prints requests/s, p50/p90/p99 (ms), non-2xx and the server's CPU ms a request for each, and the ratios
# ours/minimal (throughput, and CPU a request).
#   benchmarks/http_compare.sh [SECONDS] [WORKERS] [THREADS]
# Our server gets a private XDG_DATA_HOME / XDG_RUNTIME_DIR (so its decision record) in a temporary
# folder on disk ($TMPDIR, default /var/tmp), removed at the end. Load generator and servers share
# this machine: on 2 cores wrk takes part of the CPU from the server it drives.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-12}; workers=${2:-2}; threads=${3:-8}
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install -y wrk" >&2; exit 2; }
tmp=$(mktemp -d "${TMPDIR:-/var/tmp}/mscc-http-compare.XXXXXX")
shm=$(mktemp -d /dev/shm/mscc-http-compare.XXXXXX)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$tmp" "$shm"
}
trap cleanup EXIT
mkdir -m 700 "$tmp/data" "$tmp/run" "$shm/data" "$shm/run"

# The valid cases of wrk_triage.lua (every urgency; the invalid one, age 130, left out: the issue asks for no non-2xx).
grep -v '"age_years": 130' benchmarks/wrk_triage.lua >"$tmp/cases.lua"

free_port() { .venv/bin/python -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])"; }
wait_up() {
  for _ in $(seq 150); do curl -sf "http://127.0.0.1:$1/healthz" >/dev/null && return 0; sleep 0.1; done
  echo "server on port $1 did not start" >&2; exit 1
}
stop() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=; }

# CPU time (ticks: utime + stime) of the server: its process and every descendant (master, workers).
tree() { local p; echo "$1"; for p in $(pgrep -P "$1"); do tree "$p"; done; }
cpu_ticks() { local s=0 p; for p in $(tree "$1"); do s=$((s + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done; echo "$s"; }

# wrk's summary -> "rps p50 p90 p99 non2xx errors cpu_ms_per_request" (latencies in ms). The server's CPU
# per request is steadier than its throughput on a shared machine (wrk and other loads take cores, not
# the work a request needs).
measure() {  # port connections seconds
  local before after
  before=$(cpu_ticks "$pid")
  wrk -t2 -c"$2" -d"${3}s" --latency -s "$tmp/cases.lua" "http://127.0.0.1:$1/v1/triage" >"$tmp/wrk.out"
  after=$(cpu_ticks "$pid")
  awk -v ticks=$((after - before)) -v hz="$(getconf CLK_TCK)" '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /m$/) return v * 60000; return v * 1000 }
    /requests in/ { n = $1 }
    /Requests\/sec/ { rps = $2 }
    /^ +50%/ { p50 = ms($2) } /^ +90%/ { p90 = ms($2) } /^ +99%/ { p99 = ms($2) }
    /Non-2xx/ { non2xx = $NF }
    /Socket errors/ { errs = $0; sub(/.*errors: /, "", errs); gsub(/ /, "", errs) }
    END { printf "%s %.1f %.1f %.1f %d %s %.2f\n", rps, p50, p90, p99, non2xx + 0, (errs == "" ? "none" : errs),
                 (n > 0 ? 1000 * ticks / hz / n : 0) }' "$tmp/wrk.out"
}

declare -A result
run_server() {  # name port
  wait_up "$2"
  wrk -t2 -c16 -d2s -s "$tmp/cases.lua" "http://127.0.0.1:$2/v1/triage" >/dev/null   # warm-up
  for c in 16 32; do result[$1,$c]=$(measure "$2" "$c" "$secs"); done
  stop
}

port=$(free_port)
XDG_DATA_HOME="$tmp/data" XDG_RUNTIME_DIR="$tmp/run" \
  .venv/bin/triage serve --port "$port" --workers "$workers" --threads "$threads" 2>"$tmp/ours.log" &
pid=$!
run_server ours "$port"
records=$(find "$tmp/data" -name '*.sqlite3' -printf '%s bytes  %p\n' | sed "s|$tmp|\$tmp|")

port=$(free_port)
XDG_DATA_HOME="$shm/data" XDG_RUNTIME_DIR="$shm/run" \
  .venv/bin/triage serve --port "$port" --workers "$workers" --threads "$threads" 2>"$tmp/tmpfs.log" &
pid=$!
run_server tmpfs "$port"

port=$(free_port)
.venv/bin/gunicorn -k gthread -w "$workers" --threads "$threads" -b "127.0.0.1:$port" --log-level warning \
  --chdir benchmarks 'minimal_app:create_app()' 2>"$tmp/minimal.log" &
pid=$!
run_server minimal "$port"

echo "POST /v1/triage, 5 valid cases in turn; servers: $workers workers x $threads threads; wrk: 2 threads, ${secs}s a point"
echo "ours: triage serve (BufferingWorker), record on $(df -T "$tmp" | awk 'NR==2 {print $2}') ($records)"
echo "tmpfs: the same triage serve, record on $(df -T "$shm" | awk 'NR==2 {print $2}')"
echo "minimal: benchmarks/minimal_app.py, gunicorn gthread; $(nproc) cores, shared with wrk"
printf '%-8s %5s %10s %9s %9s %9s %7s %11s  %s\n' server conns "req/s" "p50 ms" "p90 ms" "p99 ms" non2xx "cpu ms/req" \
  "socket errors"
for c in 16 32; do
  for name in ours tmpfs minimal; do
    read -r rps p50 p90 p99 non2xx errs cpu <<<"${result[$name,$c]}"
    printf '%-8s %5s %10s %9s %9s %9s %7s %11s  %s\n' "$name" "$c" "$rps" "$p50" "$p90" "$p99" "$non2xx" "$cpu" "$errs"
  done
  read -r ours_rps _ _ _ _ _ ours_cpu <<<"${result[ours,$c]}"; read -r min_rps _ _ _ _ _ min_cpu <<<"${result[minimal,$c]}"
  read -r shm_rps _ <<<"${result[tmpfs,$c]}"
  awk -v o="$ours_rps" -v m="$min_rps" -v t="$shm_rps" -v c="$c" -v oc="$ours_cpu" -v mc="$min_cpu" 'BEGIN {
    printf "ratio ours/minimal at %s connections: %.2fx throughput, %.2fx by server CPU a request (minimal/ours); ", c, o / m, mc / oc
    printf "record on disk costs %.0f%% of tmpfs throughput\n", 100 * (1 - o / t) }'
done

#!/usr/bin/env bash
# The "done when" figures of issue 26 (fast on the wire), each from a side-by-side measure, in one run:
#
#   benchmarks/issue26.sh [--impact]
#
# 1. In process: this checkout against e8bd108 (ruleset 2.1) on 3,000 new random valid cases, each
#    evaluated once (benchmarks/compare_bench.py --random 3000 --cold, 3 rounds): the ratio, and this
#    checkout's latency p99.                                                    target: >= 2x, p99 < 2 ms
# 2. HTTP: POST /v1/triage against the minimal Flask + gunicorn + durable-rules app, and the same server
#    with its record on tmpfs (benchmarks/http_compare.sh, 10 s a point): the throughput ratio, p99 at
#    16 and 32 connections, non-2xx, and what recording on disk costs.
#                                     target: >= 0.5x, p99 < 50 ms (16) and < 100 ms (32), 0 non-2xx, <= 20%
# 3. With --impact: `triage impact` over 1,000,000 records that are all distinct cases to a worker
#    (benchmarks/impact_bench.py --distinct 100000 --no-replay; about 10 minutes, 10 GB of disk).
#                                                                            target: < 10 minutes, memory flat
#
# The machine is shared: absolute figures move from hour to hour; the ratios come from one run each.
# About 6 minutes without --impact. Prints each script's own output, then a summary.
set -euo pipefail
cd "$(dirname "$0")/.."
impact=0
for arg in "$@"; do
  case "$arg" in
    --impact) impact=1 ;;
    *) echo "usage: benchmarks/issue26.sh [--impact]" >&2; exit 2 ;;
  esac
done
out=$(mktemp -d "${TMPDIR:-/tmp}/mscc-issue26.XXXXXX")
trap 'rm -rf "$out"' EXIT

echo "== in process (compare_bench.py e8bd108 --random 3000 --cold --rounds 3)"
.venv/bin/python benchmarks/compare_bench.py e8bd108 --random 3000 --cold --rounds 3 | tee "$out/engine.txt"
echo
echo "== HTTP (http_compare.sh 10)"
bash benchmarks/http_compare.sh 10 | tee "$out/http.txt"
if [ "$impact" = 1 ]; then
  echo
  echo "== triage impact, 1,000,000 records (impact_bench.py --distinct 100000 --no-replay)"
  .venv/bin/python benchmarks/impact_bench.py --records 1000000 --distinct 100000 --no-replay | tee "$out/impact.txt"
fi

echo
echo "== summary (issue 26, done when)"
awk '/^ratio this\// { ratio = $3 }
     /^ +this / { match($0, /p99 [0-9.]+ ms/); p99 = substr($0, RSTART + 4, RLENGTH - 7) }
     END { printf "in process, cold, vs e8bd108: %sx (target >= 2x); p99 %s ms (target < 2 ms)\n", ratio, p99 }' \
  "$out/engine.txt"
awk '$1 == "ours" { p99[$2] = $6; non[$2] = $7 }
     /^ratio ours\/minimal/ { c = $4; r[c] = $6; d[c] = $(NF - 3) }
     END { for (c = 16; c <= 32; c += 16)
             printf "HTTP at %d connections: %s throughput of the minimal app (target >= 0.5x); p99 %s ms (target < %d); non-2xx %s; record on disk costs %s of tmpfs (target <= 20%%)\n",
                    c, r[c], p99[c], (c == 16 ? 50 : 100), non[c], d[c] }' "$out/http.txt"
if [ "$impact" = 1 ]; then
  grep -E "^impact " "$out/impact.txt" | sed "s/^/(target: under 600 s, the two halves alike) /"
fi

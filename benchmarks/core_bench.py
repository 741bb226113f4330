"""In-process benchmark of full evaluations (validation, normalisation, rules, unknowns, result).

    .venv/bin/python benchmarks/core_bench.py [--seconds 5] [--vignettes tests/vignettes ...]

Replays the cases of the given vignette folders round-robin (invalid cases are left out: they stop
at validation) on one thread, and prints evaluations per second and latency percentiles. It is a
script that prints figures, not a test: this machine is shared and timings are noisy.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import triage
from triage._vignettes import load_suite


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="measuring time (default 5)")
    parser.add_argument("--vignettes", nargs="+", default=[str(Path(__file__).resolve().parents[1] / "tests" / "vignettes")])
    args = parser.parse_args()

    ruleset = triage.load_ruleset()
    cases = [v.case for _, v in load_suite(args.vignettes) if not v.expect.error]
    if not cases:
        print("no cases found", file=sys.stderr)
        return 2
    for case in cases:  # warm-up: creates the engine's C rulesets, fills caches
        ruleset.evaluate(case)

    latencies: list[float] = []
    by_urgency: dict[str, list[float]] = {}
    start = time.perf_counter()
    deadline = start + args.seconds
    i = 0
    while time.perf_counter() < deadline:
        case = cases[i % len(cases)]
        t0 = time.perf_counter()
        result = ruleset.evaluate(case)
        elapsed = time.perf_counter() - t0
        latencies.append(elapsed)
        by_urgency.setdefault(result.urgency, []).append(elapsed)
        i += 1
    total = time.perf_counter() - start

    def pct(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    print(f"cases: {len(cases)} distinct (valid cases of {', '.join(args.vignettes)})")
    print(f"evaluations: {len(latencies)} in {total:.2f} s on one thread")
    print(f"throughput: {len(latencies) / total:,.0f} evaluations/s")
    print(f"latency ms: p50 {pct(latencies, 0.50):.3f}  p90 {pct(latencies, 0.90):.3f}  "
          f"p99 {pct(latencies, 0.99):.3f}  max {max(latencies) * 1000:.3f}  mean {statistics.mean(latencies) * 1000:.3f}")
    for urgency in ("emergency", "urgent", "routine"):
        values = by_urgency.get(urgency, [])
        if values:
            print(f"  {urgency:<9} n={len(values):<6} p50 {pct(values, 0.5):.3f} ms  p99 {pct(values, 0.99):.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())

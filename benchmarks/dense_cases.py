"""Robustness run: many random valid cases, most findings present, in process.

    .venv/bin/python benchmarks/dense_cases.py [--cases 20000] [--density 0.8] [--seed 1]

Counts failures (any exception, an emergency without actions, an unknown outside the candidate
fields) and prints the urgency mix, the largest numbers of actions and unknowns seen, and the time
taken. It prints figures; the test suite runs a smaller version of the same check.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
import traceback

import triage
from triage._case import unknown_fields
from triage._random_cases import random_valid_cases


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=20000)
    parser.add_argument("--density", type=float, default=0.8, help="share of tri-state findings drawn true")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    ruleset = triage.load_ruleset()
    allowed = set(unknown_fields())
    urgencies: collections.Counter[str] = collections.Counter()
    failures: list[str] = []
    most_actions = most_unknowns = 0
    start = time.perf_counter()
    for case in random_valid_cases(args.seed, args.cases, args.density):
        try:
            result = ruleset.evaluate(case)
        except Exception:  # noqa: BLE001 - the point is to count every kind of failure
            failures.append(f"{json.dumps(case)}\n{traceback.format_exc(limit=3)}")
            continue
        urgencies[result.urgency] += 1
        if result.urgency == "emergency" and not result.actions:
            failures.append(f"emergency without actions: {json.dumps(case)}")
        if not {u.field for u in result.unknowns} <= allowed:
            failures.append(f"unknown outside the candidates: {json.dumps(case)}")
        most_actions = max(most_actions, len(result.actions))
        most_unknowns = max(most_unknowns, len(result.unknowns))
    elapsed = time.perf_counter() - start
    print(f"cases: {args.cases} random valid cases, density {args.density}, seed {args.seed}")
    print(f"failures: {len(failures)}")
    print("urgency: " + ", ".join(f"{k} {v}" for k, v in sorted(urgencies.items())))
    print(f"most actions in one result: {most_actions}; most unknowns: {most_unknowns}")
    print(f"time: {elapsed:.1f} s ({args.cases / elapsed:,.0f} cases/s, generation included)")
    for failure in failures[:5]:
        print(failure, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""Compare the in-process speed of this checkout with another commit's, on the same cases, in one run.

    .venv/bin/python benchmarks/compare_bench.py e8bd108 [--rounds 5] [--seconds 3] [--vignettes DIR ...]
    .venv/bin/python benchmarks/compare_bench.py e8bd108 --random 4000 [--cold]

The other commit is checked out (``git worktree``) into a temporary folder, removed afterwards. Only
the cases that both versions accept are replayed (a case with a field the older format lacks is
left out). Each round runs both versions one after the other, each in its own process, for the same
time; the figures are medians over the rounds and the ratio of the two, so that the noise of a
shared machine mostly cancels. Each version's latency percentiles (p50, p99 of one evaluation) come
from the same rounds. A script that prints figures, not a test.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Run in a child process with sys.path[0] = the source tree to measure.
_CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import triage
cases = json.load(open(sys.argv[2]))
seconds = float(sys.argv[3])
ruleset = triage.load_ruleset()
cold = sys.argv[4] == "cold"
if not cold:
    for case in cases:
        ruleset.evaluate(case)
n, start, took = 0, time.perf_counter(), []
clock = time.perf_counter
while clock() - start < seconds and not (cold and n == len(cases)):
    t0 = clock()
    ruleset.evaluate(cases[n % len(cases)])
    took.append(clock() - t0)
    n += 1
rate = n / (clock() - start)
took.sort()
print(json.dumps({"rate": rate, "version": ruleset.version,
                  "p50": took[len(took) // 2] * 1000, "p99": took[min(len(took) - 1, int(len(took) * 0.99))] * 1000}))
"""

_ACCEPTS = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import triage
cases = json.load(open(sys.argv[2]))
ok = []
for case in cases:
    try:
        triage.evaluate(case)
        ok.append(True)
    except triage.CaseValidationError:
        ok.append(False)
print(json.dumps(ok))
"""


_RANDOM = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from triage._random_cases import random_valid_cases
n = int(sys.argv[2])
cases = list(random_valid_cases(seed=26, n=n // 2, density=0.3)) + list(random_valid_cases(seed=27, n=n - n // 2, density=0.8))
print(json.dumps(cases))
"""


def _run(code: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    return done.stdout.strip().splitlines()[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("commit", help="the commit to compare with (e.g. e8bd108)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--vignettes", nargs="+", default=[str(ROOT / "tests" / "vignettes")])
    parser.add_argument("--random", type=int, metavar="N",
                        help="N seeded random valid cases (half sparse, half dense) instead of the vignettes")
    parser.add_argument("--cold", action="store_true",
                        help="no warm-up pass: each case evaluated once, first-seen costs included "
                             "(what a stream of new patients costs)")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from triage._vignettes import load_suite

    with tempfile.TemporaryDirectory(prefix="mscc-bench-") as tmp:
        other = Path(tmp) / "other"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(other), args.commit],
                       check=True)
        try:
            if args.random:
                # Drawn by the other commit's generator (its case format), so that both accept them:
                # a newer format accepts every older valid case that hits none of its new contradictions.
                cases = json.loads(_run(_RANDOM, str(other), str(args.random)))
                source = f"{args.random} random valid cases (the generator of {args.commit}), half sparse, half dense"
            else:
                cases = [v.case for _, v in load_suite(args.vignettes) if not v.expect.error]
                source = ", ".join(args.vignettes)
            all_cases = Path(tmp) / "all.json"
            all_cases.write_text(json.dumps(cases))
            mine = json.loads(_run(_ACCEPTS, str(ROOT), str(all_cases)))
            theirs = json.loads(_run(_ACCEPTS, str(other), str(all_cases)))
            common = [c for c, a, b in zip(cases, mine, theirs) if a and b]
            case_file = Path(tmp) / "cases.json"
            case_file.write_text(json.dumps(common))
            print(f"cases: {len(common)} accepted by both (of {len(cases)}: {source})"
                  + ("; cold: each evaluated once, no warm-up" if args.cold else ""))
            rates: dict[str, list[float]] = {"this": [], args.commit: []}
            p50s: dict[str, list[float]] = {"this": [], args.commit: []}
            p99s: dict[str, list[float]] = {"this": [], args.commit: []}
            versions = {}
            for _ in range(args.rounds):
                for name, src in (("this", ROOT), (args.commit, other)):
                    out = json.loads(_run(_CHILD, str(src), str(case_file), str(args.seconds),
                                          "cold" if args.cold else "warm"))
                    rates[name].append(out["rate"])
                    p50s[name].append(out["p50"])
                    p99s[name].append(out["p99"])
                    versions[name] = out["version"]
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(other)], check=False)
    for name, values in rates.items():
        print(f"{name:>10} (ruleset {versions[name]}): median {statistics.median(values):,.0f} evaluations/s "
              f"(rounds: {', '.join(f'{v:,.0f}' for v in values)}); latency p50 {statistics.median(p50s[name]):.2f} ms, "
              f"p99 {statistics.median(p99s[name]):.2f} ms (medians over the rounds; p99 by round: "
              f"{', '.join(f'{v:.2f}' for v in p99s[name])})")
    ratio = statistics.median(rates["this"]) / statistics.median(rates[args.commit])
    per_round = [a / b for a, b in zip(rates["this"], rates[args.commit])]
    print(f"ratio this/{args.commit}: {ratio:.3f} (per round: {', '.join(f'{r:.3f}' for r in per_round)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``triage impact`` and ``triage audit replay`` over a large decision record, as a user runs them.

    .venv/bin/python benchmarks/impact_bench.py [--records 1000000] [--distinct 100] [--density 0.2]
                                                [--jobs N] [--no-replay] [--verify] [--dir DIR]

Builds a SQLite record of N decisions in a temporary folder (``--dir``, default the system's; on disk):
``--distinct`` random valid cases (``triage._random_cases``, tri-states true with probability
``--density``), each evaluated once with the current ruleset, are repeated in turn under fresh request
ids and written through the store's ``append_many`` in batches of 10,000 (one transaction each), so the
hash chain is the store's own (``--verify`` checks it). Then it runs, each as a subprocess (``python -m
triage``): ``triage impact`` against a copy of the ruleset with one rule changed (suspected MSCC:
emergency -> urgent), so that there is something to report (the distinct cases are evaluated under both
rulesets and the number of records ``impact`` reports changed is checked), and ``triage audit replay``.
For each: wall time, records/s, the peak RSS of the whole process tree (parent and workers, summed,
sampled from /proc every 0.2 s) in the first and the second half of the run (flat memory: the two are
alike), and the largest single process of the tree. Progress lines from the commands go to stderr as
they run. The temporary folder is removed at the end. Figures, not a test: on a shared machine timings
are noisy.

How fast the engine goes depends on how many case shapes the record holds: each worker keeps what
fired for the last cases it met (at most 8,192, ``triage._triage.MAX_KEPT_ANSWERS``), so a small pool
(the default, 100) measures a record whose patients look alike, and ``--distinct 100000`` one where a
worker meets a case again only long after it forgot it: every evaluation is a full engine run.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import triage
from triage._random_cases import random_valid_cases
from triage._record import SqliteStore, decision_entry

BATCH = 10_000
MARKER = "      - level: emergency\n        unless: {concept: paraesthesia_only}\n"   # in mscc.suspected


def candidate_rules(folder: Path) -> Path:
    """A copy of the current ruleset with one rule's urgency lowered: suspected MSCC, emergency -> urgent."""
    target = folder / "candidate"
    shutil.copytree(triage.default_ruleset().path, target)
    path = target / "mscc.yaml"
    text = path.read_text(encoding="utf-8")
    if MARKER not in text:
        raise SystemExit(f"the rule to change is not in {path}: update MARKER in {__file__}")
    path.write_text(text.replace(MARKER, MARKER.replace("emergency", "urgent"), 1), encoding="utf-8")
    return target


def _changed(old: Any, new: Any) -> bool:
    return bool(old.urgency != new.urgency or set(old.action_ids()) != set(new.action_ids())
                or set(old.flag_ids()) != set(new.flag_ids()))


def build_record(path: Path, n: int, distinct: int, density: float, candidate: Path, seed: int = 3) -> tuple[float, int]:
    """A record of ``n`` decisions at ``path``; the seconds it took, and how many records ``candidate`` changes."""
    started = time.perf_counter()
    rs, other = triage.default_ruleset(), triage.load_ruleset(candidate)
    cases = list(random_valid_cases(seed, distinct, density))
    results = [rs.evaluate(case) for case in cases]
    changes = [_changed(result, other.evaluate(case)) for case, result in zip(cases, results)]
    pool = [decision_entry("api", case, result) for case, result in zip(cases, results)]
    store = SqliteStore(path)
    try:
        done = 0
        while done < n:
            batch = []
            for i in range(done, min(n, done + BATCH)):
                entry = dict(pool[i % len(pool)])
                entry["id"] = f"{i:032x}"
                batch.append(entry)
            store.append_many(batch)
            done += len(batch)
            if done % 100_000 == 0 or done == n:
                print(f"  record: {done:,}/{n:,} written, {time.perf_counter() - started:.0f} s", file=sys.stderr,
                      flush=True)
    finally:
        store.close()
    return time.perf_counter() - started, sum(changes[i % len(pool)] for i in range(n))


def _tree_rss(root: int) -> tuple[int, int]:
    """Resident bytes of ``root`` and all its descendants (from /proc): in all, and of the largest."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry)
        children.setdefault(int(fields[1]), []).append(pid)   # fields[1]: ppid
        rss[pid] = int(fields[21]) * page                       # fields[21]: rss in pages
    total, largest, todo = 0, 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        largest = max(largest, rss.get(pid, 0))
        todo.extend(children.get(pid, []))
    return total, largest


def timed(command: list[str], out: Path) -> dict[str, Any]:
    """Run ``command`` (stdout to ``out``, stderr shown); wall time, exit code, RSS of its process tree."""
    samples: list[tuple[float, tuple[int, int]]] = []
    started = time.perf_counter()
    with open(out, "w", encoding="utf-8") as stdout:
        proc = subprocess.Popen(command, stdout=stdout)
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.2):
                samples.append((time.perf_counter() - started, _tree_rss(proc.pid)))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            code = proc.wait()
        except BaseException:   # stopped (Ctrl-C, SIGTERM): the command goes too, before its record is removed
            proc.terminate()
            proc.wait()
            raise
        finally:
            stop.set()
        sampler.join()
    wall = time.perf_counter() - started
    half = [rss for t, (rss, _) in samples if t < wall / 2], [rss for t, (rss, _) in samples if t >= wall / 2]
    return {"code": code, "wall": wall, "first_half": max(half[0], default=0), "second_half": max(half[1], default=0),
            "largest": max((one for _, (_, one) in samples), default=0)}


def report(what: str, n: int, run: dict[str, Any]) -> None:
    mb = 1024 * 1024
    print(f"{what:<13} {n:>10,} records  {run['wall']:8.1f} s  {n / run['wall']:7,.0f} records/s  "
          f"tree RSS peak {run['first_half'] / mb:6.0f} MB (first half) {run['second_half'] / mb:6.0f} MB "
          f"(second half)  largest process {run['largest'] / mb:5.0f} MB  exit {run['code']}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--distinct", type=int, default=100, help="distinct random cases, repeated in turn")
    parser.add_argument("--density", type=float, default=0.2, help="probability of a true tri-state finding")
    parser.add_argument("--jobs", type=int, default=None, help="worker processes (default: every core)")
    parser.add_argument("--no-replay", dest="replay", action="store_false", help="time impact only")
    parser.add_argument("--verify", action="store_true", help="check the chain after building it (timed)")
    parser.add_argument("--dir", default=None, help="where the temporary folder goes (default: the system's)")
    args = parser.parse_args()

    # Stopped by SIGTERM (timeout, kill), as by Ctrl-C: the 10 GB record is removed on the way out.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    folder = Path(tempfile.mkdtemp(prefix="mscc-impact-bench-", dir=args.dir))
    try:
        db = folder / "records.sqlite3"
        jobs = ["--jobs", str(args.jobs)] if args.jobs else []
        print(f"{args.records:,} records ({args.distinct:,} distinct random valid cases, density {args.density}), "
              f"{os.cpu_count()} cores, jobs {args.jobs or 'every core'}, folder {folder}", flush=True)
        candidate = candidate_rules(folder)
        built, expected = build_record(db, args.records, args.distinct, args.density, candidate)
        print(f"record built in {built:.0f} s ({db.stat().st_size / 1e9:.1f} GB); the candidate changes "
              f"{expected:,} of its records", flush=True)
        if args.verify:
            started = time.perf_counter()
            with SqliteStore(db) as store:
                check = store.verify()
            print(f"verify: {'ok' if check.ok else check.broken}, {check.count:,} records, "
                  f"{time.perf_counter() - started:.0f} s", flush=True)
            if not check.ok:
                return 1
        triage_cmd = [sys.executable, "-m", "triage"]
        run = timed([*triage_cmd, "impact", str(candidate), "--store", str(db), *jobs], folder / "impact.txt")
        report("impact", args.records, run)
        print("  " + "\n  ".join((folder / "impact.txt").read_text(encoding="utf-8").splitlines()[:7]), flush=True)
        found = re.search(r"re-triaged in .* s: (\d+) change", (folder / "impact.txt").read_text(encoding="utf-8"))
        failed = run["code"] != 0 or found is None or int(found.group(1)) != expected
        if failed:
            print(f"impact reported {found.group(1) if found else '?'} changed records, expected {expected}", flush=True)
        if args.replay:
            run = timed([*triage_cmd, "audit", "replay", "--store", str(db), *jobs], folder / "replay.txt")
            report("audit replay", args.records, run)
            print("  " + (folder / "replay.txt").read_text(encoding="utf-8").strip(), flush=True)
            failed = failed or run["code"] != 0
        return 1 if failed else 0
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

"""Benchmarks of the decision record: request cost with recording on and off, and ``impact`` throughput.

    .venv/bin/python benchmarks/record_bench.py requests [--seconds 5] [--dsn DSN]
    .venv/bin/python benchmarks/record_bench.py impact [--sizes 10000 100000] [--jobs N] [--dsn DSN]

``requests``: ``POST /v1/triage`` through the real app (Flask test client, one thread, in process, no
network), in the same run: recording off (a store that builds the record but writes nothing), on with
SQLite (``synchronous=FULL``: one fsync per decision) and, with ``--dsn``, on with PostgreSQL.

``impact``: fills a store with N records (distinct random cases, evaluated once, replicated; one
transaction per 5,000 records), then times ``impact`` against a candidate ruleset (suspected MSCC
lowered to urgent) on every core, plus ``verify``; prints records/s for each size so the growth
shows. Figures, not a test: this machine is shared and timings are noisy.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import triage
from triage._random_cases import random_valid_cases
from triage._record import PostgresStore, RecordStore, SqliteStore, decision_entry


class NullStore(SqliteStore):
    """Recording off: the record is built (normalised case, result dump) but nothing is written."""

    def record_decision(self, channel: str, case: Any, result: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        entry = decision_entry(channel, case, result)

        class _Written:
            id = entry["id"]
        return _Written()


def bench_requests(args: argparse.Namespace) -> None:
    from mscc_triage_api import create_app
    from mscc_triage_api.record_hook import EXTENSION

    folder = Path(tempfile.mkdtemp(prefix="mscc-bench-"))
    cases = list(random_valid_cases(7, 200))
    variants: list[tuple[str, Any]] = [("off", NullStore(folder / "null.sqlite3")),
                                       ("on, SQLite", SqliteStore(folder / "records.sqlite3"))]
    if args.dsn:
        variants.append(("on, PostgreSQL", PostgresStore(args.dsn)))
    print(f"POST /v1/triage, one thread, in process, {args.seconds:.0f} s each (random valid cases)")
    for _ in range(args.rounds):
        for label, store in variants:
            app = create_app({"CDS_STORE_PATH": str(folder / "cds.sqlite3"), "RECORD_PATH": str(folder / "x")})
            app.extensions[EXTENSION] = store
            client = app.test_client()
            client.post("/v1/triage", json=cases[0])
            n, started = 0, time.perf_counter()
            while time.perf_counter() - started < args.seconds:
                response = client.post("/v1/triage", json=cases[n % len(cases)])
                if response.status_code != 200:
                    raise SystemExit(f"{label}: {response.status_code} {response.get_data(as_text=True)}")
                n += 1
            elapsed = time.perf_counter() - started
            print(f"  recording {label:<15} {n / elapsed:8.1f} requests/s  ({elapsed / n * 1e3:.2f} ms each)")
    shutil.rmtree(folder, ignore_errors=True)


def candidate_rules(folder: Path) -> Path:
    target = folder / "candidate"
    shutil.copytree(triage.default_ruleset().path, target)
    text = (target / "mscc.yaml").read_text(encoding="utf-8")
    marker = "        - not: {concept: mri_excluded}\n    urgency: emergency\n"
    (target / "mscc.yaml").write_text(text.replace(marker, marker.replace("emergency", "urgent"), 1), encoding="utf-8")
    return target


def fill(store: RecordStore, n: int, distinct: list[dict[str, Any]]) -> None:
    done = store.count()
    while done < n:
        batch = []
        for i in range(done, min(n, done + 5000)):
            entry = dict(distinct[i % len(distinct)])
            entry["id"] = f"{i:032x}"
            batch.append(entry)
        store.append_many(batch)
        done += len(batch)


def bench_impact(args: argparse.Namespace) -> None:
    from triage._reevaluate import impact

    folder = Path(tempfile.mkdtemp(prefix="mscc-bench-"))
    rs = triage.default_ruleset()
    distinct = [decision_entry("api", c, rs.evaluate(c)) for c in random_valid_cases(3, args.distinct)]
    candidate = candidate_rules(folder)
    store: RecordStore = PostgresStore(args.dsn) if args.dsn else SqliteStore(folder / "records.sqlite3")
    print(f"impact on {args.jobs or 'every'} core(s), store {store.url}, {args.distinct} distinct random cases")
    for size in sorted(args.sizes):
        started = time.perf_counter()
        fill(store, size, distinct)
        filled = time.perf_counter() - started
        started = time.perf_counter()
        report = store.verify()
        verified = time.perf_counter() - started
        started = time.perf_counter()
        result = impact(store.bodies(), candidate, args.jobs)
        elapsed = time.perf_counter() - started
        summary = result.summary()
        print(f"  {size:>9,} records: impact {elapsed:8.1f} s = {size / elapsed:7.0f} records/s "
              f"({summary['changed']} changed, {summary['urgency_down']} down); verify {verified:6.1f} s "
              f"({'ok' if report.ok else report.broken}); filling took {filled:.1f} s", flush=True)
    store.close()
    shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    req = sub.add_parser("requests")
    req.add_argument("--seconds", type=float, default=5.0)
    req.add_argument("--rounds", type=int, default=2)
    req.add_argument("--dsn", default=None)
    imp = sub.add_parser("impact")
    imp.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    imp.add_argument("--distinct", type=int, default=2000)
    imp.add_argument("--jobs", type=int, default=None)
    imp.add_argument("--dsn", default=None)
    args = parser.parse_args()
    (bench_requests if args.what == "requests" else bench_impact)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

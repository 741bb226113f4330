"""Benchmarks of the decision record: request cost with recording on and off, and ``impact`` throughput.

    .venv/bin/python benchmarks/record_bench.py requests [--seconds 5] [--dsn DSN]
    .venv/bin/python benchmarks/record_bench.py writes [--seconds 3] [--threads 1 4 16] [--dsn DSN] [--sync]
                                                       [--evaluate] [--rounds 2] [--places disk tmpfs]
    .venv/bin/python benchmarks/record_bench.py impact [--sizes 10000 100000] [--jobs N] [--dsn DSN]

``requests``: ``POST /v1/triage`` through the real app (Flask test client, one thread, in process, no
network), in the same run: recording off (a store that builds the record but writes nothing), on with
SQLite (``synchronous=FULL``: one fsync per decision) and, with ``--dsn``, on with PostgreSQL.

``writes``: the store alone, records/s with 1, 4 and 16 threads each appending decision records as a
request does (``record_decision`` -> ``append``), on disk (a folder under ``/var/tmp``) and on tmpfs
(``/dev/shm``), SQLite (and PostgreSQL with ``--dsn``); each run ends with ``verify``. ``--evaluate``:
each call evaluates a case and records it (a request without HTTP: other threads evaluate while a
group waits for its fsync). ``--sync``
adds the same store with ``synchronous=NORMAL`` (no fsync per commit), for comparison only. "one by one"
is the store before group commit (one transaction per record), measured in the same run.

``impact``: fills a store with N records (distinct random cases, evaluated once, replicated; one
transaction per 5,000 records), then times ``impact`` against a candidate ruleset (suspected MSCC
lowered to urgent) on every core, plus ``verify``; prints records/s for each size so the growth
shows. Figures, not a test: this machine is shared and timings are noisy.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
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


class OneByOne:
    """Before group commit: one transaction (one fsync) per record, whatever the other threads do."""

    def append(self, entry: Any) -> Any:
        return self.append_many([entry])[0]   # type: ignore[attr-defined]


class OneByOneStore(OneByOne, SqliteStore):
    pass


class OneByOnePg(OneByOne, PostgresStore):
    pass


class NormalSyncStore(SqliteStore):
    """For comparison only: WAL with ``synchronous=NORMAL`` (commits reach the OS, not the disk)."""

    def _open_connection(self) -> Any:
        conn = super()._open_connection()
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn


def timed_writes(store: RecordStore, threads: int, seconds: float, entries: list[dict[str, Any]],
                 cases: Any = None) -> float:
    """Records/s appended by ``threads`` threads for ``seconds``, one record per call as a request does
    (with ``cases``: each thread evaluates a case and records it, a request without HTTP)."""
    ruleset = triage.default_ruleset()
    counts = [0] * threads
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            i = k
            while not stop.is_set():
                if cases is not None:
                    case = cases[i % len(cases)]
                    store.record_decision("api", case, ruleset.evaluate(case))
                else:
                    store.append({**entries[i % len(entries)], "id": uuid.uuid4().hex})
                counts[k] += 1
                i += threads
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    pool = [threading.Thread(target=writer, args=(k,)) for k in range(threads)]
    started = time.perf_counter()
    for t in pool:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise SystemExit(f"{threads} threads: {errors[0]!r}")
    return sum(counts) / elapsed


def bench_writes(args: argparse.Namespace) -> None:
    rs = triage.default_ruleset()
    cases = list(random_valid_cases(5, 100))
    entries = [decision_entry("api", c, rs.evaluate(c)) for c in cases]
    evaluated = cases if args.evaluate else None
    places = [(place, {"disk": "/var/tmp", "tmpfs": "/dev/shm"}[place]) for place in args.places]
    kinds: list[tuple[str, Any]] = [("SQLite one by one", OneByOneStore), ("SQLite grouped", SqliteStore)]
    if args.sync:
        kinds.append(("SQLite NORMAL", NormalSyncStore))
    what = "evaluations recorded" if args.evaluate else "records appended"
    print(f"{what} per second, {args.seconds:.0f} s each, one record per call, best of {args.rounds} "
          f"interleaved rounds ({os.cpu_count()} cores)")
    print(f"  {'store':<28}" + "".join(f"{n:>9} thr" for n in args.threads))
    for place, parent in places:
        best: dict[tuple[str, int], float] = {}
        for _ in range(args.rounds):
            for label, kind in kinds:
                for n in args.threads:
                    folder = Path(tempfile.mkdtemp(prefix="mscc-bench-", dir=parent))
                    store = kind(folder / "records.sqlite3")
                    store.append({**entries[0], "id": uuid.uuid4().hex})
                    rate = timed_writes(store, n, args.seconds, entries, evaluated)
                    best[label, n] = max(rate, best.get((label, n), 0.0))
                    report = store.verify()
                    store.close()
                    shutil.rmtree(folder, ignore_errors=True)
                    if not report.ok:
                        raise SystemExit(f"{label} {place}: {report.broken}")
        for label, _ in kinds:
            print(f"  {label + ', ' + place:<28}" + "".join(f"{best[label, n]:13,.0f}" for n in args.threads),
                  flush=True)
    if args.dsn:
        best = {}
        for _ in range(args.rounds):
            for label, kind in (("PostgreSQL one by one", OneByOnePg), ("PostgreSQL grouped", PostgresStore)):
                for n in args.threads:
                    pg = kind(args.dsn)
                    rate = timed_writes(pg, n, args.seconds, entries, evaluated)
                    best[label, n] = max(rate, best.get((label, n), 0.0))
                    report = pg.verify()
                    pg.close()
                    if not report.ok:
                        raise SystemExit(f"{label}: {report.broken}")
        for label in ("PostgreSQL one by one", "PostgreSQL grouped"):
            print(f"  {label:<28}" + "".join(f"{best[label, n]:13,.0f}" for n in args.threads), flush=True)


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
    wri = sub.add_parser("writes")
    wri.add_argument("--seconds", type=float, default=3.0)
    wri.add_argument("--threads", type=int, nargs="+", default=[1, 4, 16])
    wri.add_argument("--dsn", default=None)
    wri.add_argument("--sync", action="store_true")
    wri.add_argument("--evaluate", action="store_true", help="each call evaluates its case first")
    wri.add_argument("--rounds", type=int, default=2)
    wri.add_argument("--places", nargs="*", choices=["disk", "tmpfs"], default=["disk", "tmpfs"],
                     help="where the SQLite store lives (none: PostgreSQL only)")
    imp = sub.add_parser("impact")
    imp.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    imp.add_argument("--distinct", type=int, default=2000)
    imp.add_argument("--jobs", type=int, default=None)
    imp.add_argument("--dsn", default=None)
    args = parser.parse_args()
    {"requests": bench_requests, "writes": bench_writes, "impact": bench_impact}[args.what](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

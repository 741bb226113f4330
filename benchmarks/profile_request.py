"""Where the time of one ``POST /v1/triage`` goes, in process (issue 26).

Builds the app with the same factory as ``triage serve`` (``api.create_app``), its decision record in
a temporary folder on disk (``$TMPDIR``, default /var/tmp; removed at the end), warms it up, then
profiles N requests through Flask's test client with cProfile (wall clock, so the record's fsync
counts) and splits each request into its steps by the cumulative time of the functions that do them:

    benchmarks/profile_request.py [N] [--top K]

The test client replaces gunicorn and its buffering worker (socket, HTTP parsing, thread hand-off):
that share is measured apart, by comparing with the server under wrk (see benchmarks/http_compare.sh).
Single-threaded, so each record is its own commit (no group to share a commit with).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CASES = [
    '{"patient": {"cancer": {"history": "current", "primary": "prostate"}}, "presentation": {"focal_vertebral_pain": '
    '{"present": true}, "weakness": {"present": true, "limbs": "legs", "bilateral": true, "progressive": true}}}',
    '{"patient": {"cancer": {"history": "current", "primary": "lung"}}, "presentation": {"focal_vertebral_pain": '
    '{"present": true, "nocturnal": true}}}',
    "{}",
    '{"patient": {"cancer": {"history": "current", "primary": "breast", "bone_metastases": true}, "treatments": '
    '{"bone_modifying_agent": "denosumab"}}, "labs": {"corrected_calcium_mmol_l": 2.61, "creatinine_clearance_ml_min": 45}}',
    '{"patient": {"cancer": {"history": "none"}}, "presentation": {"sciatica": {"present": true, "bilateral": true}}}',
]

# (step, (file suffix, function name)): a step's time is the cumulative time of its function.
STEPS = [
    ("request total (test client -> response)", ("benchmarks/profile_request.py", "_one")),
    ("  view: triage_case", ("api/http.py", "triage_case")),
    ("    read + parse body (read_json_body)", ("api/body.py", "read_json_body")),
    ("    evaluate (Ruleset.evaluate)", ("triage/_triage.py", "evaluate")),
    ("      validate (validate_case, pydantic)", ("triage/_case.py", "validate_case")),
    ("      normalise (normalised_dict)", ("triage/_case.py", "normalised_dict")),
    ("      flatten (_flatten)", ("triage/_triage.py", "_flatten")),
    ("      engine runs: the case and its what-if trials", ("triage/_engine.py", "run")),
    ("      what-if answers read (_qualifying)", ("triage/_triage.py", "_qualifying")),
    ("      assemble result (assemble)", ("triage/_result.py", "assemble")),
    ("    decision record (record_hook.record)", ("api/record_hook.py", "record")),
    ("      record body (decision_entry)", ("triage/_record_format.py", "decision_entry")),
    ("      append: hash, INSERT, COMMIT (append)", ("triage/_record_store.py", "append")),
    ("        of which sqlite3 commit (fsync)", ("~", "<method 'commit' of 'sqlite3.Connection' objects>")),
    ("    result JSON (Result.to_json)", ("triage/_result.py", "to_json")),
]


def _cumulative(stats: pstats.Stats, suffix: str, name: str) -> float:
    total = 0.0
    for (file, _line, func), (_cc, _nc, _tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if func == name and file.endswith(suffix):
            total += ct
    return total


def _filesystem(path: str) -> str:
    """The type of the filesystem holding ``path`` (from /proc/mounts; "unknown" elsewhere)."""
    best, kind = "", "unknown"
    try:
        with open("/proc/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                parts = line.split()
                if len(parts) > 2 and (path == parts[1] or path.startswith(parts[1].rstrip("/") + "/")) \
                        and len(parts[1]) > len(best):
                    best, kind = parts[1], parts[2]
    except OSError:
        pass
    return kind


def _one(client, body: str) -> None:  # type: ignore[no-untyped-def]
    response = client.post("/v1/triage", data=body, content_type="application/json")
    if response.status_code != 200:
        raise SystemExit(f"unexpected {response.status_code}: {response.data[:200]!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=2000, help="requests profiled (default 2000)")
    parser.add_argument("--top", type=int, default=0, help="also print the K functions of most own time")
    args = parser.parse_args(argv)

    tmp = tempfile.mkdtemp(prefix="mscc-profile-", dir=os.environ.get("TMPDIR", "/var/tmp"))
    os.environ["XDG_DATA_HOME"] = os.path.join(tmp, "data")
    os.environ["XDG_RUNTIME_DIR"] = os.path.join(tmp, "run")
    os.makedirs(os.environ["XDG_RUNTIME_DIR"], mode=0o700)
    try:
        sys.path.insert(0, str(ROOT))
        import api

        app = api.create_app({"RECORD_PATH": os.path.join(tmp, "records.sqlite3"),
                              "CDS_STORE_PATH": os.path.join(tmp, "cds.sqlite3")})   # all in tmp, removed
        client = app.test_client()
        for i in range(200):   # warm-up: durable sessions, the what-if's kept answers
            _one(client, CASES[i % len(CASES)])

        start = time.perf_counter()
        for i in range(args.n):
            _one(client, CASES[i % len(CASES)])
        plain = (time.perf_counter() - start) / args.n

        profiler = cProfile.Profile()
        profiler.enable()
        for i in range(args.n):
            _one(client, CASES[i % len(CASES)])
        profiler.disable()
        stats = pstats.Stats(profiler)

        total = _cumulative(stats, *STEPS[0][1])
        kind = _filesystem(tmp)
        print(f"{args.n} requests, 5 valid cases in turn, record in {tmp} ({kind}; TMPDIR=/dev/shm puts it on tmpfs)")
        print(f"unprofiled: {plain * 1e3:.2f} ms/request ({1 / plain:.0f} requests/s, one thread)")
        print(f"profiled:   {total / args.n * 1e3:.2f} ms/request (cProfile inflates Python-heavy steps)")
        print(f"{'step':48} {'ms/req':>7} {'% of request':>12}")
        for label, (suffix, name) in STEPS:
            ct = _cumulative(stats, suffix, name)
            print(f"{label:48} {ct / args.n * 1e3:7.3f} {100 * ct / total:11.1f}%")
        view = _cumulative(stats, "api/http.py", "triage_case")
        print(f"{'Flask + werkzeug + test client outside the view':48} {(total - view) / args.n * 1e3:7.3f} "
              f"{100 * (total - view) / total:11.1f}%")
        if args.top:
            stats.sort_stats("tottime").print_stats(args.top)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

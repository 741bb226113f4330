"""``triage impact`` and ``triage audit replay`` at scale (issue 26): the report does not depend on the
number of workers, progress goes to stderr, the report keeps only what it prints, and the benchmark
(``benchmarks/impact_bench.py``) writes nothing outside its temporary folder. A few hundred records:
no timing is asserted."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import triage
from triage._random_cases import random_valid_cases
from triage._record import SqliteStore, decision_entry
from triage._reevaluate import Change, ImpactReport

ROOT = Path(__file__).resolve().parents[1]
RECORDS = 300
# suspected MSCC lowered from emergency to urgent: a few sparse random cases change
MARKER = "      - level: emergency\n        unless: {concept: paraesthesia_only}\n"


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    """A SQLite record of RECORDS decisions (60 distinct sparse random cases, in turn), and a candidate."""
    folder = tmp_path_factory.mktemp("impact-scale")
    rs = triage.default_ruleset()
    pool = [decision_entry("api", case, rs.evaluate(case)) for case in random_valid_cases(5, 60, density=0.1)]
    store = SqliteStore(folder / "records.sqlite3")
    store.append_many({**pool[i % len(pool)], "id": f"{i:032x}"} for i in range(RECORDS))
    assert store.verify().ok
    store.close()
    candidate = folder / "candidate"
    shutil.copytree(rs.path, candidate)
    text = (candidate / "mscc.yaml").read_text(encoding="utf-8")
    assert MARKER in text
    (candidate / "mscc.yaml").write_text(text.replace(MARKER, MARKER.replace("emergency", "urgent"), 1),
                                         encoding="utf-8")
    return folder / "records.sqlite3", candidate


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "triage", *args], capture_output=True, text=True,
                          env=dict(os.environ), timeout=600)


def test_impact_and_replay_report_the_same_with_one_worker_or_two(record):
    db, candidate = record
    reports = {}
    for jobs in ("1", "2"):
        js = run("impact", str(candidate), "--store", str(db), "--format", "json", "--jobs", jobs)
        text = run("impact", str(candidate), "--store", str(db), "--limit", "5", "--jobs", jobs)
        again = run("audit", "replay", "--store", str(db), "--jobs", jobs)
        assert js.returncode == text.returncode == again.returncode == 0, js.stderr + text.stderr + again.stderr
        report = json.loads(js.stdout)
        report.pop("seconds")
        reports[jobs] = (report, re.sub(r" in [\d.]+ s:", " in _ s:", text.stdout), again.stdout)
    assert reports["1"] == reports["2"]
    report, text, again = reports["1"]
    assert report["summary"]["records"] == RECORDS and 5 < report["summary"]["changed"] < RECORDS
    assert [c["seq"] for c in report["changes"][:5]] == [int(m) for m in re.findall(r"record (\d+) ", text)]
    assert again == f"replayed {RECORDS} records: 0 differences\n"


@pytest.mark.parametrize("command", ["impact", "replay"])
def test_progress_lines_go_to_stderr_and_the_report_to_stdout(record, command):
    db, candidate = record
    args = ["impact", str(candidate), "--format", "json"] if command == "impact" else ["audit", "replay"]
    done = run(*args, "--store", str(db), "--jobs", "2", "--progress-every", "0.000001")
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    during = re.compile(rf"{command}: [\d,]+/{RECORDS} records \(\d+%\), [\d,]+ records/s, about \d+m\d\ds left")
    assert lines and all(during.fullmatch(line) for line in lines[:-1]), lines
    assert re.fullmatch(rf"{command}: {RECORDS} records in \d+m\d\ds, [\d,]+ records/s", lines[-1]), lines
    if command == "impact":
        assert json.loads(done.stdout)["summary"]["records"] == RECORDS    # stdout holds the report alone
    else:
        assert done.stdout == f"replayed {RECORDS} records: 0 differences\n"
    quiet = run(*args, "--store", str(db), "--jobs", "1", "--progress-every", "0")
    assert quiet.returncode == 0 and quiet.stderr == ""


def _change(seq: int, old: str, new: str) -> Change:
    return Change(seq, f"{seq:032x}", "2026-01-01T00:00:00Z", "api", old, new, (), (), (), ())


def test_an_impact_report_keeps_only_the_changes_it_lists_and_counts_them_all():
    urgencies = [("emergency", "urgent"), ("urgent", "routine"), ("routine", "emergency"), ("emergency", "routine"),
                 ("urgent", "urgent")]
    changes = [_change(seq, *urgencies[seq * 7 % len(urgencies)]) for seq in range(1, 2001)]
    whole, kept = ImpactReport(), ImpactReport(keep=7)
    for start in range(0, len(changes), 100):      # as the workers send them: chunk by chunk, in seq order
        chunk = changes[start:start + 100]
        errors = [(start + 1, "x", "boom")]
        whole.add(150, chunk, errors)
        kept.add(150, chunk, errors)
    assert kept.summary() == whole.summary() and whole.summary()["changed"] == 2000
    assert whole.summary()["unchanged"] == 150 * 20 - 2000 - 20
    assert kept.ordered() == whole.ordered()[:7] and len(kept.changes) <= 2 * 7 + 200
    assert kept.errors == whole.errors[:7]
    assert [c.direction for c in whole.ordered()[:2]] == ["down", "down"]
    assert whole.ordered()[0].old_urgency == "emergency" and whole.ordered()[0].new_urgency == "routine"


def _tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_benchmark_writes_nothing_outside_its_temporary_folder(tmp_path):
    home, cwd, scratch, data = tmp_path / "home", tmp_path / "cwd", tmp_path / "scratch", tmp_path / "data"
    for folder in (home, cwd, scratch, data):
        folder.mkdir()
    rules = _tree(ROOT / "rules")
    env = {**os.environ, "HOME": str(home), "XDG_DATA_HOME": str(data), "TMPDIR": str(scratch),
           "XDG_CACHE_HOME": str(home / ".cache"), "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "impact_bench.py"), "--records", "200",
                           "--distinct", "20", "--jobs", "1", "--verify"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^impact +200 records .* records/s .* exit 0$", done.stdout, re.M), done.stdout
    assert re.search(r"^audit replay +200 records .* exit 0$", done.stdout, re.M), done.stdout
    assert "verify: ok, 200 records" in done.stdout
    assert "mscc-impact-bench-" in done.stdout                           # it made its folder in TMPDIR ...
    assert [list(f.iterdir()) for f in (home, cwd, scratch, data)] == [[], [], [], []]   # ... and removed it
    assert _tree(ROOT / "rules") == rules

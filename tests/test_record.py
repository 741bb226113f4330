"""The decision record (triage/_record.py) and its commands, on SQLite and on a real PostgreSQL.

Every test runs against both stores (``store`` is parametrized); PostgreSQL is a real server started
by the fixture of ``test_record_pgserver.py``. No database is mocked.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_record_pgserver import PgServer, pg_dsn, pg_server  # noqa: F401 - fixtures

import triage
from triage._random_cases import random_valid_cases
from triage._record import (
    GENESIS, PostgresStore, RecordNotFound, RecordUnavailable, SqliteStore, canonical, decision_entry, open_store,
)
from triage.cli import main

ROOT = Path(__file__).resolve().parents[1]
SIMPLE = {"patient": {"cancer": {"history": "current"}}, "presentation": {"weakness": {"present": True}}}
CASE = {"case_id": "MRN-0012345",
        "patient": {"cancer": {"history": "current", "primary": "prostate"}},
        "presentation": {"focal_vertebral_pain": {"present": True, "region": "thoracic"},
                         "weakness": {"present": True, "limbs": "legs", "bilateral": True, "progressive": True}}}


@pytest.fixture(scope="module")
def ruleset():
    return triage.default_ruleset()


@pytest.fixture(scope="module")
def cases():
    return list(random_valid_cases(12, 40))


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request, tmp_path):
    """(kind, store, CLI options, raw SQL runner) for one fresh store."""
    if request.param == "sqlite":
        path = tmp_path / "data" / "records.sqlite3"
        store = SqliteStore(path)

        def sql(statement, params=()):
            with sqlite3.connect(path, isolation_level=None) as conn:
                conn.execute(statement, params)
        yield "sqlite", store, ["--store", str(path)], sql
    else:
        dsn = request.getfixturevalue("pg_dsn")
        store = PostgresStore(dsn)

        def sql(statement, params=()):
            import psycopg
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(statement.replace("?", "%s"), params)
        yield "postgres", store, ["--dsn", dsn], sql
    store.close()


def fill(store, ruleset, cases, channel="api"):
    return [store.record_decision(channel, c, ruleset.evaluate(c)) for c in cases]


def cli(*args, env=None):
    result = CliRunner().invoke(main, list(args), env=env)
    return result


# ------------------------------------------------------------------------------ the record itself

def test_a_record_holds_the_case_as_sent_the_result_and_the_versions_but_no_identifier(backend, ruleset):
    _, store, _, _ = backend
    result = ruleset.evaluate(CASE)
    record = store.record_decision("api", CASE, result)
    body = store.get(record.id).body
    assert body["channel"] == "api" and body["kind"] == "decision" and body["seq"] == 1 and body["prev"] == GENESIS
    assert body["ruleset"] == {"name": ruleset.name, "version": ruleset.version, "sha256": ruleset.sha256}
    assert body["versions"]["durable-rules"] == "2.0.28" and body["versions"]["mscc-triage"] == triage.__version__
    assert body["result"]["urgency"] == "emergency" == result.urgency
    assert body["case"]["presentation"]["weakness"]["present"] is True
    # as sent (validated, nulls left out: normalisation is replayed); the record number is not kept anywhere
    assert "MRN-0012345" not in json.dumps(body) and "case_id" not in body["case"] and "case_id" not in body["result"]
    # the hash is the sha256 of the canonical JSON form: sorted keys, no spaces, UTF-8
    assert record.hash == hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"),
                                                    ensure_ascii=False).encode("utf-8")).hexdigest()
    # the recorded case evaluates back to the same result
    again = ruleset.evaluate(body["case"]).model_dump(mode="json")
    again.pop("case_id")
    assert again == body["result"]


def test_cds_context_is_recorded_and_a_record_is_found_by_its_card(backend, ruleset):
    _, store, _, _ = backend
    from triage._record import CdsContext
    record = store.record_decision("cds", CASE, ruleset.evaluate(CASE),
                                   cds=CdsContext("hook-1", ("card-uuid-1",), "https://ehr.example.org", "Practitioner/7"))
    found = store.get("card-uuid-1")
    assert found.seq == record.seq
    assert found.body["cds"] == {"hook_instance": "hook-1", "cards": ["card-uuid-1"], "iss": "https://ehr.example.org",
                                 "sub": "Practitioner/7"}
    assert store.get(str(record.seq)).id == store.get(record.id).id == record.id
    with pytest.raises(RecordNotFound):
        store.get("no-such-record")


def test_an_unknown_channel_is_refused(ruleset):
    with pytest.raises(ValueError, match="channel"):
        decision_entry("fax", CASE, ruleset.evaluate(CASE))


@pytest.mark.parametrize("moment", [dt.datetime(2026, 12, 6, 5, 4, 3, 0, dt.timezone.utc),
                                    dt.datetime(2026, 1, 2, 23, 59, 59, 999999, dt.timezone.utc)])
def test_a_records_time_is_written_with_six_digits_of_microseconds_and_z(monkeypatch, moment):
    import triage._record_format as record_format

    class Clock(dt.datetime):
        @classmethod
        def now(cls, tz=None):  # type: ignore[override]
            return moment

    monkeypatch.setattr(record_format.dt, "datetime", Clock)
    assert record_format.utc_now() == moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_a_records_hash_is_the_canonical_body_hashed(tmp_path):
    """The members written before the lock (and the three the store adds) make the canonical body."""
    store = triage.open_store(tmp_path / "r.sqlite3", None)
    try:
        written = store.append_many([{"record_format": 1, "kind": "decision", "id": "a", "channel": "api",
                                      "case": {"labs": {"corrected_calcium_mmol_l": 2.61}}, "é\u2028\"": ["x"]}])
        for record in written + [store.append({"record_format": 1, "kind": "decision", "id": "b", "channel": "cli"})]:
            assert record.hash == hashlib.sha256(canonical(record.body)).hexdigest()
            assert set(record.body) >= {"seq", "prev", "time"}
    finally:
        store.close()


def test_canonical_form():
    assert canonical({"b": 1, "a": [1.5, "é"]}) == '{"a":[1.5,"é"],"b":1}'.encode("utf-8")
    with pytest.raises(ValueError):
        canonical({"x": float("nan")})


def test_the_default_store_is_sqlite_in_the_data_folder_and_the_dsn_selects_postgresql(monkeypatch, tmp_path):
    monkeypatch.delenv("MSCC_RECORD_PATH", raising=False)
    monkeypatch.delenv("MSCC_RECORD_DSN", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    store = open_store()
    assert isinstance(store, SqliteStore) and store.path == tmp_path / "mscc-triage" / "records.sqlite3"
    monkeypatch.setenv("MSCC_RECORD_PATH", str(tmp_path / "x.sqlite3"))
    assert open_store().path == tmp_path / "x.sqlite3"
    monkeypatch.setenv("MSCC_RECORD_DSN", "host=127.0.0.1 port=1 user=u password=secret dbname=d")
    store = open_store()
    assert isinstance(store, PostgresStore) and "secret" not in store.url


# ------------------------------------------------------------------------------ the chain

def test_the_chain_verifies_after_writes(backend, ruleset, cases):
    _, store, options, _ = backend
    written = fill(store, ruleset, cases[:20])
    report = store.verify()
    assert report.ok and report.count == 20 and report.head_seq == 20 and report.head_hash == written[-1].hash
    assert [r.body["prev"] for r in written[1:]] == [r.hash for r in written[:-1]]
    out = cli("audit", "verify", *options)
    assert out.exit_code == 0, out.output
    assert f"ok: 20 records, head 20 sha256 {written[-1].hash}" in out.output


def test_verify_and_export_while_a_server_records_find_the_chain_whole(backend, ruleset, cases):
    """Operator audit: on a live server, verify read the head, then records appended after it, and
    called the chain BROKEN (a false tamper alarm); export then exported nothing."""
    _, store, options, _ = backend
    results = [ruleset.evaluate(c) for c in cases[:10]]
    # more records than one read batch, so that a verification takes a while, as on a real store
    store.append_many([decision_entry("api", cases[n % 10], results[n % 10]) for n in range(1200)])
    stop = threading.Event()

    def record() -> None:   # another store object: another process's connection, as a server's would be
        writer = SqliteStore(store.path) if isinstance(store, SqliteStore) else PostgresStore(store.dsn)
        try:
            n = 0
            while not stop.is_set():
                writer.record_decision("api", cases[n % 10], results[n % 10])
                n += 1
        finally:
            writer.close()

    thread = threading.Thread(target=record)
    thread.start()
    try:
        deadline = dt.datetime.now() + dt.timedelta(seconds=30)
        while store.head()[0] < 1210 and dt.datetime.now() < deadline:   # the writer is under way
            threading.Event().wait(0.01)
        reports = [store.verify() for _ in range(4)]
        exported = cli("audit", "export", *options)
    finally:
        stop.set()
        thread.join()
    assert all(r.ok for r in reports), [str(r.broken) for r in reports if not r.ok]
    assert reports[-1].head_seq > reports[0].head_seq >= 1210   # the store grew while it was verified
    assert exported.exit_code == 0, exported.output
    lines = [json.loads(line) for line in exported.output.splitlines()]
    assert [r["seq"] for r in lines] == list(range(1, len(lines) + 1)) and len(lines) > 1200


def test_an_empty_store_verifies(backend):
    _, store, _, _ = backend
    assert store.verify().ok and store.verify().count == 0


def _body(store, seq):
    return store.get(seq).body


def _tamper_cases():
    def alter(store, sql):                       # change a result, keep the stored hash
        body = _body(store, 5)
        body["result"]["urgency"] = "routine"
        sql("UPDATE records SET body = ? WHERE seq = 5", (canonical(body).decode(),))
        return 5, "altered"

    def alter_and_rehash(store, sql):            # change it and recompute its hash: the next link breaks
        body = _body(store, 5)
        body["result"]["urgency"] = "routine"
        sql("UPDATE records SET body = ?, hash = ? WHERE seq = 5",
            (canonical(body).decode(), hashlib.sha256(canonical(body)).hexdigest()))
        return 6, "does not link to record 5"

    def delete(store, sql):
        sql("DELETE FROM records WHERE seq = 5")
        return 6, "record 5 before it is missing"

    def delete_last(store, sql):
        sql("DELETE FROM records WHERE seq = 10")
        return 10, "missing"

    def insert(store, sql):                      # a forged record between 5 and 6: renumber, insert
        sql("UPDATE records SET seq = seq + 100 WHERE seq > 5")
        sql("UPDATE records SET seq = seq - 99 WHERE seq > 100")
        forged = {**_body(store, 5), "seq": 6, "id": "f" * 32, "prev": store.get(5).hash}
        sql("INSERT INTO records (seq, id, time, channel, kind, cards, body, hash) VALUES (6, ?, ?, ?, ?, NULL, ?, ?)",
            (forged["id"], forged["time"], forged["channel"], forged["kind"], canonical(forged).decode(),
             hashlib.sha256(canonical(forged)).hexdigest()))
        return 7, "differ from its hashed content"

    def append_forged(store, sql):               # a record appended behind the store's back
        head = store.get(10)
        forged = {**head.body, "seq": 11, "id": "e" * 32, "prev": head.hash}
        sql("INSERT INTO records (seq, id, time, channel, kind, cards, body, hash) VALUES (11, ?, ?, ?, ?, NULL, ?, ?)",
            (forged["id"], forged["time"], forged["channel"], forged["kind"], canonical(forged).decode(),
             hashlib.sha256(canonical(forged)).hexdigest()))
        return 11, "after the chain's head"

    def move_in_time(store, sql):                # change an indexed column (to dodge a prune, say)
        sql("UPDATE records SET time = '2099-01-01T00:00:00.000000Z' WHERE seq = 3")
        return 3, "columns"

    return [alter, alter_and_rehash, delete, delete_last, insert, append_forged, move_in_time]


@pytest.mark.parametrize("tamper", _tamper_cases(), ids=lambda f: f.__name__)
def test_tampering_is_detected_and_the_first_broken_record_named(backend, ruleset, cases, tamper):
    _, store, options, sql = backend
    fill(store, ruleset, cases[:10])
    store.close()
    seq, words = tamper(store, sql)
    store.close()
    report = store.verify()
    assert not report.ok
    assert report.broken.seq == seq and words in report.broken.reason, report.broken
    out = cli("audit", "verify", *options)
    assert out.exit_code == 1
    assert f"BROKEN: record {seq}" in out.output and words in out.output


def test_concurrent_threads_keep_one_linear_chain(backend, ruleset, cases):
    _, store, _, _ = backend
    errors = []

    def writer(offset):
        try:
            for case in cases[offset::8][:5]:
                store.record_decision("api", case, ruleset.evaluate(case))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    report = store.verify()
    assert report.ok and report.count == 40 and report.head_seq == 40


WRITER = """
import sys, triage
from triage._record import open_store
from triage._random_cases import random_valid_cases
store = open_store(sys.argv[1] or None, sys.argv[2] or None)
rs = triage.default_ruleset()
cases = list(random_valid_cases(int(sys.argv[3]), 10))
for i in range(int(sys.argv[4])):
    case = cases[i % len(cases)]
    store.record_decision("api", case, rs.evaluate(case))
"""


def test_two_processes_writing_at_once_keep_one_linear_chain(backend):
    kind, store, options, _ = backend
    path, dsn = (options[1], "") if kind == "sqlite" else ("", options[1])
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, path, dsn, str(seed), "60"]) for seed in (1, 2)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    report = store.verify()
    assert report.ok and report.count == 120 and report.head_seq == 120
    assert len({r.id for r in store.records()}) == 120


# ------------------------------------------------------------------------------ failures

def test_a_store_that_cannot_be_opened_raises_a_typed_error_and_recovers(tmp_path, ruleset):
    blocker = tmp_path / "data"
    blocker.write_text("a file where the data folder should be")
    store = SqliteStore(blocker / "records.sqlite3")
    with pytest.raises(RecordUnavailable, match="cannot be written"):
        store.record_decision("api", CASE, ruleset.evaluate(CASE))
    assert RecordUnavailable.code == "record_unavailable" and isinstance(RecordUnavailable("x"), triage.TriageError)
    blocker.unlink()                      # the store recovers: the same object writes again
    store.record_decision("api", CASE, ruleset.evaluate(CASE))
    assert store.verify().ok and store.count() == 1


def test_a_full_sqlite_store_writes_nothing_half(tmp_path, ruleset, cases):
    path = tmp_path / "records.sqlite3"
    store = SqliteStore(path)
    fill(store, ruleset, cases[:3])
    conn = store._conn()                 # the store's own connection, capped at its current size: a real SQLITE_FULL
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")
    big = [decision_entry("api", c, ruleset.evaluate(c)) for c in cases[:40]]
    with pytest.raises(RecordUnavailable, match="full"):
        store.append_many(big)
    store.close()
    assert store.count() == 3 and store.verify().ok


def test_a_postgresql_server_down_or_read_only_raises_and_writes_nothing_then_recovers(ruleset, cases):
    server = PgServer()
    try:
        dsn = server.database()
        store = PostgresStore(dsn, connect_timeout=2)
        fill(store, ruleset, cases[:3])
        server.execute(server.dsn(), f"ALTER DATABASE {dsn.split('dbname=')[1].split()[0]} SET default_transaction_read_only = on")
        store.close()
        with pytest.raises(RecordUnavailable, match="read-only"):
            store.record_decision("api", CASE, ruleset.evaluate(CASE))
        server.stop()
        with pytest.raises(RecordUnavailable):
            store.record_decision("api", CASE, ruleset.evaluate(CASE))
        server.start()
        server.execute(server.dsn(), f"ALTER DATABASE {dsn.split('dbname=')[1].split()[0]} SET default_transaction_read_only = off")
        store.record_decision("api", CASE, ruleset.evaluate(CASE))   # no restart: the next call reconnects
        assert store.count() == 4 and store.verify().ok
        store.close()
    finally:
        server.close()


def test_the_cli_names_an_unreachable_store_with_exit_5(tmp_path):
    (tmp_path / "file").write_text("")
    out = cli("audit", "verify", "--store", str(tmp_path / "file" / "r.sqlite3"))
    assert out.exit_code == 5 and "cannot be read" in out.output


# ------------------------------------------------------------------------------ show, export, replay, impact, prune

def test_show_and_export(backend, ruleset, cases):
    _, store, options, _ = backend
    written = fill(store, ruleset, cases[:6])
    out = cli("audit", "show", written[2].id, *options)
    assert out.exit_code == 0 and json.loads(out.output)["seq"] == 3 and json.loads(out.output)["hash"] == written[2].hash
    assert cli("audit", "show", "nope", *options).exit_code == 2
    lines = cli("audit", "export", *options).output.splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [1, 2, 3, 4, 5, 6]
    first = json.loads(lines[0])
    stored_hash = first.pop("hash")
    assert hashlib.sha256(canonical(first)).hexdigest() == stored_hash == written[0].hash
    since = cli("audit", "export", "--since", written[3].time, *options).output.splitlines()
    assert [json.loads(line)["seq"] for line in since] == [4, 5, 6]
    assert cli("audit", "export", "--since", "2999-01-01", *options).output == ""
    assert cli("audit", "export", "--since", "yesterday", *options).exit_code == 2


def candidate_rules(tmp_path) -> Path:
    """The project's rules with suspected MSCC lowered to urgent: a candidate with downward changes."""
    folder = tmp_path / "candidate"
    shutil.copytree(triage.default_ruleset().path, folder)
    text = (folder / "mscc.yaml").read_text(encoding="utf-8")
    marker = "      - level: emergency\n        unless: {concept: paraesthesia_only}\n"   # mscc.suspected's urgency
    assert text.count(marker) == 1
    (folder / "mscc.yaml").write_text(text.replace(marker, marker.replace("emergency", "urgent")), encoding="utf-8")
    return folder


def test_replay_reproduces_every_record_and_reports_a_difference(backend, ruleset, cases, tmp_path):
    _, store, options, _ = backend
    fill(store, ruleset, cases[:15])
    out = cli("audit", "replay", "-j", "1", *options)
    assert out.exit_code == 0 and "replayed 15 records: 0 differences" in out.output, out.output
    # a record whose result the current engine would not give: a reproducibility failure, named
    entry = decision_entry("api", CASE, ruleset.evaluate(CASE))
    entry["result"]["urgency"] = "routine"
    bad = store.append(entry)
    out = cli("audit", "replay", "-j", "2", *options)
    assert out.exit_code == 1
    assert f"record {bad.seq} ({bad.id}): not reproduced: differs in urgency" in out.output
    assert "1 reproducibility failures" in out.output


def test_replay_uses_the_ruleset_each_record_was_recorded_under(backend, cases, tmp_path):
    _, store, options, _ = backend
    folder = candidate_rules(tmp_path)
    other = triage.load_ruleset(folder)
    fill(store, other, cases[:5])
    out = cli("audit", "replay", "-j", "1", *options)
    assert out.exit_code == 1 and f"5 records were recorded under ruleset sha256 {other.sha256}" in out.output
    out = cli("audit", "replay", "-j", "1", "--ruleset", str(folder), *options)
    assert out.exit_code == 0 and "0 differences" in out.output, out.output


def test_impact_counts_what_a_candidate_ruleset_changes_urgency_down_first(backend, ruleset, cases, tmp_path):
    _, store, options, _ = backend
    fill(store, ruleset, [SIMPLE, *cases[:25]])
    folder = candidate_rules(tmp_path)
    candidate = triage.load_ruleset(folder)
    expected_down = expected_changed = 0
    rank = {"routine": 0, "urgent": 1, "emergency": 2}
    for case in [SIMPLE, *cases[:25]]:                     # the same question, answered directly
        old, new = ruleset.evaluate(case), candidate.evaluate(case)
        expected_down += rank[new.urgency] < rank[old.urgency]
        expected_changed += (old.urgency != new.urgency or set(old.action_ids()) != set(new.action_ids())
                             or set(old.flag_ids()) != set(new.flag_ids()))
    assert expected_down >= 1
    out = cli("impact", str(folder), "--format", "json", "-j", "2", *options)
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    assert report["summary"]["records"] == 26 and report["summary"]["urgency_down"] == expected_down
    assert report["summary"]["changed"] == expected_changed
    directions = [c["direction"] for c in report["changes"]]
    assert directions == sorted(directions, key=["down", "up", "same"].index)     # urgency down first
    assert report["changes"][0]["seq"] == 1 and report["changes"][0]["urgency"] == ["emergency", "urgent"]
    text = cli("impact", str(folder), "-j", "1", *options).output
    assert f"urgency DOWN     {expected_down}" in text and "DOWN  record 1 " in text
    # the same ruleset changes nothing
    same = json.loads(cli("impact", str(ruleset.path), "--format", "json", "-j", "1", *options).output)
    assert same["summary"]["changed"] == 0 and same["summary"]["unchanged"] == 26
    # --since restricts the records
    later = store.get(20).time
    assert json.loads(cli("impact", str(folder), "--since", later, "--format", "json", "-j", "1",
                          *options).output)["summary"]["records"] == 7


def test_prune_keeps_the_chain_verifiable(backend, ruleset, cases):
    _, store, options, sql = backend
    written = fill(store, ruleset, cases[:10])
    out = cli("audit", "prune", "--before", written[5].time, *options)      # records 1-5 go
    assert out.exit_code == 0 and "pruned 5 records (through record 5); checkpoint record 11" in out.output
    report = store.verify()
    assert report.ok and report.first_seq == 6 and report.count == 6 and report.head_seq == 11
    checkpoint = store.get(11).body
    assert checkpoint["kind"] == "checkpoint" and checkpoint["pruned_hash"] == written[4].hash
    fill(store, ruleset, cases[10:13])
    assert cli("audit", "prune", "--before", "2000-01-01", *options).output.startswith("nothing to prune")
    out = cli("audit", "prune", "--before", store.get(13).time, *options)     # 6-12, the first checkpoint with them
    assert out.exit_code == 0 and "pruned 7 records" in out.output
    assert cli("audit", "verify", *options).exit_code == 0
    assert [r.seq for r in store.records()] == [13, 14]                     # decisions only
    assert cli("audit", "replay", "-j", "1", *options).exit_code == 0
    # deleting the first record that is left is still caught
    sql("DELETE FROM records WHERE seq = 13")
    store.close()
    broken = store.verify().broken
    assert broken is not None and broken.seq == 14 and "missing" in broken.reason


def test_prune_of_everything_leaves_a_verifiable_checkpoint(backend, ruleset, cases):
    _, store, options, _ = backend
    fill(store, ruleset, cases[:4])
    assert store.prune("2999-01-01").pruned == 4
    report = store.verify()
    assert report.ok and report.count == 1 and report.first_seq == 5
    fill(store, ruleset, cases[4:6])
    assert store.verify().ok and store.verify().head_seq == 7


def test_the_core_record_module_imports_without_flask():
    code = ("import sys; import triage.cli, triage._record, triage._reevaluate, triage._audit_cli; "
            "assert 'flask' not in sys.modules, 'flask imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ))
    assert done.returncode == 0, done.stderr


def test_the_retention_setting_decides_what_prune_deletes(tmp_path, ruleset, cases, monkeypatch):
    from triage._audit_cli import retention_bound
    from triage._record import open_store

    assert retention_bound(30, dt.date(2026, 11, 29)).startswith("2026-10-30")
    path = tmp_path / "records.sqlite3"
    store = open_store(path, None)
    fill(store, ruleset, cases[:3])
    store.close()
    monkeypatch.delenv("MSCC_RECORD_RETENTION_DAYS", raising=False)
    out = cli("audit", "prune", "--store", str(path))
    assert out.exit_code == 2 and "MSCC_RECORD_RETENTION_DAYS" in out.output      # nothing deleted by default
    monkeypatch.setenv("MSCC_RECORD_RETENTION_DAYS", "30")
    out = cli("audit", "prune", "--store", str(path))                             # today's records are kept
    assert out.exit_code == 0 and out.output.startswith("nothing to prune before")
    monkeypatch.setenv("MSCC_RECORD_RETENTION_DAYS", "a month")
    assert cli("audit", "prune", "--store", str(path)).exit_code == 2


def test_an_audit_command_on_a_store_that_does_not_exist_is_exit_5_and_makes_no_file(tmp_path):
    """A mistyped --store must not read as an empty chain that verifies, nor leave a record file behind."""
    missing = tmp_path / "nowhere" / "records.sqlite3"
    for args in (("audit", "verify"), ("audit", "export"), ("audit", "show", "x"), ("audit", "prune", "--before",
                                                                                        "2020-01-01")):
        out = cli(*args, "--store", str(missing))
        assert out.exit_code == 5, (args, out.output)
        assert f"there is none at {missing}" in out.output and "Traceback" not in out.output
    assert not (tmp_path / "nowhere").exists()

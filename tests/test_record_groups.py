"""Issue 26, the record: group commit. Threads appending at once share one transaction (one fsync), each
call returns only once its own record is committed, the chain stays exact, and a writer killed with
SIGKILL in the middle of a burst loses no record it had answered. SQLite and a real PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid

import pytest
from test_record import backend, cases, fill, ruleset  # noqa: F401 - fixtures and helpers
from test_record_pgserver import pg_dsn, pg_server  # noqa: F401 - fixtures

import triage
from triage._record import SqliteStore, canonical, decision_entry, record_hash


def test_a_records_hash_is_the_hash_of_its_canonical_form(backend, ruleset, cases):  # noqa: F811
    """The writer joins members serialised before the lock: the text stored is exactly canonical(body)."""
    _, store, _, sql = backend
    entries = [decision_entry("cds", c, ruleset.evaluate(c), cds=triage.CdsContext("h", ("c1",), "i", "s"))
               for c in cases[:5]] + [{"record_format": 1, "kind": "decision", "id": "é" * 32, "channel": "api",
                                       "case": {"z": 1.5, "a": ["ü", None]}, "result": {}}]
    for entry in entries:
        record = store.append(entry)
        assert record.hash == record_hash(record.body)
        (text,), = store._read(f"SELECT body FROM records WHERE seq = {store._ph}", (record.seq,))
        assert text == canonical(record.body).decode("utf-8")
        assert store.get(record.seq).body == record.body == json.loads(text)
    assert store.verify().ok


class Counting(SqliteStore):
    """Counts the transactions that append records (the groups), and what each held. The first writer
    waits before it takes the write lock (``hold``), so the other threads queue meanwhile."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.groups: list[int] = []
        self.started = threading.Event()
        self.hold = threading.Event()

    def _write(self, work):
        self.started.set()
        self.hold.wait(timeout=30)
        return super()._write(work)

    def _append_many(self, entries):
        def counted():   # the records a transaction writes, taken once the write lock is held
            got = entries() if callable(entries) else entries
            self.groups.append(len(got))
            return got

        return super()._append_many(counted)


def grouped(store: Counting, entries: list) -> list:
    """Append ``entries`` from one thread each: the first writer waits before the write lock while the
    others queue. Each thread's outcome: its record, or the exception it raised."""
    out: list = [None] * len(entries)

    def write(i):
        try:
            out[i] = store.append(entries[i])
        except Exception as exc:  # noqa: BLE001 - returned
            out[i] = exc

    first = threading.Thread(target=write, args=(0,))
    first.start()
    assert store.started.wait(timeout=30)
    others = [threading.Thread(target=write, args=(i,)) for i in range(1, len(entries))]
    for t in others:
        t.start()
    while len(store._group().queue) < len(entries):           # all queued, the first's own included
        threading.Event().wait(0.01)
    store.hold.set()
    for t in (first, *others):
        t.join(timeout=60)
    return out


def test_threads_appending_at_once_share_one_transaction(tmp_path, ruleset, cases):  # noqa: F811
    """Records queued while a writer waits for the write lock (another process committing) join its
    group: one transaction, one commit for all nine."""
    store = Counting(tmp_path / "records.sqlite3")
    entries = [decision_entry("api", c, ruleset.evaluate(c)) for c in cases[:9]]
    out = grouped(store, entries)
    assert store.groups == [9]                                  # one transaction for nine records
    assert sorted(r.seq for r in out) == list(range(1, 10))
    assert [r.id for r in out] == [e["id"] for e in entries]   # each thread got its own record
    report = store.verify()
    assert report.ok and report.count == 9
    store.close()


def test_a_malformed_record_fails_alone_and_a_store_failure_fails_the_group(tmp_path, ruleset, cases):  # noqa: F811
    store = Counting(tmp_path / "records.sqlite3")
    entries = [decision_entry("api", c, ruleset.evaluate(c)) for c in cases[:4]]
    del entries[2]["channel"]                                  # malformed: no channel column
    out = grouped(store, entries)
    assert isinstance(out[2], KeyError)
    assert store.groups == [4, 1, 1, 1, 1]                     # the group failed: then each alone
    assert sorted(r.seq for r in (out[0], out[1], out[3])) == [1, 2, 3] and store.verify().ok
    with pytest.raises(ValueError):                            # not JSON: refused before it is queued
        store.append({**entries[0], "id": uuid.uuid4().hex, "case": {"x": float("nan")}})

    failing = Counting(tmp_path / "blocker" / "records.sqlite3")   # a folder that is a file: the store is down
    (tmp_path / "blocker").write_text("")
    out = grouped(failing, [decision_entry("api", c, ruleset.evaluate(c)) for c in cases[:4]])
    assert all(isinstance(e, triage.RecordUnavailable) for e in out), out
    assert len({id(e) for e in out}) == 4                       # each thread its own exception
    store.close()


WRITER = """
import os, sys, threading, uuid
import triage
from triage._record import open_store, decision_entry
from triage._random_cases import random_valid_cases
store = open_store(sys.argv[1] or None, sys.argv[2] or None)
rs = triage.default_ruleset()
entries = [decision_entry("api", c, rs.evaluate(c)) for c in random_valid_cases(26, 20)]

def writer(k):
    i = k
    while True:
        record = store.append({**entries[i % len(entries)], "id": uuid.uuid4().hex})
        os.write(1, f"{record.seq} {record.id}\\n".encode())    # answered: the record is committed
        i += 8

for k in range(8):
    threading.Thread(target=writer, args=(k,), daemon=True).start()
threading.Event().wait()
"""


def test_a_writer_killed_during_a_burst_loses_no_answered_record(backend):  # noqa: F811
    kind, store, options, _ = backend
    path, dsn = (options[1], "") if kind == "sqlite" else ("", options[1])
    proc = subprocess.Popen([sys.executable, "-c", WRITER, path, dsn], stdout=subprocess.PIPE)
    answered = {}
    try:
        assert proc.stdout is not None
        while len(answered) < 300:
            line = proc.stdout.readline()
            assert line, "the writer stopped"
            seq, rid = line.decode().split()
            answered[rid] = int(seq)
    finally:
        os.kill(proc.pid, signal.SIGKILL)                      # in the middle of the burst
        proc.wait(timeout=60)
    with proc.stdout:
        for line in proc.stdout.read().decode().splitlines():  # answered before the kill, read after it
            seq, rid = line.split()
            answered[rid] = int(seq)
    store.close()
    report = store.verify()
    assert report.ok and report.count == report.head_seq >= len(answered)
    kept = {r.id: r.seq for r in store.records()}
    assert all(kept.get(rid) == seq for rid, seq in answered.items())   # every answered record, in its place
    assert len(kept) == report.count                                   # none twice


def test_sqlite_writers_queue_on_the_lock_file_and_one_holding_it_holds_the_others(tmp_path, ruleset, cases):  # noqa: F811
    """Writers of any process take the lock file beside the database before SQLite's lock (whose busy
    handler polls with sleeps); a writer holding it keeps every other writer waiting until it lets go."""
    import fcntl

    path = tmp_path / "records.sqlite3"
    store = SqliteStore(path)
    entry = decision_entry("api", cases[0], ruleset.evaluate(cases[0]))
    store.append(entry)
    gate = tmp_path / "records.sqlite3.lock"
    assert gate.exists() and gate.stat().st_mode & 0o777 == 0o600    # beside the record, its owner's only

    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys; f = open(sys.argv[1], 'r+'); fcntl.flock(f, fcntl.LOCK_EX); "
         "print('held', flush=True); sys.stdin.read()", str(gate)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        done = threading.Event()
        worker = threading.Thread(target=lambda: (store.append({**entry, "id": uuid.uuid4().hex}), done.set()))
        worker.start()
        assert not done.wait(0.5)                               # waiting on the other process's lock
    finally:
        assert holder.stdin is not None
        holder.stdin.close()                                    # the holder exits: its lock is released
        holder.wait(timeout=30)
        if holder.stdout is not None:
            holder.stdout.close()
    worker.join(timeout=30)
    assert done.is_set()
    report = store.verify()
    assert report.ok and report.count == 2
    with open(gate, "r+") as f:                                 # nobody holds it once the writes are done
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    store.close()


def test_a_results_canonical_form_is_the_same_bytes_by_either_writer(ruleset):  # noqa: F811
    """The record writes a result's canonical JSON with orjson: the bytes json.dumps writes (the chain's
    hashes depend on them), for results of every kind; a float (which the two write differently)
    falls back to json.dumps."""
    from triage._random_cases import random_valid_cases
    from triage._record_format import ResultData, canonical_member

    cases = [c for d in (0.2, 0.5, 0.9) for c in random_valid_cases(seed=31, n=150, density=d)]
    for case in cases:
        entry = decision_entry("api", case, ruleset.evaluate(case))
        assert type(entry["result"]) is ResultData
        assert canonical_member(entry["result"]) == canonical(dict(entry["result"]))
    data = ResultData(entry["result"], probe=[1e-05, 0.00001, 1e16, -2.5], text="\x1f\u2028é\U0001F600")
    assert canonical_member(data) == canonical(dict(data))
    assert b"1e-05" in canonical_member(data)                    # json.dumps's form, not orjson's 0.00001


def test_a_cases_canonical_form_is_the_same_bytes_by_either_writer(ruleset):  # noqa: F811
    """The recorded case is written by orjson too (keys sorted), the same bytes as json.dumps: cases of
    every density, with and without laboratory values (floats, which fall back to json.dumps)."""
    from triage._random_cases import random_valid_cases
    from triage._record_format import CaseData, canonical_member

    with_float = 0
    for density in (0.1, 0.5, 0.9):
        for case in random_valid_cases(seed=37, n=200, density=density):
            entry = decision_entry("api", case, ruleset.evaluate(case))
            assert type(entry["case"]) is CaseData
            assert canonical_member(entry["case"]) == canonical(dict(entry["case"]))
            with_float += b"." in canonical(dict(entry["case"]))
    assert with_float > 20   # the fallback was taken, not only the fast path
    labs = CaseData({"labs": {"corrected_calcium_mmol_l": 2.61, "platelets_10e9_l": 1e-05}, "b": ["é", 3]})
    assert canonical_member(labs) == canonical(dict(labs)) and b"1e-05" in canonical_member(labs)


@pytest.mark.parametrize("value", ["", "plain", "é\u2028\x1f\"\\/\U0001F600", 0, -7, 2**70, True, False, None, 1.5,
                                   [1, "a"], {"b": 1, "a": 2},
                                   # dicts of strings take orjson's way (a record's ruleset, versions, CDS context)
                                   {}, {"b": "1", "a": "2", "é": "x", "\U0001F600": "y", "\uffff": "z"},
                                   {"hook": "é\u2028\x1f\"\\/", "cards": ["a", "\x00"], "none": []},
                                   {"a": "1", "n": 1.5}, {"a": ["1", 2]}])
def test_a_members_canonical_form_is_canonical(value):
    """Strings and integers take a short way to their canonical form: the same bytes as canonical()."""
    from triage._record_format import canonical_member

    assert canonical_member(value) == canonical(value)


def test_a_lone_surrogate_is_refused_by_the_short_way_too():
    from triage._record_format import canonical_member

    with pytest.raises(UnicodeEncodeError):
        canonical("\ud800")
    with pytest.raises(UnicodeEncodeError):
        canonical_member("\ud800")
    for value in ({"a": "\ud800"}, {"\ud800": "a"}, {"cards": ["\udfff"]}):
        with pytest.raises(UnicodeEncodeError):
            canonical_member(value)


def test_a_results_dump_is_proved_floatless_by_its_schema():
    """The record skips the scan for floats in a result's canonical form because the Result model's
    schema admits none; the proof fails for a model with a float, an untyped value or an untyped list."""
    from typing import Any, Optional

    from pydantic import BaseModel

    from triage._record_format import _no_float, result_dump_is_floatless

    def proved(model: type[BaseModel]) -> bool:
        schema = model.model_json_schema(mode="serialization")
        return _no_float(schema) and all(_no_float(sub) for sub in schema.get("$defs", {}).values())

    class Plain(BaseModel):
        x: int
        y: list[str]
        z: Optional[dict[str, bool]] = None

    class Nested(BaseModel):
        inner: Optional[Plain] = None

    class Floating(BaseModel):
        x: float

    class Either(BaseModel):
        inner: Optional[Plain] = None
        x: int | float = 1

    class Untyped(BaseModel):
        x: dict[str, Any]

    class Listed(BaseModel):
        x: list  # type: ignore[type-arg]

    assert result_dump_is_floatless()
    assert proved(Plain) and proved(Nested)
    assert not any(proved(m) for m in (Floating, Either, Untyped, Listed))

"""Issue 19 ("Hold under attack"), the decision record: prune checkpoints follow rules verify enforces,
a head kept outside the store catches a well-formed forged prune, no prune into the future, and the
SQLite record is private (file 0600, folder 0700). SQLite and a real PostgreSQL, as in test_record.py."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import stat
import uuid

import pytest
from test_record import backend, cases, cli, fill, ruleset  # noqa: F401 - fixtures and helpers
from test_record_pgserver import pg_dsn, pg_server  # noqa: F401 - fixtures

from triage._record import RECORD_FORMAT, SqliteStore, canonical, utc_now


def forge_prune(store, sql, through: int, delete: bool = True, **overrides) -> dict:
    """What someone with write access to the store does: delete records 1..through behind the service's back
    and append, at the head, a checkpoint row that looks like a prune's (``overrides`` change its fields)."""
    head_seq, head_hash = store.head()
    last = store.get(through)
    kept = store.get(through + 1) if through + 1 <= head_seq else None
    body = {"record_format": RECORD_FORMAT, "kind": "checkpoint", "id": uuid.uuid4().hex, "channel": "audit",
            "pruned_before": kept.time if kept else utc_now(), "pruned_count": through, "pruned_from": 1,
            "pruned_through": through, "pruned_hash": last.hash, "seq": head_seq + 1, "prev": head_hash,
            "time": utc_now()}
    body.update(overrides)
    body = {k: v for k, v in body.items() if v is not None}
    digest = hashlib.sha256(canonical(body)).hexdigest()
    store.close()
    if delete:
        sql("DELETE FROM records WHERE seq <= ?", (through,))
    sql("INSERT INTO records (seq, id, time, channel, kind, cards, body, hash) VALUES (?, ?, ?, ?, ?, NULL, ?, ?)",
        (body["seq"], body["id"], body["time"], body["channel"], body["kind"], canonical(body).decode(), digest))
    sql("UPDATE record_head SET seq = ?, hash = ? WHERE id = 1", (body["seq"], digest))
    return {**body, "hash": digest}


def assert_broken(store, options, seq: int, words: str, *extra: str) -> None:
    store.close()
    expect = dict(zip(("expect_head", "expect_count"), (extra[1], int(extra[3])))) if extra else {}
    report = store.verify(**expect)
    assert not report.ok and report.broken.seq == seq and words in report.broken.reason, report.broken
    out = cli("audit", "verify", *extra, *options)
    assert out.exit_code == 1 and f"BROKEN: record {seq}" in out.output and words in out.output, out.output


# ------------------------------------------------------------------------------ the checkpoint's rules

def test_a_prune_checkpoint_holds_its_range_count_and_last_hash(backend, ruleset, cases):  # noqa: F811
    _, store, options, _ = backend
    written = fill(store, ruleset, cases[:10])
    report = store.prune(written[5].time)                                          # records 1-5 go
    body = report.checkpoint.body
    assert (body["pruned_from"], body["pruned_through"], body["pruned_count"]) == (1, 5, 5)
    assert body["pruned_hash"] == written[4].hash and body["pruned_before"] <= body["time"]
    assert report.remaining == 6
    fill(store, ruleset, cases[10:13])
    second = store.prune(store.get(8).time).checkpoint.body                        # 6 and 7: from the old tail
    assert (second["pruned_from"], second["pruned_through"], second["pruned_count"]) == (6, 7, 2)
    assert store.verify().ok and cli("audit", "verify", *options).exit_code == 0


@pytest.mark.parametrize("forgery, seq_of, words", [
    (dict(pruned_count=1), "forged", "range does not hold"),
    (dict(pruned_from=2), "forged", "range does not hold"),
    (dict(pruned_through=99, pruned_count=99), "forged", "range does not hold"),
    (dict(pruned_before="2999-01-01T00:00:00.000000Z"), "forged", "a date in the future"),
    (dict(time="2999-01-01T00:00:00.000000Z"), "forged", "dated in the future"),
    (dict(pruned_hash=None), "forged", "without its range"),
    (dict(pruned_count="5"), "forged", "without its range"),
])
def test_a_forged_checkpoint_that_breaks_the_rules_is_refused(backend, ruleset, cases, forgery, seq_of, words):  # noqa: F811
    _, store, options, sql = backend
    fill(store, ruleset, cases[:10])
    forged = forge_prune(store, sql, 5, **forgery)
    assert_broken(store, options, forged["seq"], words)


def test_a_checkpoint_written_before_pruned_from_is_read_by_its_count(backend, ruleset, cases):  # noqa: F811
    _, store, _, sql = backend
    fill(store, ruleset, cases[:10])
    forge_prune(store, sql, 5, pruned_from=None)
    store.close()
    assert store.verify().ok
    fill(store, ruleset, cases[10:11])
    forge_prune(store, sql, 7, pruned_from=None, pruned_count=7)   # 6-7 said to be 7 records: not from the old tail
    store.close()
    assert not store.verify().ok and "old tail" in store.verify().broken.reason


def test_a_checkpoint_for_records_that_are_still_there_is_refused(backend, ruleset, cases):  # noqa: F811
    _, store, options, sql = backend
    fill(store, ruleset, cases[:10])
    forged = forge_prune(store, sql, 5, delete=False)   # appended, nothing deleted
    assert_broken(store, options, forged["seq"], "is still there")


def test_a_checkpoint_whose_prune_date_should_have_taken_the_records_it_kept(backend, ruleset, cases):  # noqa: F811
    _, store, options, sql = backend
    written = fill(store, ruleset, cases[:10])
    forged = forge_prune(store, sql, 5, pruned_before=written[8].time)    # records 6-8 were older than that
    assert_broken(store, options, forged["seq"], "does not follow its prune")


def test_a_second_forged_prune_must_start_where_the_last_one_ended(backend, ruleset, cases):  # noqa: F811
    _, store, options, sql = backend
    written = fill(store, ruleset, cases[:10])
    store.prune(written[3].time)                                                  # 1-3, checkpoint 11
    forged = forge_prune(store, sql, 6, pruned_from=1, pruned_count=6)           # 4-6, claimed from record 1
    assert_broken(store, options, forged["seq"], "old tail")


# ------------------------------------------------------------------------------ a head kept outside the store

def test_a_well_formed_forged_prune_is_caught_by_the_head_kept_outside(backend, ruleset, cases):  # noqa: F811
    _, store, options, sql = backend
    fill(store, ruleset, cases[:10])
    out = cli("audit", "verify", *options)
    assert out.exit_code == 0
    keep = out.output.strip().splitlines()[-1]
    head_hash = store.head()[1]
    assert keep == f"keep outside the store, to check later: --expect-head {head_hash} --expect-count 10"
    fill(store, ruleset, cases[10:12])                                            # the service carries on
    kept = ["--expect-head", head_hash, "--expect-count", "10"]
    out = cli("audit", "verify", *kept, *options)
    assert out.exit_code == 0 and "the head kept outside the store is in the chain with its count" in out.output
    forge_prune(store, sql, 5)                                                    # well-formed: the chain verifies
    store.close()
    assert store.verify().ok
    assert_broken(store, options, 10, "held 10 records up to the head kept outside the store; it now holds 5",
                  *kept)


def test_a_chain_rewritten_past_the_kept_head_is_refused(backend, ruleset, cases):  # noqa: F811
    _, store, options, sql = backend
    fill(store, ruleset, cases[:6])
    head_seq, head_hash = store.head()
    forge_prune(store, sql, 6)                                                    # everything, the kept head too
    store.close()
    assert store.verify().ok
    report = store.verify(expect_head=head_hash)
    assert not report.ok and "is not in the chain" in report.broken.reason


def test_after_a_prune_the_head_it_prints_is_the_one_to_keep(backend, ruleset, cases):  # noqa: F811
    _, store, options, _ = backend
    written = fill(store, ruleset, cases[:10])
    old = ["--expect-head", store.head()[1], "--expect-count", "10"]
    out = cli("audit", "prune", "--before", written[5].time, *options)
    assert out.exit_code == 0
    keep = out.output.strip().splitlines()[-1].split(": ", 1)[1].split()
    assert keep == ["--expect-head", store.head()[1], "--expect-count", "6"]
    assert cli("audit", "verify", *old, *options).exit_code == 1                 # a prune needs a new kept head
    assert cli("audit", "verify", *keep, *options).exit_code == 0


def test_expect_options_are_checked(backend):
    _, store, options, _ = backend
    assert store.verify().count == 0                            # the store exists, its chain is empty
    assert cli("audit", "verify", "--expect-count", "3", *options).exit_code == 2
    assert cli("audit", "verify", "--expect-head", "abc", *options).exit_code == 2
    assert cli("audit", "verify", "--expect-head", "0" * 64, *options).exit_code == 1   # an empty chain holds none


# ------------------------------------------------------------------------------ no prune into the future

def test_prune_refuses_a_future_date_and_the_store_never_writes_one(backend, ruleset, cases):  # noqa: F811
    _, store, options, _ = backend
    fill(store, ruleset, cases[:4])
    tomorrow = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)).date().isoformat()
    out = cli("audit", "prune", "--before", tomorrow, *options)
    assert out.exit_code == 2 and "in the future" in out.output
    assert store.count() == 4
    checkpoint = store.prune("2999-01-01").checkpoint.body                       # the core: the same records as now
    assert checkpoint["pruned_before"] <= checkpoint["time"] and checkpoint["pruned_count"] == 4
    assert store.verify().ok


# ------------------------------------------------------------------------------ a private file

def test_the_sqlite_record_is_created_private(tmp_path, ruleset, cases):  # noqa: F811
    folder = tmp_path / "new" / "mscc-triage"
    store = SqliteStore(folder / "records.sqlite3")
    fill(store, ruleset, cases[:2])
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    for path in folder.iterdir():                                                # the WAL files too
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    store.close()
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    other = SqliteStore(shared / "records.sqlite3")
    fill(other, ruleset, cases[:1])
    assert stat.S_IMODE(os.stat(shared).st_mode) == 0o755                        # an existing folder keeps its mode
    assert stat.S_IMODE(os.stat(shared / "records.sqlite3").st_mode) == 0o600
    other.close()


def test_health_is_a_committed_write_that_changes_nothing(backend, ruleset, cases, tmp_path):  # noqa: F811
    """Operator audit: a probe rolled back never reached the disk, and said ok on a full or read-only
    disk while every record failed. The probe now commits (the head row onto itself)."""
    kind, store, _, _ = backend
    fill(store, ruleset, cases[:2])
    head = store.head()
    if kind == "sqlite":
        import sqlite3

        watcher = sqlite3.connect(store.path)
        before = watcher.execute("PRAGMA data_version").fetchone()[0]
    assert store.health() is None and store.head() == head and store.count() == 2 and store.verify().ok
    if kind == "sqlite":
        assert watcher.execute("PRAGMA data_version").fetchone()[0] != before   # another connection committed
        watcher.close()
    (tmp_path / "blocker").write_text("")
    broken = SqliteStore(tmp_path / "blocker" / "records.sqlite3")
    assert "cannot be written" in broken.health()


def test_a_record_file_removed_under_a_running_store_is_refused_never_recreated_in_silence(ruleset, cases, tmp_path):
    """Operator audit: after 'rm records.sqlite3*' under a running server, answers were given whose
    records went to the deleted file, or to a new empty chain, and /healthz said ok."""
    import sqlite3

    from triage._record import RecordUnavailable

    path = tmp_path / "data" / "records.sqlite3"
    store, other = SqliteStore(path), SqliteStore(path)   # two workers' stores
    fill(store, ruleset, cases[:2])
    fill(other, ruleset, cases[2:3])
    backup = tmp_path / "backup.sqlite3"
    with sqlite3.connect(path) as source, sqlite3.connect(backup) as copy:
        source.backup(copy)
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / "data" / f"records.sqlite3{suffix}").unlink(missing_ok=True)
    for each in (store, other):
        with pytest.raises(RecordUnavailable, match="was removed while in use"):
            fill(each, ruleset, cases[3:4])
        assert "was removed while in use" in each.health()
    assert not path.exists()   # no new empty chain begun behind the operator's back
    os.replace(backup, path)   # restored: each store writes on into the restored file
    fill(store, ruleset, cases[3:4])
    fill(other, ruleset, cases[4:5])
    assert store.health() is None
    report = SqliteStore(path).verify()
    assert report.ok and report.count == 5
    store.close()
    other.close()


def test_a_claimed_record_file_is_never_made_again_by_a_store_that_had_not_opened_it(ruleset, cases, tmp_path):
    """What a worker forked from the server's master inherits: the master claimed the file (made it, empty)
    and opened no connection; the file removed, the worker's first write is refused, no file is made."""
    from triage._record import RecordUnavailable

    path = tmp_path / "data" / "records.sqlite3"
    master = SqliteStore(path)
    master.claim()
    assert path.exists() and path.stat().st_size == 0 and (path.stat().st_mode & 0o777) == 0o600
    assert (path.parent.stat().st_mode & 0o777) == 0o700
    path.unlink()
    with pytest.raises(RecordUnavailable, match="was removed while in use"):
        fill(master, ruleset, cases[:1])
    assert not path.exists()
    (tmp_path / "a-file").write_text("")
    blocked = SqliteStore(tmp_path / "a-file" / "records.sqlite3")
    blocked.claim()   # cannot be made: left to the first write, which says so
    assert "cannot be written" in blocked.health()
    claimed = SqliteStore(tmp_path / "fresh" / "records.sqlite3")
    claimed.claim()
    fill(claimed, ruleset, cases[:2])   # an empty file is an empty database
    assert SqliteStore(tmp_path / "fresh" / "records.sqlite3").verify().count == 2


# ------------------------------------------------------------------------------ audit of 5 December (third round)

def test_the_cards_column_is_checked_against_the_hashed_body(backend, ruleset, cases):  # noqa: F811
    """The card uuid column (what 'audit show <card uuid>' and feedback look up) was not compared with the
    hashed body: rewriting it still verified 'ok', and lookups by card then failed or found another record."""
    from triage._record import CdsContext

    _, store, options, sql = backend
    fill(store, ruleset, cases[:3])
    for n in (1, 2):
        store.record_decision("cds", cases[n], ruleset.evaluate(cases[n]), cds=CdsContext(f"hook-{n}", (f"card-{n}",)))
    assert store.verify().ok
    store.close()
    sql("UPDATE records SET cards = ? WHERE seq = ?", ("card-2", 4))
    assert_broken(store, options, 4, "cards column")
    sql("UPDATE records SET cards = ? WHERE seq = ?", ("card-1", 4))
    sql("UPDATE records SET cards = NULL WHERE seq = ?", (5,))
    assert_broken(store, options, 5, "cards column")


def test_a_damaged_record_is_named_and_nothing_partial_is_exported(backend, ruleset, cases):  # noqa: F811
    """A record whose content is not JSON made export (after printing the records before it), replay,
    show and impact end in a traceback; export also printed a chain that did not verify."""
    _, store, options, sql = backend
    fill(store, ruleset, cases[:6])
    store.close()
    sql("UPDATE records SET body = substr(body, 1, 100) WHERE seq = ?", (4,))
    out = cli("audit", "export", *options)
    assert out.exit_code == 1 and "BROKEN: record 4" in out.output and '"hash"' not in out.output, out.output
    out = cli("audit", "show", "4", *options)
    assert out.exit_code == 1 and "record 4 is damaged" in out.output and "Traceback" not in out.output, out.output
    out = cli("audit", "replay", "-j", "1", *options)
    assert out.exit_code == 1 and "record 4" in out.output and "Traceback" not in out.output, out.output
    assert cli("audit", "show", "3", *options).exit_code == 0   # the others are still read

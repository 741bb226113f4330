"""Issue 19: a PostgreSQL restart costs the decision record no failed request, and a retry never writes a
record twice. A real server (test_record_pgserver.py), restarted on the same port; no mock."""

from __future__ import annotations

import threading
import time

import pytest
from test_record import fill  # noqa: F401 - helpers
from test_record_pgserver import PgServer

import triage
from triage._random_cases import random_valid_cases
from triage._record import PostgresStore


@pytest.fixture(scope="module")
def ruleset():
    return triage.default_ruleset()


@pytest.fixture(scope="module")
def cases():
    return list(random_valid_cases(19, 30))


@pytest.fixture
def server():
    pg = PgServer()       # its own server: the test restarts it
    try:
        yield pg
    finally:
        pg.close()


def test_after_a_restart_the_next_writes_and_reads_succeed(server, ruleset, cases):
    store = PostgresStore(server.database(), connect_timeout=3)
    try:
        fill(store, ruleset, cases[:3])
        errors: list[BaseException] = []
        barrier = threading.Barrier(5)   # four writers and this thread

        def writer(offset: int) -> None:   # four threads, each with its own pooled connection
            try:
                fill(store, ruleset, cases[3 + offset:4 + offset])
                barrier.wait(timeout=60)    # every thread's connection is open before the restart ...
                barrier.wait(timeout=60)    # ... and used again after it
                fill(store, ruleset, cases[10 + offset:12 + offset])
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        barrier.wait(timeout=60)
        server.stop()                       # pg_ctl stop -m immediate, then start on the same port
        server.start()
        barrier.wait(timeout=60)
        for t in threads:
            t.join(timeout=120)
        written = fill(store, ruleset, cases[20:22])    # this thread's pooled connection died too
        assert not errors, errors
        assert written[-1].seq == 3 + 4 + 8 + 2
        server.stop()
        server.start()
        assert store.count() == 17                      # a read on a dead pooled connection
        server.stop()
        server.start()
        report = store.verify()
        assert report.ok and report.count == 17 and report.head_seq == 17
        assert len({r.id for r in store.records()}) == 17    # no record written twice
    finally:
        store.close()


def test_a_connection_lost_inside_the_transaction_is_retried_once_and_writes_once(server, ruleset, cases):
    import psycopg

    dsn = server.database()
    store = PostgresStore(dsn, connect_timeout=3)
    try:
        fill(store, ruleset, cases[:2])
        holder = psycopg.connect(dsn)                 # another writer holds the head's row lock
        holder.execute("SELECT seq FROM record_head WHERE id = 1 FOR UPDATE")
        done: list[object] = []

        def write() -> None:
            try:
                done.append(fill(store, ruleset, cases[2:3]))
            except BaseException as exc:  # noqa: BLE001 - reported below
                done.append(exc)

        thread = threading.Thread(target=write)
        with psycopg.connect(dsn, autocommit=True) as admin:
            (mine,) = admin.execute("SELECT pg_backend_pid()").fetchone()
            (held,) = [holder.info.backend_pid]
            thread.start()
            waiting = []
            for _ in range(300):                      # the store's connection waits for the lock ...
                waiting = admin.execute("SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                        "AND datname = current_database()").fetchall()
                if waiting:
                    break
                time.sleep(0.05)
            assert waiting, "the store never waited for the row lock"
            # ... inside its transaction, before COMMIT: the server ends that connection
            admin.execute("SELECT pg_terminate_backend(%s)", (waiting[0][0],))
            assert waiting[0][0] not in (mine, held)
            time.sleep(0.2)
        holder.rollback()                             # the retry, on a new connection, gets the lock
        holder.close()
        thread.join(timeout=60)
        assert done and isinstance(done[0], list), done     # no error reached the caller
        assert done[0][0].seq == 3
        report = store.verify()
        assert report.ok and report.count == 3        # written once
    finally:
        store.close()


def test_a_statement_refused_by_a_live_server_is_not_retried(server, ruleset, cases):
    dsn = server.database()
    store = PostgresStore(dsn, connect_timeout=3)
    try:
        fill(store, ruleset, cases[:1])
        name = dsn.split("dbname=")[1].split()[0]
        server.execute(server.dsn(), f"ALTER DATABASE {name} SET default_transaction_read_only = on")
        store.close()
        with pytest.raises(triage.RecordUnavailable, match="read-only"):
            fill(store, ruleset, cases[1:2])
        server.execute(server.dsn(), f"ALTER DATABASE {name} SET default_transaction_read_only = off")
        store.close()
        fill(store, ruleset, cases[1:2])
        assert store.verify().ok and store.count() == 2
    finally:
        store.close()

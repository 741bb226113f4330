"""The CDS Hooks store: JWT ids already seen, card feedback, cards issued, the form's prefill tokens.

One store for all the workers of a server, never patient data (card ids, outcomes, counts; the
prefill answers are findings without identifiers, kept 30 minutes):

- SQLite (``CDS_STORE_PATH``, a file per server) by default, in WAL mode with ``synchronous = NORMAL``:
  a write survives the server's processes being killed, and a power cut may lose the last writes,
  which this store can afford (it keeps no decision: the decision record does, with an fsync per
  commit): a card's type (its feedback then counts under ``unknown``), a prefill token (the link
  opens an empty form), a JWT id (that token could be replayed until its ``exp``, at most 5 minutes
  after it was issued, and only across the power cut). Each block takes a lock file beside the
  store (``cds.sqlite3.lock``, ``flock``) so the workers queue for it instead of polling in SQLite's
  busy handler;
- PostgreSQL when the decision record is in PostgreSQL (``RECORD_DSN`` / ``MSCC_RECORD_DSN``): then
  every server behind a load balancer shares one store, so a JWT replayed to another server is
  still refused and feedback lands in one place.

Any failure of the store becomes :class:`StoreUnavailable` (503 with the reason); a unique key
violated (a replayed ``jti``) becomes :class:`Duplicate`.

PostgreSQL connections are kept, one per thread and process, and checked each time one is handed out
(:func:`_alive`, no round trip): a server that went away (restarted) has closed their sockets, so a
kept socket that reads as ready holds the end of the connection, and a new connection replaces it.
A database restart thus costs no failed request. A block is not retried (it may have committed part
of its work, on an autocommit connection); a connection that dies silently between the check and its
use fails that one request (503), and the next reconnects.
"""

from __future__ import annotations

import logging
import os
import select
import sqlite3
import threading
import time
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, Iterator, Optional, Sequence

import triage
from flask import Flask

from ..problems import ApiProblem, unavailable

log = logging.getLogger("mscc_triage.api")

SQLITE_STATES = {"SQLITE_READONLY": "read-only", "SQLITE_FULL": "full",
                 "SQLITE_CANTOPEN": "missing or cannot be opened", "SQLITE_BUSY": "busy", "SQLITE_LOCKED": "busy",
                 "SQLITE_IOERR": "failing (input/output error)", "SQLITE_CORRUPT": "corrupt",
                 "SQLITE_NOTADB": "not a SQLite database", "SQLITE_PERM": "not writable (permission denied)"}

# The tables, in SQL both SQLite and PostgreSQL read ("DOUBLE PRECISION": seconds since the epoch).
TABLES = (
    "CREATE TABLE IF NOT EXISTS jti (iss TEXT, jti TEXT, exp DOUBLE PRECISION, PRIMARY KEY (iss, jti))",
    "CREATE TABLE IF NOT EXISTS prefill (token TEXT PRIMARY KEY, answers TEXT, expires DOUBLE PRECISION)",
    "CREATE TABLE IF NOT EXISTS card (card TEXT PRIMARY KEY, indicator TEXT, issued DOUBLE PRECISION)",
    "CREATE TABLE IF NOT EXISTS health (id INTEGER PRIMARY KEY, at DOUBLE PRECISION)",
)
FEEDBACK = {  # feedback keeps its arrival order: SQLite's rowid, PostgreSQL's own sequence
    "sqlite": "CREATE TABLE IF NOT EXISTS feedback (received DOUBLE PRECISION, card TEXT, outcome TEXT, "
              "accepted INTEGER, override TEXT)",
    "postgres": "CREATE TABLE IF NOT EXISTS feedback (seq BIGSERIAL PRIMARY KEY, received DOUBLE PRECISION, "
                "card TEXT, outcome TEXT, accepted INTEGER, override TEXT)",
}


class StoreUnavailable(ApiProblem):
    """The CDS store cannot be used: 503 with the reason."""

    def __init__(self, reason: str):
        super().__init__(503, "Service Unavailable")
        self.reason = reason
        self.response = unavailable(f"The CDS Hooks store is {reason}; nothing was recorded. "
                                    "The operator has been told (see /healthz).", "urn:mscc-triage:problem:cds-store")


class Duplicate(Exception):
    """A unique key is already there (a JWT id seen before)."""


class Connection:
    """The few operations the CDS service needs, the same on SQLite and PostgreSQL (``?`` placeholders)."""

    def __init__(self, raw: Any, kind: str):
        self.raw, self.kind = raw, kind
        self.order = "rowid" if kind == "sqlite" else "seq"   # the feedback's arrival order

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.raw.execute(sql if self.kind == "sqlite" else sql.replace("?", "%s"), tuple(params))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if self.kind == "sqlite":
            self.raw.executemany(sql, rows)
        else:
            with self.raw.cursor() as cursor:
                cursor.executemany(sql.replace("?", "%s"), rows)

    def begin(self) -> None:
        self.execute("BEGIN IMMEDIATE" if self.kind == "sqlite" else "BEGIN")

    def commit(self) -> None:
        self.execute("COMMIT")

    def rollback(self) -> None:
        self.execute("ROLLBACK")


def _dsn(app: Flask) -> Optional[str]:
    return app.config.get("RECORD_DSN") or None


# ------------------------------------------------------------------------------ SQLite

def _sqlite_reason(exc: sqlite3.Error) -> str:
    name = getattr(exc, "sqlite_errorname", "") or ""
    for prefix, reason in SQLITE_STATES.items():
        if name == prefix or name.startswith(prefix + "_"):
            return reason
    return "failing"


def connect_sqlite(path: str) -> sqlite3.Connection:
    """Open the SQLite store (``CDS_STORE_PATH``: a file, or a SQLite ``file:`` URI), in WAL mode.

    A new file is made readable by its owner only (0600), as the decision record is: it holds JWT ids
    and clinicians' card feedback. SQLite gives its WAL and shared-memory files the same mode."""
    if not path.startswith("file:") and path != ":memory:" and not os.path.exists(path):
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except OSError:   # another process made it first; or it cannot be made: SQLite says why, below
            pass
    raw = sqlite3.connect(path, timeout=5, isolation_level=None, uri=path.startswith("file:"))
    try:
        if raw.execute("PRAGMA journal_mode").fetchone()[0] not in ("wal", "memory"):
            raw.execute("PRAGMA journal_mode = WAL")   # kept by the file: once per store
        raw.execute("PRAGMA synchronous = NORMAL")
    except BaseException:
        raw.close()
        raise
    return raw


_LOCK_FILES: dict[str, triage.LockFile] = {}   # store path -> its lock file (each process opens its own)
_LOCK_FILES_LOCK = threading.Lock()


def _gated(path: str) -> AbstractContextManager[Any]:
    """The store's lock file held (none for a ``file:`` URI or an in-memory store: SQLite's lock then
    serialises the workers)."""
    if path.startswith("file:") or path == ":memory:":
        return nullcontext()
    with _LOCK_FILES_LOCK:
        lock = _LOCK_FILES.get(path)
        if lock is None:
            lock = _LOCK_FILES[path] = triage.LockFile(f"{path}.lock")
    return lock.held()


_SQ = threading.local()   # one SQLite connection per thread, process and store, kept open
_KEPT_SQLITE = 4          # per thread, the oldest closed first


def _sqlite_connection(path: str) -> sqlite3.Connection:
    """This thread's connection to the store, its tables made when it was opened. Kept open: the last
    connection to a WAL database to close checkpoints it (an fsync), which closing after each block did."""
    key = (os.getpid(), path)
    conns = getattr(_SQ, "conns", None)
    if conns is None:
        conns = _SQ.conns = {}
    raw = conns.get(key)
    if raw is None:
        while len(conns) >= _KEPT_SQLITE:   # a server uses one store; tests and tools make many
            _forget_sqlite(next(iter(conns))[1])
        raw = connect_sqlite(path)
        try:
            for statement in (*TABLES, FEEDBACK["sqlite"]):
                raw.execute(statement)
        except BaseException:
            raw.close()
            raise
        conns[key] = raw
    return raw


def _forget_sqlite(path: str) -> None:
    """Close and drop this thread's connection to ``path``: the next block opens a new one."""
    raw = getattr(_SQ, "conns", {}).pop((os.getpid(), path), None)
    if raw is not None:
        try:
            raw.close()
        except sqlite3.Error:
            pass


@contextmanager
def _sqlite(app: Flask) -> Iterator[Connection]:
    path = app.config["CDS_STORE_PATH"]
    with _gated(path):
        raw: Optional[sqlite3.Connection] = None
        try:
            raw = _sqlite_connection(path)
            yield Connection(raw, "sqlite")
        except sqlite3.IntegrityError:
            raise Duplicate() from None
        except sqlite3.Error as exc:
            _forget_sqlite(path)
            raw = None
            reason = _sqlite_reason(exc)
            log.error("CDS store %s is %s: %s", path, reason, exc)
            raise StoreUnavailable(reason) from None
        finally:
            if raw is not None and raw.in_transaction:   # a block that did not commit: rolled back
                try:
                    raw.rollback()
                except sqlite3.Error:
                    _forget_sqlite(path)


# ------------------------------------------------------------------------------ PostgreSQL

_PG = threading.local()      # one connection per thread and process; tables made once per process
_PG_READY: set[tuple[int, str]] = set()
_PG_LOCK = threading.Lock()


def _pg_reason(exc: Exception) -> str:
    failure = triage.postgres_failure(exc)   # the record's words: never the server's address
    return failure if failure in ("read-only", "full") else f"{failure} (PostgreSQL)"


def _forget(dsn: str) -> None:
    """Drop this thread's connection to ``dsn`` (closed), so the next use reconnects."""
    conns = getattr(_PG, "conns", {})
    conn = conns.pop((os.getpid(), dsn), None)
    if conn is not None:
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - already broken
            pass


def _alive(conn: Any) -> bool:
    """A kept, idle connection is still open at both ends. Nothing is sent: an idle connection's socket
    has nothing to read unless the server closed it (its last message, then the end), so a socket that
    reads as ready is drained and the connection's state read."""
    import psycopg

    if conn.closed or conn.broken:
        return False
    try:
        poller = select.poll()   # poll, not select: no limit on the descriptor's number
        poller.register(conn.fileno(), select.POLLIN)
        for _ in range(8):   # a parameter change or a notice at most, then the end of the connection
            if not poller.poll(0):
                return True
            conn.pgconn.consume_input()
            if conn.pgconn.status != psycopg.pq.ConnStatus.OK:
                return False
    except (psycopg.Error, OSError, ValueError):
        return False
    return False


def _pg_connection(dsn: str) -> Any:
    import psycopg

    key = (os.getpid(), dsn)
    if not hasattr(_PG, "conns"):
        _PG.conns = {}
    conn = _PG.conns.get(key)
    if conn is None or not _alive(conn):
        _forget(dsn)
        conn = _PG.conns[key] = psycopg.connect(dsn, autocommit=True, connect_timeout=5)
    with _PG_LOCK:
        if key not in _PG_READY:
            for statement in (*TABLES, FEEDBACK["postgres"]):
                conn.execute(statement)
            _PG_READY.add(key)
    return conn


@contextmanager
def _postgres(dsn: str) -> Iterator[Connection]:
    import psycopg

    try:
        raw = _pg_connection(dsn)
    except psycopg.Error as exc:
        _forget(dsn)
        log.error("CDS store (PostgreSQL) is %s: %s", _pg_reason(exc), type(exc).__name__)
        raise StoreUnavailable(_pg_reason(exc)) from None
    connection = Connection(raw, "postgres")
    try:
        yield connection
    except psycopg.errors.UniqueViolation:
        _settle(raw, dsn)
        raise Duplicate() from None
    except psycopg.Error as exc:
        _settle(raw, dsn)
        if raw.closed or isinstance(exc, psycopg.OperationalError):
            _forget(dsn)
        log.error("CDS store (PostgreSQL) is %s: %s", _pg_reason(exc), type(exc).__name__)
        raise StoreUnavailable(_pg_reason(exc)) from None
    finally:
        _settle(raw, dsn)


def _settle(raw: Any, dsn: str) -> None:
    """Leave no transaction open on a connection that is kept (a block that did not commit rolls back)."""
    try:
        if not raw.closed and raw.info.transaction_status != 0:   # 0: idle
            raw.execute("ROLLBACK")
    except Exception:  # noqa: BLE001 - a broken connection is replaced on next use
        _forget(dsn)


# ------------------------------------------------------------------------------ one way in

@contextmanager
def store(app: Flask) -> Iterator[Connection]:
    """A connection to the CDS store (PostgreSQL when the record is there, else SQLite).

    A block that begins a transaction and does not commit it is rolled back."""
    dsn = _dsn(app)
    with (_postgres(dsn) if dsn else _sqlite(app)) as conn:
        yield conn


def store_health(app: Flask) -> Optional[str]:
    """None when the store can be written, else why not: a real write to its own row, committed (one
    rolled back never reaches the disk, and said ok on a full or read-only disk: operator audit)."""
    try:
        with store(app) as conn:
            conn.begin()
            conn.execute("INSERT INTO health (id, at) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET at = excluded.at",
                         (time.time(),))
            conn.commit()
    except StoreUnavailable as exc:
        return exc.reason
    return None

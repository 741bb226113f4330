"""The PostgreSQL record store (psycopg 3): one record shared by several servers.

Each thread of each process keeps one connection, opened on first use. A PostgreSQL restart closes
them all; the next write or read on such a pooled connection fails at once ("server closed the
connection"). So that a restart costs no failed request, that call is retried once, on a new
connection, and only in this case (:meth:`RecordStore._write`):

- the connection (usually one kept from an earlier call) is found lost: closed, broken, or ended by a
  FATAL error such as the server's shutdown notice; not a statement refused on a live connection
  (read-only, disk full: 503 at once), nor a connection that cannot be opened (the server is down: 503);
- COMMIT had not been sent. A transaction whose connection is lost before its COMMIT is never
  committed (PostgreSQL aborts it), so the retry, which takes the row lock and reads the head
  afresh, writes each record exactly once and the chain stays linear.

A failure at or after COMMIT is not retried: the commit may have happened with its answer lost, and a
retry could write the decision twice. That request is answered 503 (never unrecorded); its record may
still be in the chain, which the promise allows (no decision is answered unrecorded; a record whose
answer was lost is harmless). Making the append idempotent instead (look the id up after an unknown
commit) was weighed and left out: the window is one round trip at COMMIT, against more code on every
write path. Reads are always safe to retry. And ``id`` is unique in the table: no retry, right or
wrong, could store one decision twice.

A group of records (:meth:`RecordStore.append`, group commit) is one transaction: its rows are sent
in one pipeline (one round trip), then one COMMIT.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Sequence

from ._errors import RecordUnavailable
from ._record_format import GENESIS
from ._record_store import RecordStore

_log = logging.getLogger("mscc_triage.record")


class PostgresStore(RecordStore):
    """PostgreSQL (psycopg 3): one record shared by several servers; writers serialised by a row lock."""

    _ph = "%s"

    def __init__(self, dsn: str, connect_timeout: int = 5):
        super().__init__()
        try:
            import psycopg  # noqa: F401
        except ModuleNotFoundError:
            raise RecordUnavailable("MSCC_RECORD_DSN is set but psycopg is not installed: "
                                    "pip install 'mscc-triage[postgres]'") from None
        self.dsn = dsn
        self.connect_timeout = connect_timeout
        self.url = "postgresql:" + _redact(dsn)

    def _errors(self) -> tuple[type[BaseException], ...]:
        import psycopg

        return (psycopg.Error, OSError)

    def _connect(self) -> Any:
        import psycopg

        conn = psycopg.connect(self.dsn, connect_timeout=self.connect_timeout, autocommit=False)
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(715017)")   # one schema creator at a time
                conn.execute("CREATE TABLE IF NOT EXISTS records (seq BIGINT PRIMARY KEY, id TEXT NOT NULL UNIQUE, "
                             "time TEXT NOT NULL, channel TEXT NOT NULL, kind TEXT NOT NULL, cards TEXT, "
                             "body TEXT NOT NULL, hash TEXT NOT NULL)")
                conn.execute("CREATE INDEX IF NOT EXISTS records_time ON records (time)")
                conn.execute("CREATE TABLE IF NOT EXISTS record_head (id INTEGER PRIMARY KEY CHECK (id = 1), "
                             "seq BIGINT NOT NULL, hash TEXT NOT NULL)")
                conn.execute("INSERT INTO record_head VALUES (1, 0, %s) ON CONFLICT (id) DO NOTHING", (GENESIS,))
                conn.execute("CREATE TABLE IF NOT EXISTS record_probe (id INTEGER PRIMARY KEY CHECK (id = 1), "
                             "at TEXT NOT NULL)")   # what the health probe writes (never the chain)
            conn.commit()
        except BaseException:
            conn.close()
            raise
        return conn

    def _lost(self, conn: Any, exc: BaseException) -> bool:
        # A FATAL error (the server shutting down: "terminating connection due to administrator command")
        # ends the session; the socket may not show it closed yet.
        diag = getattr(exc, "diag", None)
        fatal = diag is not None and diag.severity_nonlocalized in ("FATAL", "PANIC")
        return bool(conn.closed or conn.broken or fatal)

    def _reason(self, exc: BaseException) -> str:
        """Why, in words an API client may read: never the server's address or its own message (an
        operator audit found host and port in 503 bodies); those go to the operator's log."""
        _log.error("decision record (PostgreSQL): %s: %s", type(exc).__name__, super()._reason(exc))
        failure = postgres_failure(exc)
        return f"the PostgreSQL record is {failure}" + ("" if failure in ("read-only", "full")
                                                        else " (see the service's log)")

    def _executemany(self, conn: Any, sql: str, rows: list[tuple[Any, ...]]) -> None:
        with conn.cursor() as cursor:     # psycopg sends the rows in one pipeline: one round trip
            cursor.executemany(sql, rows)

    def _begin_locked(self, conn: Any) -> tuple[int, str]:
        # psycopg opens the transaction with the first statement; the row lock excludes every other writer
        # (any connection, any server) until commit, and they then read the new head.
        seq, digest = conn.execute("SELECT seq, hash FROM record_head WHERE id = 1 FOR UPDATE").fetchone()
        return seq, digest

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        rows = super()._read(sql, params)
        try:
            conn = getattr(self._local, "conn", None)
            if conn is not None:
                conn.rollback()   # end the read transaction: no idle transaction holds a snapshot
        except Exception:  # noqa: BLE001
            self._drop_conn()
        return rows


def _redact(dsn: str) -> str:
    return re.sub(r"(password=)\S+", r"\1***", re.sub(r"(://[^:/@]+:)[^@]+@", r"\1***@", dsn))


def postgres_failure(exc: BaseException) -> str:
    """What failed in a PostgreSQL store, in words a client may read (never the server's address or its
    own message): read-only, full, unreachable or failing (the connection), or failing."""
    try:
        import psycopg
    except ImportError:   # no PostgreSQL client installed: nothing of it can have failed in particular
        return "failing"
    if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
        return "read-only"
    if isinstance(exc, psycopg.errors.DiskFull):
        return "full"
    if isinstance(exc, psycopg.OperationalError):
        return "unreachable or failing"
    return "failing"

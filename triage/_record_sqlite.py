"""The SQLite record store: the embedded default, one file shared by the threads and processes of one host.

WAL mode with ``synchronous = FULL``: a commit returns once the WAL is on disk (fsync), so a decision
answered after its record was written survives a crash or a power cut. Group commit
(:meth:`RecordStore.append`) shares that fsync among the threads of a process that record at once;
``synchronous = NORMAL`` (no fsync per commit, records lost on a power cut) was measured and not
chosen (README, the decision record).

Writers queue on a lock file beside the database (``records.sqlite3.lock``, :class:`._lockfile.LockFile`)
before ``BEGIN IMMEDIATE``, not in SQLite's polling busy handler (under load, most of the tail latency).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from ._lockfile import LockFile
from ._record_format import GENESIS
from ._record_store import RecordStore


class SqliteStore(RecordStore):
    """SQLite, WAL mode: the embedded default; safe for the threads and worker processes of one host."""

    _ph = "?"

    def __init__(self, path: str | os.PathLike[str]):
        super().__init__()
        self.path = Path(path)
        self.url = f"sqlite:{self.path}"
        self._lock_file = LockFile(f"{self.path}.lock")
        # The file each connection opened (st_dev, st_ino), by the connection's id: a connection to a
        # file removed or replaced since writes where no one reads (operator audit: 426 answers whose
        # records were lost, on a file deleted under a running server).
        self._files: dict[int, tuple[int, int]] = {}
        self._had_file = False   # once this store has opened its file, it never makes a new empty one

    def _errors(self) -> tuple[type[BaseException], ...]:
        return (sqlite3.Error, OSError)

    def _write_gate(self) -> AbstractContextManager[Any]:
        return self._lock_file.held()

    def close(self) -> None:
        super().close()
        self._lock_file.close()

    _setup_lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        # Switching a new file to WAL can answer "locked" at once (no busy wait) while another
        # connection does the same: set-up is serialised in this process and retried across processes.
        for attempt in range(5):
            try:
                with self._setup_lock:
                    return self._open_connection()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 4:
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover

    def _open_connection(self) -> sqlite3.Connection:
        # The record holds clinical findings: a folder of its own only its owner can enter (0700), a file
        # only its owner can read (0600; SQLite gives its WAL and shared-memory files the same mode).
        # A folder that already exists (chosen by the operator) keeps its mode.
        if not self.path.exists() and self._had_file:
            self._identity()   # raises _FileGone: a new empty file would begin another chain in silence
        self._make_file()
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        try:
            self._files[id(conn)] = self._identity()
        except BaseException:
            conn.close()
            raise
        self._had_file = True
        try:
            conn.execute("PRAGMA busy_timeout = 30000")
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("CREATE TABLE IF NOT EXISTS records (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, "
                         "time TEXT NOT NULL, channel TEXT NOT NULL, kind TEXT NOT NULL, cards TEXT, "
                         "body TEXT NOT NULL, hash TEXT NOT NULL)")
            conn.execute("CREATE INDEX IF NOT EXISTS records_time ON records (time)")
            conn.execute("CREATE TABLE IF NOT EXISTS record_head (id INTEGER PRIMARY KEY CHECK (id = 1), "
                         "seq INTEGER NOT NULL, hash TEXT NOT NULL)")
            conn.execute("INSERT OR IGNORE INTO record_head VALUES (1, 0, ?)", (GENESIS,))
            conn.execute("CREATE TABLE IF NOT EXISTS record_probe (id INTEGER PRIMARY KEY CHECK (id = 1), "
                         "at TEXT NOT NULL)")   # what the health probe writes (never the chain)
            conn.execute("COMMIT")
        except BaseException:
            conn.close()
            raise
        return conn

    def claim(self) -> None:
        """Make the record's folder (0700) and an empty file (0600, which SQLite reads as an empty
        database) unless they exist, and remember that the file existed: a worker forked after this
        refuses to make a new one (503) when it has been removed. A folder or file that cannot be made
        is left to the first write, which reports it (503, /healthz) as it always did."""
        try:
            self._make_file()
        except OSError:
            return
        self._had_file = True

    def _make_file(self) -> None:
        """The record's folder (0700) and an empty file (0600), unless they exist."""
        if not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.path.exists():
            try:
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            except FileExistsError:   # another process made it first
                pass

    def _identity(self) -> tuple[int, int]:
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            raise _FileGone(f"the record file {self.path} was removed while in use: restore it, or restart the "
                            "service to begin a new record") from None
        return info.st_dev, info.st_ino

    def _lost(self, conn: Any, exc: BaseException) -> bool:
        return isinstance(exc, _FileReplaced)   # a new connection opens the file now at the path

    def _begin_locked(self, conn: sqlite3.Connection) -> tuple[int, str]:
        if self._files.get(id(conn)) != self._identity():
            raise _FileReplaced(f"the record file {self.path} was replaced while in use")
        conn.execute("BEGIN IMMEDIATE")   # the database's write lock, held until commit: one writer at a time
        seq, digest = conn.execute("SELECT seq, hash FROM record_head WHERE id = 1").fetchone()
        return seq, digest


class _FileGone(sqlite3.OperationalError):
    """The record file is no longer at its path."""


class _FileReplaced(sqlite3.OperationalError):
    """Another file is at the record's path than the one this connection opened."""

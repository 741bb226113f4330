"""The decision record: every evaluation served, kept append-only in a tamper-evident chain.

A record is one JSON object (record-format 1)::

    {"record_format": 1, "kind": "decision", "seq": 7, "id": "<request id, uuid4 hex>",
     "time": "2026-11-29T16:04:56.123456Z", "channel": "api" | "cds" | "form",
     "case": {...the case as sent, validated, fields that are null left out, no case_id...},
     "result": {...the result (result-format 2.2), case_id removed...},
     "ruleset": {"name", "version", "sha256"},
     "versions": {"mscc-triage", "durable-rules", "pydantic", "python"},
     "cds": {"hook_instance", "cards": [uuid, ...], "iss", "sub"}  (CDS Hooks only, else absent),
     "prev": "<sha256 of the previous record>"}

Its hash is the sha256 of its canonical JSON form (keys sorted, no spaces, UTF-8, no NaN), and the
next record holds it as ``prev`` (the first holds 64 zeros). A record never holds a name or a record
number: the case has none, and ``case_id`` (free text a caller could fill with one) is not kept.

``kind: "checkpoint"`` records are written by :meth:`RecordStore.prune` at the head: they hold the range
pruned (``pruned_from``, the old tail, to ``pruned_through``), its count, the hash of the last record
pruned and the date pruned before (never after the checkpoint's own), so that the chain that remains
still verifies from its first record; :meth:`RecordStore.verify` refuses a checkpoint that breaks
these rules. Someone who can write to the store can still forge a well-formed prune: ``verify`` checks
the chain against a head kept outside the store (``expect_head``, ``expect_count``) to catch that.

SQLite record files are created 0600, in a folder created 0700.

Stores: SQLite (default; ``MSCC_RECORD_PATH`` or ``$XDG_DATA_HOME/mscc-triage/records.sqlite3``, i.e.
``~/.local/share/mscc-triage/records.sqlite3``) and PostgreSQL (``MSCC_RECORD_DSN``; the only choice
when several servers share one record). Writers are serialised by the store itself (SQLite
``BEGIN IMMEDIATE``; PostgreSQL ``SELECT ... FOR UPDATE`` on the one-row ``record_head`` table), so
concurrent threads and processes always extend one linear chain. A write that fails raises
:class:`RecordUnavailable` and leaves nothing half-written (one transaction per record).

Errors (all :class:`TriageError`)::

    RecordError                 code                 CLI exit   HTTP
    ├── RecordUnavailable       record_unavailable        5     503   the store cannot be read or written
    └── RecordNotFound          record_not_found          2     n/a   no record with that id
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import os
import platform
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence, TypeVar

from ._case import validate_case
from ._errors import RecordError, RecordNotFound, RecordUnavailable, TriageError  # noqa: F401 - re-exported
from ._result import Result
from .settings import load_settings

_T = TypeVar("_T")

RECORD_FORMAT = 1
GENESIS = "0" * 64
CHANNELS = ("api", "cds", "form")
_BATCH = 2000


# ------------------------------------------------------------------------------------ values

def canonical(obj: Any) -> bytes:
    """The canonical JSON form the chain hashes: sorted keys, no spaces, UTF-8, no NaN."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def record_hash(body: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(body)).hexdigest()


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def time_bound(value: str | dt.date | dt.datetime) -> str:
    """A date or date-time (ISO 8601; naive means UTC) as the record's time format, for comparisons."""
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{value!r} is not a date (YYYY-MM-DD) or an ISO 8601 date-time") from None
    elif isinstance(value, dt.datetime):
        parsed = value
    else:
        parsed = dt.datetime(value.year, value.month, value.day)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@functools.lru_cache(maxsize=1)
def software_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for package in ("mscc-triage", "durable-rules", "pydantic"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:  # pragma: no cover - both are dependencies
            found[package] = "unknown"
    return found


def _compact(node: Any) -> Any:
    """The case without its nulls (it validates back to the same case)."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            value = _compact(value)
            if value is not None and value != {}:
                out[key] = value
        return out
    return node


def recorded_case(case: Any) -> dict[str, Any]:
    """The case as the record keeps it: validated as sent, nulls and ``case_id`` left out.

    Not normalised: normalisation is part of the evaluation (replayed with it), and a rule may read
    what the sender left out (``as_sent``: unable to walk with gait not recorded), which the
    normalised case no longer shows."""
    sent = validate_case(case).model_dump()
    sent.pop("case_id", None)
    compact: dict[str, Any] = _compact(sent)
    return compact


def recorded_result(result: Result | Mapping[str, Any]) -> dict[str, Any]:
    data = result.model_dump(mode="json") if isinstance(result, Result) else dict(result)
    data.pop("case_id", None)
    return data


@dataclass(frozen=True)
class CdsContext:
    """What a CDS Hooks call adds to its record: the hook instance, the cards' uuids, the caller."""

    hook_instance: str
    cards: Sequence[str] = ()
    iss: Optional[str] = None
    sub: Optional[str] = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"hook_instance": self.hook_instance, "cards": list(self.cards)}
        if self.iss is not None:
            out["iss"] = self.iss
        if self.sub is not None:
            out["sub"] = self.sub
        return out


def decision_entry(channel: str, case: Any, result: Result, *, request_id: Optional[str] = None,
                   cds: Optional[CdsContext] = None) -> dict[str, Any]:
    """The body of a decision record, before the store gives it ``seq``, ``time`` and ``prev``."""
    if channel not in CHANNELS:
        raise ValueError(f"channel must be one of {', '.join(CHANNELS)}, not {channel!r}")
    entry: dict[str, Any] = {
        "record_format": RECORD_FORMAT, "kind": "decision", "id": request_id or uuid.uuid4().hex,
        "channel": channel, "case": recorded_case(case), "result": recorded_result(result),
        "ruleset": {"name": result.ruleset.name, "version": result.ruleset.version, "sha256": result.ruleset.sha256},
        "versions": software_versions(),
    }
    if cds is not None:
        entry["cds"] = cds.as_dict()
    return entry


@dataclass(frozen=True)
class Record:
    """One stored record: its position, its hash, and its body (the canonical JSON, parsed)."""

    seq: int
    hash: str
    body: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.body["id"])

    @property
    def kind(self) -> str:
        return str(self.body["kind"])

    @property
    def time(self) -> str:
        return str(self.body["time"])

    def as_json_line(self) -> str:
        """The export form: the body with its hash, canonical, one line."""
        return canonical({**self.body, "hash": self.hash}).decode("utf-8")


@dataclass(frozen=True)
class Broken:
    seq: int
    id: Optional[str]
    reason: str

    def __str__(self) -> str:
        return f"record {self.seq}" + (f" ({self.id})" if self.id else "") + f": {self.reason}"


@dataclass(frozen=True)
class Verification:
    count: int
    first_seq: Optional[int]
    head_seq: int
    head_hash: str
    broken: Optional[Broken]

    @property
    def ok(self) -> bool:
        return self.broken is None


@dataclass(frozen=True)
class PruneReport:
    pruned: int
    through_seq: Optional[int]
    checkpoint: Optional[Record]
    remaining: int = 0   # records in the chain up to and including the checkpoint (the new head)


# ------------------------------------------------------------------------------------ stores

_COLUMNS = "seq, id, time, channel, kind, cards, body, hash"


class RecordStore:
    """The shared logic of both stores; subclasses give connections, locking and SQL placeholders."""

    url: str
    _ph = "?"

    def __init__(self) -> None:
        self._local = threading.local()
        self._open: list[tuple[int, Any]] = []     # every connection opened, with its process id
        self._open_lock = threading.Lock()

    def __enter__(self) -> "RecordStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- connections (one per thread and process: a forked worker opens its own) ------------
    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():
            conn = self._connect()
            self._local.conn, self._local.pid = conn, os.getpid()
            with self._open_lock:
                self._open.append((os.getpid(), conn))
        return conn

    @staticmethod
    def _close_quietly(conn: Any) -> None:
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - a broken connection may fail to close; it is dropped anyway
            pass

    def _drop_conn(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            with self._open_lock:
                self._open = [(pid, c) for pid, c in self._open if c is not conn]
            self._close_quietly(conn)

    def close(self) -> None:
        """Close every connection this process opened (any thread's); the store can still be used after."""
        with self._open_lock:
            mine = [c for pid, c in self._open if pid == os.getpid()]
            self._open = [(pid, c) for pid, c in self._open if pid != os.getpid()]
        for conn in mine:
            self._close_quietly(conn)
        self._local = threading.local()

    # -- backend hooks -------------------------------------------------------------------------
    def _connect(self) -> Any:
        raise NotImplementedError

    def _begin_locked(self, conn: Any) -> tuple[int, str]:
        """Start a write transaction that excludes every other writer; return the head (seq, hash)."""
        raise NotImplementedError

    def _errors(self) -> tuple[type[BaseException], ...]:
        raise NotImplementedError

    def _reason(self, exc: BaseException) -> str:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__

    # -- writing -------------------------------------------------------------------------------
    def _write(self, work: Callable[[Any, int, str], _T]) -> _T:
        """Run ``work(conn, head_seq, head_hash)`` in one locked transaction; all of it or nothing."""
        try:
            conn = self._conn()
            try:
                seq, head = self._begin_locked(conn)
                out = work(conn, seq, head)
                conn.commit()
                return out
            except BaseException:
                try:
                    conn.rollback()
                except Exception:  # noqa: BLE001 - the connection is dropped below
                    self._drop_conn()
                raise
        except self._errors() as exc:
            self._drop_conn()  # the next call reconnects: service resumes when the store recovers
            raise RecordUnavailable(f"the decision record cannot be written: {self._reason(exc)}") from None

    def _insert(self, conn: Any, seq: int, prev: str, entry: Mapping[str, Any]) -> Record:
        body = {**entry, "seq": seq, "prev": prev, "time": utc_now()}
        text = canonical(body)
        digest = hashlib.sha256(text).hexdigest()
        cards = " ".join(body.get("cds", {}).get("cards", [])) or None
        p = self._ph
        conn.execute(f"INSERT INTO records ({_COLUMNS}) VALUES ({', '.join([p] * 8)})",
                     (seq, body["id"], body["time"], body["channel"], body["kind"], cards, text.decode("utf-8"),
                      digest))
        return Record(seq, digest, body)

    def _set_head(self, conn: Any, seq: int, digest: str) -> None:
        p = self._ph
        conn.execute(f"UPDATE record_head SET seq = {p}, hash = {p} WHERE id = 1", (seq, digest))

    def append(self, entry: Mapping[str, Any]) -> Record:
        """Add one record at the head of the chain and return it (with its seq, time and hash)."""
        return self.append_many([entry])[0]

    def append_many(self, entries: Iterable[Mapping[str, Any]]) -> list[Record]:
        """Add records in one transaction (benchmarks, imports): all of them or none."""
        entries = list(entries)

        def work(conn: Any, seq: int, head: str) -> list[Record]:
            written = []
            for entry in entries:
                seq += 1
                record = self._insert(conn, seq, head, entry)
                head = record.hash
                written.append(record)
            if written:
                self._set_head(conn, seq, head)
            return written

        return self._write(work)

    def record_decision(self, channel: str, case: Any, result: Result, *, request_id: Optional[str] = None,
                        cds: Optional[CdsContext] = None) -> Record:
        return self.append(decision_entry(channel, case, result, request_id=request_id, cds=cds))

    def prune(self, before: str | dt.date | dt.datetime) -> PruneReport:
        """Delete the oldest records, those before ``before`` (a prefix of the chain), and append a
        checkpoint holding the seq and hash of the last one deleted, so the rest still verifies."""
        # Records are never written in the future: a later bound prunes the same records as now, and the
        # checkpoint then never holds a date after its own (which verify refuses).
        bound = min(time_bound(before), utc_now())
        p = self._ph

        def work(conn: Any, head_seq: int, head_hash: str) -> PruneReport:
            tail = conn.execute("SELECT MIN(seq) FROM records").fetchone()
            row = conn.execute(f"SELECT MIN(seq) FROM records WHERE time >= {p}", (bound,)).fetchone()
            keep_from = row[0] if row and row[0] is not None else head_seq + 1
            last = conn.execute(f"SELECT seq, hash FROM records WHERE seq < {p} ORDER BY seq DESC LIMIT 1",
                                (keep_from,)).fetchone()
            if last is None:
                return PruneReport(0, None, None)
            count = conn.execute(f"SELECT COUNT(*) FROM records WHERE seq < {p}", (keep_from,)).fetchone()[0]
            conn.execute(f"DELETE FROM records WHERE seq < {p}", (keep_from,))
            entry = {"record_format": RECORD_FORMAT, "kind": "checkpoint", "id": uuid.uuid4().hex,
                     "channel": "audit", "pruned_before": bound, "pruned_count": count,
                     "pruned_from": tail[0], "pruned_through": last[0], "pruned_hash": last[1]}
            checkpoint = self._insert(conn, head_seq + 1, head_hash, entry)
            self._set_head(conn, checkpoint.seq, checkpoint.hash)
            remaining = conn.execute("SELECT COUNT(*) FROM records").fetchone()[0]
            return PruneReport(count, last[0], checkpoint, int(remaining))

        return self._write(work)

    def health(self) -> Optional[str]:
        """None when a record could be written now, else why not: a real write lock and a write of the
        head row onto itself, rolled back (nothing changes)."""
        try:
            self._write_probe()
        except RecordUnavailable as exc:
            return str(exc)
        return None

    def _write_probe(self) -> None:
        class _RolledBack(Exception):
            pass

        p = self._ph

        def work(conn: Any, seq: int, head: str) -> None:
            conn.execute(f"UPDATE record_head SET seq = {p}, hash = {p} WHERE id = 1", (seq, head))
            raise _RolledBack()

        try:
            self._write(work)
        except _RolledBack:
            pass

    # -- reading -------------------------------------------------------------------------------
    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            rows: list[Any] = self._conn().execute(sql, params).fetchall()
            return rows
        except self._errors() as exc:
            self._drop_conn()
            raise RecordUnavailable(f"the decision record cannot be read: {self._reason(exc)}") from None

    def _scan(self, where: str = "", params: Sequence[Any] = (), columns: str = "seq, body, hash") -> Iterator[Any]:
        """Rows in seq order, read in batches by seq (no long-lived cursor, constant memory)."""
        p = self._ph
        after = -1
        while True:
            rows = self._read(f"SELECT {columns} FROM records WHERE seq > {p} {where} ORDER BY seq LIMIT {_BATCH}",
                              (after, *params))
            yield from rows
            if len(rows) < _BATCH:
                return
            after = rows[-1][0]

    def head(self) -> tuple[int, str]:
        row = self._read("SELECT seq, hash FROM record_head WHERE id = 1")
        return (row[0][0], row[0][1]) if row else (0, GENESIS)

    def records(self, since: Optional[str | dt.date | dt.datetime] = None, kind: Optional[str] = "decision",
                until: Optional[str | dt.date | dt.datetime] = None) -> Iterator[Record]:
        where, params = self._filters(since, kind, until)
        for seq, body, digest in self._scan(where, params):
            yield Record(seq, digest, json.loads(body))

    def bodies(self, since: Optional[str | dt.date | dt.datetime] = None, kind: Optional[str] = "decision",
               until: Optional[str | dt.date | dt.datetime] = None) -> Iterator[tuple[int, str]]:
        """(seq, body text) pairs, unparsed: what parallel re-evaluation sends to its workers."""
        where, params = self._filters(since, kind, until)
        for seq, body, _ in self._scan(where, params):
            yield seq, body

    def _filters(self, since: Any, kind: Optional[str], until: Any) -> tuple[str, list[Any]]:
        p = self._ph
        where, params = "", []
        if since is not None:
            where += f" AND time >= {p}"
            params.append(time_bound(since))
        if until is not None:
            where += f" AND time < {p}"
            params.append(time_bound(until))
        if kind is not None:
            where += f" AND kind = {p}"
            params.append(kind)
        return where, params

    def get(self, key: str | int) -> Record:
        """A record by seq, by request id, or by a CDS card uuid."""
        p = self._ph
        text = str(key).strip()
        if text.isdigit():
            rows = self._read(f"SELECT seq, body, hash FROM records WHERE seq = {p}", (int(text),))
        else:
            rows = self._read(f"SELECT seq, body, hash FROM records WHERE id = {p}", (text,))
            if not rows:
                rows = self._read(f"SELECT seq, body, hash FROM records WHERE cards LIKE {p} ORDER BY seq",
                                  (f"%{text}%",))
                rows = [r for r in rows if text in json.loads(r[1]).get("cds", {}).get("cards", [])]
        if not rows:
            raise RecordNotFound(f"no record {text!r} (give a seq number, a request id or a CDS card uuid)")
        seq, body, digest = rows[0]
        return Record(seq, digest, json.loads(body))

    def count(self) -> int:
        return int(self._read("SELECT COUNT(*) FROM records")[0][0])

    def verify(self, expect_head: Optional[str] = None, expect_count: Optional[int] = None) -> Verification:
        """Check the whole chain; name the first record that breaks it.

        ``expect_head`` (with ``expect_count``): a head kept outside the store (``verify`` prints it: the
        head's hash and the number of records then). The chain must still hold that record, with exactly
        that many records up to it: records deleted before it since, even behind a well-formed checkpoint,
        break the chain (after a prune, keep the new head it prints)."""
        head_seq, head_hash = self.head()
        p = self._ph
        anchor = self._read(f"SELECT body FROM records WHERE kind = {p} ORDER BY seq DESC LIMIT 1", ("checkpoint",))
        checkpoint = json.loads(anchor[0][0]) if anchor else None
        count, first, prev_seq, prev_hash, last_id = 0, None, None, None, None
        kept: Optional[tuple[int, Optional[str], int]] = None   # the kept head: seq, id, records up to it
        earlier: Optional[dict[str, Any]] = None                # the last checkpoint met in the chain
        now = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=5)
        if checkpoint is not None:   # the checkpoint the chain starts from follows the rules before it is used
            wrong = _checkpoint_problem(checkpoint, None, now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
            if wrong:
                return self._broken(0, None, head_seq, head_hash,
                                    Broken(_int(checkpoint.get("seq"), head_seq), checkpoint.get("id"), wrong))
        columns = "seq, body, hash, id, time, channel, kind"
        for seq, text, stored, col_id, col_time, col_channel, col_kind in self._scan(columns=columns):
            count += 1
            try:
                body = json.loads(text)
                rid = body.get("id") if isinstance(body, dict) else None
            except ValueError:
                return self._broken(count, first, head_seq, head_hash, Broken(seq, col_id, "its content is not JSON"))
            if not isinstance(body, dict) or record_hash(body) != stored:
                return self._broken(count, first, head_seq, head_hash,
                                    Broken(seq, rid, "its content does not match its hash (altered)"))
            if (body.get("seq"), body.get("id"), body.get("time"), body.get("channel"), body.get("kind")) != \
                    (seq, col_id, col_time, col_channel, col_kind):
                return self._broken(count, first, head_seq, head_hash,
                                    Broken(seq, rid, "its columns (seq, id, time, channel, kind) differ from its "
                                                     "hashed content (altered or renumbered)"))
            if body.get("kind") == "checkpoint":
                wrong = _checkpoint_problem(body, earlier, now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
                if wrong:
                    return self._broken(count, first or seq, head_seq, head_hash, Broken(seq, rid, wrong))
                earlier = body
            if prev_seq is None:
                first = seq
                if checkpoint and seq <= _int(checkpoint.get("pruned_through"), 0):
                    return self._broken(count, first, head_seq, head_hash, Broken(
                        _int(checkpoint.get("seq"), seq), checkpoint.get("id"),
                        f"a checkpoint that says records up to {checkpoint.get('pruned_through')} were pruned, "
                        f"but record {seq} is still there (a forged checkpoint)"))
                if checkpoint and seq < _int(checkpoint.get("seq"), 0) \
                        and body.get("time", "") < str(checkpoint.get("pruned_before", "")):
                    return self._broken(count, first, head_seq, head_hash, Broken(
                        _int(checkpoint.get("seq"), seq), checkpoint.get("id"),
                        f"a checkpoint that does not follow its prune: record {seq}, older than its prune date, "
                        "was kept (records deleted behind a checkpoint)"))
                if seq == 1:
                    expected = GENESIS
                elif checkpoint and checkpoint.get("pruned_through") == seq - 1:
                    expected = checkpoint["pruned_hash"]
                else:
                    return self._broken(count, first, head_seq, head_hash,
                                        Broken(seq, rid, f"records 1 to {seq - 1} are missing and no checkpoint "
                                                         "accounts for them (deleted)"))
            elif seq != prev_seq + 1:
                missing = f"record {prev_seq + 1}" if seq == prev_seq + 2 else f"records {prev_seq + 1} to {seq - 1}"
                return self._broken(count, first, head_seq, head_hash,
                                    Broken(seq, rid, f"{missing} before it is missing (deleted)"))
            else:
                expected = prev_hash
            if body.get("prev") != expected:
                where = "the checkpoint's pruned record" if prev_seq is None else f"record {prev_seq}"
                return self._broken(count, first, head_seq, head_hash,
                                    Broken(seq, rid, f"it does not link to {where} (a record was inserted here, "
                                                     "or the one before it was altered and re-hashed)"))
            prev_seq, prev_hash, last_id = seq, stored, rid
            if expect_head is not None and stored == expect_head:
                kept = (seq, rid, count)
        last_seq = prev_seq or 0
        if (last_seq, prev_hash or GENESIS) != (head_seq, head_hash) and not (count == 0 and head_seq == 0):
            if last_seq > head_seq:
                after = max(head_seq + 1, first or 1)
                rows = self._read(f"SELECT id FROM records WHERE seq = {p}", (after,))
                reason = (f"it comes after the chain's head (record {head_seq}): inserted, or the head row "
                          "was altered")
                broken = Broken(after, rows[0][0] if rows else None, reason)
            elif last_seq < head_seq:
                missing = f"record {head_seq}" if head_seq == last_seq + 1 else f"records {last_seq + 1} to {head_seq}"
                broken = Broken(head_seq, None, f"missing: the chain ends at record {last_seq} but its head says "
                                                f"{head_seq} ({missing} deleted)")
            else:
                broken = Broken(head_seq, last_id, "its hash differs from the one the chain's head holds "
                                                   "(the record or the head row was altered)")
            return self._broken(count, first, head_seq, head_hash, broken)
        if expect_head is not None:
            if kept is None:
                return self._broken(count, first, head_seq, head_hash, Broken(
                    head_seq, last_id, f"the head kept outside the store ({expect_head[:16]}) is not in the chain: "
                                       "records were deleted or the chain rewritten since it was kept"))
            if expect_count is not None and kept[2] != expect_count:
                return self._broken(count, first, head_seq, head_hash, Broken(
                    kept[0], kept[1], f"the chain held {expect_count} records up to the head kept outside the store; "
                                      f"it now holds {kept[2]} (records deleted or added before it since; after a "
                                      "prune, keep the head it prints)"))
        return Verification(count, first, head_seq, head_hash, None)

    @staticmethod
    def _broken(count: int, first: Optional[int], head_seq: int, head_hash: str, broken: Broken) -> Verification:
        return Verification(count, first, head_seq, head_hash, broken)


class SqliteStore(RecordStore):
    """SQLite, WAL mode: the embedded default; safe for the threads and worker processes of one host."""

    _ph = "?"

    def __init__(self, path: str | os.PathLike[str]):
        super().__init__()
        self.path = Path(path)
        self.url = f"sqlite:{self.path}"

    def _errors(self) -> tuple[type[BaseException], ...]:
        return (sqlite3.Error, OSError)

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
        if not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.path.exists():
            try:
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            except FileExistsError:   # another process made it first
                pass
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
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
            conn.execute("COMMIT")
        except BaseException:
            conn.close()
            raise
        return conn

    def _begin_locked(self, conn: sqlite3.Connection) -> tuple[int, str]:
        conn.execute("BEGIN IMMEDIATE")   # the database's write lock, held until commit: one writer at a time
        seq, digest = conn.execute("SELECT seq, hash FROM record_head WHERE id = 1").fetchone()
        return seq, digest


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
            conn.commit()
        except BaseException:
            conn.close()
            raise
        return conn

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


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _checkpoint_problem(body: Mapping[str, Any], earlier: Optional[Mapping[str, Any]], latest: str) -> Optional[str]:
    """Why a checkpoint does not follow the rules of a prune (None: it does).

    A prune deletes a prefix of the chain, from its old tail (record 1, or the record after the last
    prune), and appends at the head a checkpoint holding that range, its count, the last hash deleted
    and the date it pruned before, which is never after the checkpoint itself nor in the future."""
    seq, through, count = body.get("seq"), body.get("pruned_through"), body.get("pruned_count")
    start = body.get("pruned_from", through - count + 1 if isinstance(through, int) and isinstance(count, int)
                     else None)   # checkpoints written before pruned_from was kept
    digest, before, written = body.get("pruned_hash"), body.get("pruned_before"), body.get("time")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (seq, through, count, start)) \
            or not isinstance(digest, str) or len(digest) != 64 or not isinstance(before, str) \
            or not isinstance(written, str):
        return "a checkpoint without its range, count, last hash and date (forged or damaged)"
    assert isinstance(seq, int) and isinstance(through, int) and isinstance(count, int) and isinstance(start, int)
    if not 1 <= start <= through < seq or count != through - start + 1:
        return (f"a checkpoint whose range does not hold: records {start} to {through}, {count} of them, "
                f"before itself (record {seq})")
    if earlier is not None and start != _int(earlier.get("pruned_through"), -1) + 1:
        return (f"a checkpoint that does not start at the chain's old tail (record "
                f"{_int(earlier.get('pruned_through'), -1) + 1}, after the previous prune) but at record {start}")
    if before > written:
        return f"a checkpoint that prunes before {before}, a date after its own ({written}): a date in the future"
    if written > latest:
        return f"a checkpoint dated in the future ({written})"
    return None


def _redact(dsn: str) -> str:
    import re

    return re.sub(r"(password=)\S+", r"\1***", re.sub(r"(://[^:/@]+:)[^@]+@", r"\1***@", dsn))


def default_record_path() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "mscc-triage" / "records.sqlite3"


def open_store(path: str | os.PathLike[str] | None = None, dsn: Optional[str] = None) -> RecordStore:
    """The record store: PostgreSQL when a DSN is given (or ``MSCC_RECORD_DSN``), else SQLite at ``path``
    (or ``MSCC_RECORD_PATH``, else :func:`default_record_path`). Nothing is opened until first use."""
    settings = load_settings()
    dsn = dsn if dsn is not None else settings.record_dsn
    if dsn:
        return PostgresStore(dsn)
    return SqliteStore(path or settings.record_path or default_record_path())

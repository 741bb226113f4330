"""The shared logic of the record stores: connections per thread, one locked transaction per write, reading,
pruning and verifying the chain. A backend (:mod:`._record_sqlite`, :mod:`._record_pg`) gives connections,
the write lock and its SQL placeholder; nothing here names a database.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import threading
import uuid
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence, TypeVar

from ._errors import RecordDamaged, RecordNotFound, RecordUnavailable
from ._record_format import (
    GENESIS, RECORD_FORMAT, Broken, CdsContext, PruneReport, Record, Verification, canonical_member,
    decision_entry, record_hash, time_bound, utc_now,
)
from ._result import Result

_T = TypeVar("_T")

_BATCH = 2000
_COLUMNS = "seq, id, time, channel, kind, cards, body, hash"


class RecordStore:
    """The shared logic of both stores; subclasses give connections, locking and SQL placeholders."""

    url: str
    _ph = "?"

    def __init__(self) -> None:
        self._local = threading.local()
        self._open: list[tuple[int, Any]] = []     # every connection opened, with its process id
        self._open_lock = threading.Lock()
        self._groups: Optional[_Group] = None      # the records this process's threads wait to have written

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

    def claim(self) -> None:
        """Called once by a server before it forks its workers: the record this server writes is
        settled now (a file store makes its file), so that a worker started later (after a crash, a
        restart of workers) never begins another record where this one was removed. Nothing to do for a
        database server's store."""

    # -- backend hooks -------------------------------------------------------------------------
    def _connect(self) -> Any:
        raise NotImplementedError

    def _begin_locked(self, conn: Any) -> tuple[int, str]:
        """Start a write transaction that excludes every other writer; return the head (seq, hash)."""
        raise NotImplementedError

    def _errors(self) -> tuple[type[BaseException], ...]:
        raise NotImplementedError

    def _write_gate(self) -> AbstractContextManager[Any]:
        """Held around each write transaction: a backend whose own lock makes waiting writers poll
        (SQLite) queues them here instead, so each starts as soon as the one before it ends."""
        return nullcontext()

    def _lost(self, conn: Any, exc: BaseException) -> bool:
        """``exc`` ended the connection itself (server restarted, socket closed), as opposed to a statement
        refused on a live one. A lost connection ends its transaction uncommitted."""
        return False

    def _reason(self, exc: BaseException) -> str:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__

    # -- writing -------------------------------------------------------------------------------
    def _write(self, work: Callable[[Any, int, str], _T]) -> _T:
        """Run ``work(conn, head_seq, head_hash)`` in one locked transaction; all of it or nothing.

        Retried once, on a new connection, when the connection (typically one kept from an earlier
        call, which a server restart closed) is found lost before COMMIT was sent (see
        :mod:`._record_pg`): that transaction was never committed, so the retry, which reads the head
        afresh, cannot write a record twice. A failure at or after COMMIT is never retried (its outcome
        is unknown)."""
        for attempt in (1, 2):
            committing, lost = False, False
            try:
                conn = self._conn()
                with self._write_gate():
                    try:
                        seq, head = self._begin_locked(conn)
                        out = work(conn, seq, head)
                        committing = True
                        conn.commit()
                        return out
                    except BaseException as exc:
                        lost = self._lost(conn, exc)
                        try:
                            if lost:
                                self._drop_conn()
                            else:
                                conn.rollback()
                        except Exception:  # noqa: BLE001 - the connection is dropped below
                            self._drop_conn()
                        raise
            except self._errors() as exc:
                retry = attempt == 1 and lost and not committing
                self._drop_conn()  # the next call reconnects: service resumes when the store recovers
                if retry:
                    continue
                raise RecordUnavailable(f"the decision record cannot be written: {self._reason(exc)}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _record(seq: int, prev: str, entry: Mapping[str, Any],
                parts: Optional[dict[str, str]] = None) -> tuple[Record, tuple[Any, ...]]:
        """The record that ``entry`` becomes at ``seq`` after ``prev``, and its row. ``parts``: the entry's
        members in canonical form (:func:`_members`), made before the write lock was taken."""
        now = utc_now()
        body = {**entry, "seq": seq, "prev": prev, "time": now}
        members = {**(parts if parts is not None else _members(entry)),   # as _members would write these three:
                   "seq": f'"seq":{int.__repr__(seq)}', "prev": '"prev":' + canonical_member(prev).decode("utf-8"),
                   "time": f'"time":"{now}"'}
        text = ("{" + ",".join(members[key] for key in sorted(members)) + "}").encode("utf-8")  # == canonical(body)
        digest = hashlib.sha256(text).hexdigest()
        cards = " ".join(body.get("cds", {}).get("cards", [])) or None
        row = (seq, body["id"], body["time"], body["channel"], body["kind"], cards, text.decode("utf-8"), digest)
        return Record(seq, digest, body), row

    def _insert_rows(self, conn: Any, rows: list[tuple[Any, ...]]) -> None:
        p = self._ph
        sql = f"INSERT INTO records ({_COLUMNS}) VALUES ({', '.join([p] * 8)})"
        if len(rows) == 1:
            conn.execute(sql, rows[0])
        else:
            self._executemany(conn, sql, rows)

    def _executemany(self, conn: Any, sql: str, rows: list[tuple[Any, ...]]) -> None:
        conn.executemany(sql, rows)

    def _insert(self, conn: Any, seq: int, prev: str, entry: Mapping[str, Any]) -> Record:
        record, row = self._record(seq, prev, entry)
        self._insert_rows(conn, [row])
        return record

    def _set_head(self, conn: Any, seq: int, digest: str) -> None:
        p = self._ph
        conn.execute(f"UPDATE record_head SET seq = {p}, hash = {p} WHERE id = 1", (seq, digest))

    def append(self, entry: Mapping[str, Any]) -> Record:
        """Add one record at the head of the chain and return it (with its seq, time and hash) once it
        is committed, durably (group commit).

        The threads of a process that append at the same time share one transaction: the first to find
        no write under way writes every record queued by the time it holds the write lock (its own
        included) in one transaction, one commit, one fsync, then wakes the others, each with its own
        record; records queued after that go in the next group. Each call still returns only after its record is committed, so a decision is
        never answered unrecorded, and the chain is the same as with one transaction per record. One
        thread alone writes as before. A group that cannot be written fails every call of the group
        (:class:`RecordUnavailable`, as each would have failed alone); a record that is malformed fails
        alone (the group is then written one record at a time)."""
        slot = _Slot(entry, _members(entry))   # the costly part of the hash, before queueing
        group = self._group()
        with group.ready:
            group.queue.append(slot)
            while not slot.done and group.writing:
                group.ready.wait()
            if slot.done:
                return slot.outcome()
            group.writing = True                 # this thread writes the group, its own record first
        taken: list[_Slot] = []

        def take() -> list[_Slot]:
            # Once, when the write lock is held: records queued while another process held it (one
            # fsync away) join this group instead of waiting for the next.
            if not taken:
                with group.ready:
                    taken.extend(group.queue)
                    group.queue = []
            return taken

        try:
            self._write_group(take)
        finally:
            with group.ready:
                group.writing = False
                for queued in take():
                    queued.done = True
                group.ready.notify_all()
        return slot.outcome(own=True)

    def _group(self) -> "_Group":
        group = self._groups
        if group is None or group.pid != os.getpid():   # a forked worker groups its own threads
            with self._open_lock:
                group = self._groups
                if group is None or group.pid != os.getpid():
                    group = self._groups = _Group(os.getpid())
        return group

    def _write_group(self, take: Callable[[], list["_Slot"]]) -> None:
        """Write the group ``take`` gives (called once the write lock is held, or on a failure before)."""
        try:
            written = self._append_many(lambda: [(queued.entry, queued.parts) for queued in take()])
            for queued, record in zip(take(), written):
                queued.record = record
        except RecordUnavailable as exc:
            for queued in take():
                queued.error = exc
        except Exception as exc:  # noqa: BLE001 - a malformed record (not a store failure): each alone
            batch = take()
            if len(batch) == 1:
                batch[0].error = exc
                return
            for queued in batch:
                try:
                    queued.record = self._append_many([(queued.entry, queued.parts)])[0]
                except Exception as alone:  # noqa: BLE001 - raised in the thread that queued it
                    queued.error = alone
        except BaseException as exc:   # interrupted: the others are told the record is not written
            for queued in take():
                queued.error = exc
            raise

    def append_many(self, entries: Iterable[Mapping[str, Any]]) -> list[Record]:
        """Add records in one transaction (benchmarks, imports): all of them or none."""
        return self._append_many([(entry, _members(entry)) for entry in entries])

    def _append_many(self, entries: list[tuple[Mapping[str, Any], dict[str, str]]]
                     | Callable[[], list[tuple[Mapping[str, Any], dict[str, str]]]]) -> list[Record]:
        """Write ``entries`` in one transaction; a callable gives them once the write lock is held."""
        def work(conn: Any, seq: int, head: str) -> list[Record]:
            written, rows = [], []
            for entry, parts in (entries() if callable(entries) else entries):
                seq += 1
                record, row = self._record(seq, head, entry, parts)
                head = record.hash
                written.append(record)
                rows.append(row)
            if written:
                self._insert_rows(conn, rows)
                self._set_head(conn, seq, head)
            return written

        return self._write(work)

    def record_decision(self, channel: str, case: Any, result: Result, *, request_id: Optional[str] = None,
                        cds: Optional[CdsContext] = None, dumped: Optional[Mapping[str, Any]] = None) -> Record:
        return self.append(decision_entry(channel, case, result, request_id=request_id, cds=cds, dumped=dumped))

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
        """None when a record could be written now, else why not: the time written to the probe's own row
        and committed, as a record is (the write lock, the disk, the fsync); the chain does not change.
        A probe rolled back (or writing a row onto itself, which SQLite skips) wrote nothing to disk, and
        said ok on a full or read-only disk while every record failed (operator audit)."""
        p = self._ph

        def work(conn: Any, seq: int, head: str) -> None:
            conn.execute(f"INSERT INTO record_probe (id, at) VALUES (1, {p}) ON CONFLICT (id) DO UPDATE SET at = "
                         "excluded.at", (utc_now(),))

        try:
            self._write(work)
        except RecordUnavailable as exc:
            return str(exc)
        return None

    # -- reading -------------------------------------------------------------------------------
    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Rows of one query; retried once on a new connection when the connection is found lost (a read
        changes nothing, so a retry is always safe)."""
        for attempt in (1, 2):
            conn = None
            try:
                conn = self._conn()
                rows: list[Any] = conn.execute(sql, params).fetchall()
                return rows
            except self._errors() as exc:
                retry = attempt == 1 and conn is not None and self._lost(conn, exc)
                self._drop_conn()
                if retry:
                    continue
                raise RecordUnavailable(f"the decision record cannot be read: {self._reason(exc)}") from None
        raise AssertionError("unreachable")  # pragma: no cover

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
                until: Optional[str | dt.date | dt.datetime] = None, through: Optional[int] = None) -> Iterator[Record]:
        """Records in seq order (``through``: up to that seq, e.g. the head a verification read)."""
        where, params = self._filters(since, kind, until)
        if through is not None:
            where, params = f"{where} AND seq <= {self._ph}", [*params, through]
        for seq, body, digest in self._scan(where, params):
            yield Record(seq, digest, _body_of(seq, body))

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
                rows = [r for r in rows if text in (_body_of(r[0], r[1]).get("cds") or {}).get("cards", [])]
        if not rows:
            raise RecordNotFound(f"no record {text!r} (give a seq number, a request id or a CDS card uuid)")
        seq, body, digest = rows[0]
        return Record(seq, digest, _body_of(seq, body))

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
        columns = "seq, body, hash, id, time, channel, kind, cards"
        # The chain up to the head read above: a server that records meanwhile appends after it, and its
        # head and records move together in one transaction, so every record up to that head is there.
        chain = self._scan(f"AND seq <= {p}", (head_seq,), columns=columns)
        for seq, text, stored, col_id, col_time, col_channel, col_kind, col_cards in chain:
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
            cds = body.get("cds")
            cards = cds.get("cards") if isinstance(cds, dict) else None
            if (" ".join(cards) if isinstance(cards, list) and all(isinstance(c, str) for c in cards) else "") \
                    != (col_cards or ""):   # the column a card uuid is looked up by (audit show, feedback)
                return self._broken(count, first, head_seq, head_hash,
                                    Broken(seq, rid, "its cards column differs from the card uuids of its hashed "
                                                     "content (altered)"))
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
        # A record past the head as it is now (head and records read by one statement, so a record a
        # live server appends meanwhile, with its head, is never one): written behind the store's back.
        beyond = self._read("SELECT r.seq, r.id, h.seq FROM records r, record_head h WHERE h.id = 1 AND r.seq > h.seq "
                            "ORDER BY r.seq LIMIT 1")
        if beyond:
            after, rid, now_head = beyond[0]
            return self._broken(count, first, head_seq, head_hash, Broken(
                after, rid, f"it comes after the chain's head (record {now_head}): inserted, or the head row was "
                            "altered"))
        if (last_seq, prev_hash or GENESIS) != (head_seq, head_hash) and not (count == 0 and head_seq == 0):
            if last_seq < head_seq:
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



def _body_of(seq: int, text: Any) -> dict[str, Any]:
    """A stored record's body; :class:`RecordDamaged` naming the record when it is not a JSON object."""
    try:
        body = json.loads(text)
    except (TypeError, ValueError):
        body = None
    if not isinstance(body, dict):
        raise RecordDamaged(f"record {seq} is damaged: its content is not a JSON object. Nothing more was read; "
                            "'triage audit verify' checks the whole chain")
    return body


def _members(entry: Mapping[str, Any]) -> dict[str, str]:
    """Each member of a JSON object in canonical form (``"key":value``): the canonical object is its
    members sorted by key, joined by commas, in braces (what ``json.dumps(sort_keys=True)`` writes)."""
    if not all(isinstance(key, str) for key in entry):
        raise TypeError("a record's members are named by strings")
    names = _NAMES
    out = {}
    for key, value in entry.items():
        name = names.get(key)
        if name is None:
            name = canonical_member(key).decode("utf-8") + ":"
            if len(names) < 64:   # a record's few member names; an import's odd ones are not kept
                names[key] = name
        out[key] = name + canonical_member(value).decode("utf-8")
    return out


_NAMES: dict[str, str] = {}   # a member's name, as canonical JSON followed by ":"


class _Slot:
    """One record waiting in a group: what it becomes (its record, or the error that stopped it)."""

    __slots__ = ("entry", "parts", "record", "error", "done")

    def __init__(self, entry: Mapping[str, Any], parts: dict[str, str]) -> None:
        self.entry, self.parts = entry, parts
        self.record: Optional[Record] = None
        self.error: Optional[BaseException] = None
        self.done = False

    def outcome(self, own: bool = False) -> Record:
        """The record, or raise why not: a store failure shared by the group as each thread's own
        :class:`RecordUnavailable` (one traceback per thread), an interrupted writer as one too."""
        error = self.error
        if error is None and self.record is not None:
            return self.record
        if own or (isinstance(error, Exception) and not isinstance(error, RecordUnavailable)):
            raise error if error is not None else RecordUnavailable("the decision record cannot be written")
        reason = str(error) if isinstance(error, RecordUnavailable) else \
            "the decision record cannot be written: its writer was interrupted"
        raise RecordUnavailable(reason)


class _Group:
    """The records a process's threads are waiting to have written, and whether a group is being written."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.ready = threading.Condition(threading.Lock())
        self.queue: list[_Slot] = []
        self.writing = False


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


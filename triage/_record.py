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

Modules, one concern each, none importing this one (so no circle): :mod:`._record_format` (the values
above: canonical JSON, hashes, records), :mod:`._record_store` (what both stores share: transactions,
reading, prune, verify), one module per backend (:mod:`._record_sqlite`, :mod:`._record_pg`); this one
gathers their public names and chooses the store (:func:`open_store`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from ._errors import RecordError, RecordNotFound, RecordUnavailable, TriageError
from ._record_format import (
    CHANNELS, GENESIS, RECORD_FORMAT, Broken, CdsContext, PruneReport, Record, Verification, canonical,
    decision_entry, record_hash, recorded_case, recorded_result, software_versions, time_bound, utc_now,
)
from ._record_pg import PostgresStore, postgres_failure
from ._record_sqlite import SqliteStore
from ._record_store import RecordStore
from .settings import load_settings

__all__ = [
    "CHANNELS", "GENESIS", "RECORD_FORMAT", "Broken", "CdsContext", "PostgresStore", "PruneReport", "Record",
    "RecordError", "RecordNotFound", "RecordStore", "RecordUnavailable", "SqliteStore", "TriageError",
    "Verification", "canonical", "decision_entry", "default_record_path", "open_store", "postgres_failure",
    "record_hash", "recorded_case", "recorded_result", "software_versions", "time_bound", "utc_now",
]


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

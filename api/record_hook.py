"""The decision record on the HTTP side: every evaluation served is recorded before it is answered.

A view calls :func:`record` after the evaluation and before building its response; the record's id
(a uuid4 hex, also the request id) is returned in the ``X-Request-Id`` header. When the record cannot
be written (store down, full, read-only), :class:`triage.RecordUnavailable` propagates and the
request is answered 503 (a problem document with the reason and ``Retry-After``): a decision is never
returned unrecorded. Nothing is cached: when the store recovers, the next request is recorded.

Settings (config key <- environment variable):

- ``RECORD_DSN`` <- ``MSCC_RECORD_DSN``: PostgreSQL (several servers sharing one record).
- ``RECORD_PATH`` <- ``MSCC_RECORD_PATH``: the SQLite file; default
  ``$XDG_DATA_HOME/mscc-triage/records.sqlite3`` (``~/.local/share/mscc-triage/records.sqlite3``).
  An app built with ``TESTING`` and no path keeps its records in a private temporary folder, removed
  when the process exits.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Mapping, Optional, Sequence

from flask import Flask, Response, current_app, g

import triage
from triage import CdsContext, Record, RecordStore, RecordUnavailable, open_store

from .problems import unavailable
from .scratch import private_folder

EXTENSION = "mscc_records"
HEADER = "X-Request-Id"
log = logging.getLogger("mscc_triage.api")


def store_of(app: Flask) -> RecordStore:
    return app.extensions[EXTENSION]


def record(channel: str, case: Any, result: triage.Result, *, hook_instance: Optional[str] = None,
           cards: Sequence[str] = (), iss: Optional[str] = None, sub: Optional[str] = None,
           dumped: Optional[Mapping[str, Any]] = None) -> Record:
    """Write the decision record of this request (raises RecordUnavailable -> 503); sets X-Request-Id.
    ``dumped``: the result's ``model_dump(mode="json")`` when the view answers with it."""
    cds = CdsContext(hook_instance, tuple(cards), iss, sub) if hook_instance is not None else None
    written = store_of(current_app).record_decision(channel, case, result, cds=cds, dumped=dumped)
    g.mscc_request_id = written.id
    return written


def init_app(app: Flask) -> None:
    """Open (lazily) the record store, answer 503 when it fails, add X-Request-Id to recorded answers."""
    dsn = app.config.get("RECORD_DSN") or None     # MSCC_RECORD_DSN / MSCC_RECORD_PATH, read by create_app
    path = app.config.get("RECORD_PATH") or None
    if not dsn and not path and app.testing:
        path = os.path.join(private_folder("mscc-records-"), "records.sqlite3")
    app.config["RECORD_DSN"], app.config["RECORD_PATH"] = dsn, path
    app.extensions[EXTENSION] = open_store(path, dsn)

    @app.errorhandler(RecordUnavailable)
    def _record_unavailable(exc: RecordUnavailable) -> Response:
        log.error("decision record unavailable (%s)", exc)   # the reason, never the case
        return unavailable(f"{exc}. No result is returned unrecorded; retry, or triage clinically.",
                           "urn:mscc-triage:problem:record-unavailable")

    @app.after_request
    def _request_id(response: Response) -> Response:
        request_id = g.get("mscc_request_id")
        if request_id:
            response.headers[HEADER] = request_id
        return response

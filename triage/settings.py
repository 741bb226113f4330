"""Every setting of mscc-triage, read once from the environment into one typed object.

Each setting has one name (``MSCC_...``), a kind, a default and a check; :func:`load_settings` reads
them all at start (the CLI, ``create_app``, gunicorn's configuration) and refuses a bad value naming
the setting. Nothing reads the environment at import. The README's settings tables are checked
against :data:`SETTINGS` by a test, so the documentation and the code cannot drift.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

from ._errors import TriageError


class SettingsError(TriageError, ValueError):
    """A setting has a value that cannot work: found at start, never during a request."""

    code = "invalid_setting"
    exit_code = 2


@dataclass(frozen=True)
class Setting:
    name: str                       # the environment variable
    field: str                      # the attribute of Settings
    parse: Callable[[str], Any]     # raw text -> value (raises ValueError with the reason)
    default: Any = None
    doc: str = ""


def _text(raw: str) -> str:
    return raw


def _flag(raw: str) -> bool:
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be 1 or 0 (true or false)")


def _one_of(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw.lower() not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return raw.lower()
    return parse


def _int_between(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        if not raw.strip().isdigit() or not low <= int(raw) <= high:
            raise ValueError(f"must be a whole number from {low} to {high}")
        return int(raw)
    return parse


def _number_between(low: float, high: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"must be a number from {low:g} to {high:g}") from None
        if not low <= value <= high:
            raise ValueError(f"must be a number from {low:g} to {high:g}")
        return value
    return parse


_URL = re.compile(r"^https?://[^/\s?#]+(/\S*)?$")
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?$")


def _http_url(raw: str) -> str:
    if not _URL.match(raw):
        raise ValueError("must be an http(s) URL, e.g. https://triage.example.org/")
    return raw


def parse_origins(raw: Optional[str]) -> frozenset[str]:
    """The origins of ``MSCC_CORS_ORIGINS`` (comma-separated, each scheme://host[:port], or ``*``);
    raises ValueError naming the ones that are not."""
    if not raw or not raw.strip():
        return frozenset()
    origins = frozenset(part.strip().rstrip("/") for part in raw.split(",") if part.strip())
    bad = sorted(o for o in origins if o != "*" and not _ORIGIN.match(o))
    if bad:
        raise ValueError(f"{', '.join(bad)} is not an origin (scheme://host[:port], or *)")
    return origins


def _origins(raw: str) -> str:
    parse_origins(raw)
    return raw


SETTINGS: tuple[Setting, ...] = (
    Setting("MSCC_TRIAGE_RULES", "rules_path", _text, None, "ruleset folder"),
    Setting("MSCC_RECORD_PATH", "record_path", _text, None, "SQLite file of the decision record"),
    Setting("MSCC_RECORD_DSN", "record_dsn", _text, None, "PostgreSQL of the decision record"),
    Setting("MSCC_RECORD_RETENTION_DAYS", "record_retention_days", _int_between(1, 36500), None,
            "days `triage audit prune` keeps"),
    Setting("MSCC_PUBLIC_BASE_URL", "public_base_url", _http_url, None, "the URL clients call"),
    Setting("MSCC_CORS_ORIGINS", "cors_origins", _origins, None, "origins allowed to call CDS Hooks from a page"),
    Setting("MSCC_CDS_ISSUERS_FILE", "cds_issuers_file", _text, None, "trusted CDS Hooks issuers"),
    Setting("MSCC_CDS_JWT_MAX_LIFETIME_S", "cds_jwt_max_lifetime_s", _int_between(1, 3600), 300,
            "longest CDS Hooks JWT"),
    Setting("MSCC_CDS_ALLOW_UNAUTHENTICATED", "cds_allow_unauthenticated", _flag, False, "development only"),
    Setting("MSCC_CDS_CARD_LANGUAGE", "cds_card_language", _one_of("en", "fr"), "en", "language of CDS Hooks cards"),
    Setting("MSCC_TRIAGE_FHIR_SERVERS", "fhir_servers", _text, None, "FHIR servers that may be queried"),
    Setting("MSCC_CDS_STORE_PATH", "cds_store_path", _text, None, "SQLite file of the CDS store"),
    Setting("MSCC_CONTROL_SOCKET", "control_socket", _text, None, "gunicorn's control socket"),
    Setting("MSCC_MAX_BODY_BYTES", "max_body_bytes", _int_between(1024, 16 * 1024 * 1024), 64 * 1024,
            "largest request body"),
    Setting("MSCC_REQUEST_READ_TIMEOUT", "request_read_timeout", _number_between(0.1, 600), 10.0,
            "seconds a request may take to arrive"),
    Setting("MSCC_HOST", "host", _text, "127.0.0.1", "address the server listens on (set by triage serve)"),
    Setting("MSCC_PORT", "port", _int_between(0, 65535), 8000, "port the server listens on (set by triage serve)"),
    Setting("MSCC_WORKERS", "workers", _int_between(1, 256), None, "gunicorn processes (default: CPU count)"),
    Setting("MSCC_THREADS", "threads", _int_between(1, 256), None,
            "threads per process (default: 8; 2 when the record is PostgreSQL)"),
    Setting("MSCC_WORKER_CONNECTIONS", "worker_connections", _int_between(1, 100000), 500,
            "open connections per process"),
    Setting("MSCC_LOG_LEVEL", "log_level", _one_of("debug", "info", "warning", "error", "critical"), "info",
            "gunicorn's log level"),
)


@dataclass(frozen=True)
class Settings:
    """The values of :data:`SETTINGS` (``None``: not set, the documented default applies)."""

    rules_path: Optional[str] = None
    record_path: Optional[str] = None
    record_dsn: Optional[str] = None
    record_retention_days: Optional[int] = None
    public_base_url: Optional[str] = None
    cors_origins: Optional[str] = None
    cds_issuers_file: Optional[str] = None
    cds_jwt_max_lifetime_s: int = 300
    cds_allow_unauthenticated: bool = False
    cds_card_language: str = "en"
    fhir_servers: Optional[str] = None
    cds_store_path: Optional[str] = None
    control_socket: Optional[str] = None
    max_body_bytes: int = 64 * 1024
    request_read_timeout: float = 10.0
    host: str = "127.0.0.1"
    port: int = 8000
    workers: Optional[int] = None
    threads: Optional[int] = None
    worker_connections: int = 500
    log_level: str = "info"
    given: frozenset[str] = field(default=frozenset(), compare=False)   # the names set in the environment

    @property
    def server_threads(self) -> int:
        """Threads per worker process: ``MSCC_THREADS``, else 8 with the SQLite record, 2 with PostgreSQL.

        A request waits for its record's fsync; the threads of a worker that record at once share one
        (group commit), so more threads than cores keep the cores busy meanwhile (issue 26: with the
        record on disk, 2 workers x 8 threads served 1,690 requests/s, against 1,230-1,330 with 2 threads,
        and disk then cost 9-17% of tmpfs throughput, 31-32% with 2). With PostgreSQL each thread holds
        a connection for the record and one for the CDS store: 2 keeps a server of many cores under
        PostgreSQL's default of 100 connections."""
        if self.threads is not None:
            return self.threads
        return 2 if self.record_dsn else 8


def load_settings(environ: Optional[Mapping[str, str]] = None) -> Settings:
    """Read every setting once; a bad value raises :class:`SettingsError` naming the setting and why.
    An empty value counts as not set."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    given = set()
    for setting in SETTINGS:
        raw = env.get(setting.name)
        if raw is None or not raw.strip():
            values[setting.field] = setting.default
            continue
        given.add(setting.name)
        try:
            values[setting.field] = setting.parse(raw.strip())
        except ValueError as exc:
            raise SettingsError(f"{setting.name}={raw!r}: {exc}") from None
    return Settings(**values, given=frozenset(given))


__all__ = ["SETTINGS", "Setting", "Settings", "SettingsError", "load_settings", "parse_origins"]

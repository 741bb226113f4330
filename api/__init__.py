"""The mscc-triage HTTP service: a Flask app built by a factory; nothing happens at import time.

The core (``triage``) does the triage; this package translates HTTP to core calls and back.
The ruleset is loaded and checked once, in :func:`create_app`: a broken rule file stops the
server from starting, with the reason. durable-rules state is created lazily in each worker
process on its first evaluation, so a pre-forking server's master evaluates nothing.

Settings read from the environment when the config does not give them (``triage serve`` sets
some of them; the README's settings table is the reference):

- ``MSCC_PUBLIC_BASE_URL`` -> ``PUBLIC_BASE_URL``: the URL clients call, e.g.
  ``https://triage.example.org/``: the JWT audience and the links in cards; required when CDS Hooks
  issuers are configured, never taken from the request's Host header.
- ``MSCC_CDS_STORE_PATH`` -> ``CDS_STORE_PATH``: the SQLite file of seen JWT ids and feedback; by
  default a new private folder per app, shared by the workers of one server (loaded before they fork),
  removed when the process that built the app exits.
- ``MSCC_CDS_ISSUERS_FILE`` -> ``CDS_TRUSTED_ISSUERS``: a JSON file ``{"<iss>": {"keys": [JWK, ...]}}``
  or ``{"<iss>": {"jku": "https://..."}}`` of the EHRs allowed to call CDS Hooks, with their public keys
  or the one JWK Set URL each may use (``api/cds/jwks.py``).
- ``MSCC_CDS_JWT_MAX_LIFETIME_S`` -> ``CDS_JWT_MAX_LIFETIME_S``: the longest a CDS Hooks JWT may live,
  ``exp`` minus ``iat`` in seconds (default 300, as CDS Hooks recommends; at most 3600).
- ``MSCC_CDS_CARD_LANGUAGE`` -> ``CDS_CARD_LANGUAGE``: ``en`` (default) or ``fr``, the language of the
  CDS Hooks cards (the form's own French words, ``api/cds/cards.py``).
- ``MSCC_CDS_ALLOW_UNAUTHENTICATED=1`` -> ``CDS_ALLOW_UNAUTHENTICATED``: development only. Without
  trusted issuers and without this, every CDS Hooks service call answers 401.
- ``MSCC_RECORD_PATH`` -> ``RECORD_PATH`` and ``MSCC_RECORD_DSN`` -> ``RECORD_DSN``: the decision record
  (SQLite file, default ``~/.local/share/mscc-triage/records.sqlite3``; or PostgreSQL), see
  ``api/record_hook.py``.
- ``MSCC_MAX_BODY_BYTES``: the body limit (read by ``api/limits.py``).
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any, Mapping, Optional

import triage

from triage.settings import SettingsError, load_settings

if TYPE_CHECKING:   # Flask is imported by create_app, never when the package is imported
    from flask import Flask, Response

EXTENSION = "mscc_triage"

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; "
                               "object-src 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


_SECURITY_ITEMS = tuple((name.lower(), name, value) for name, value in SECURITY_HEADERS.items())


# Endpoints whose answers hold no clinical data (they may be cached as their own headers say).
CACHEABLE = frozenset({"static", "web.static", "v1.describe_ruleset", "v1.openapi", "v1.docs", "v1.format_doc",
                       "cds.discovery"})


class ApiConfigError(ValueError):
    """The service's configuration cannot work (found at start-up, never during a request)."""

    code = "invalid_config"


def create_app(config: Optional[Mapping[str, Any]] = None) -> Flask:
    """Build the app. ``config`` overrides defaults (e.g. ``MSCC_RULES_PATH`` for another ruleset)."""
    from flask import Flask

    app = Flask(__name__)
    try:
        settings = load_settings()        # every setting, read once, here (triage/settings.py)
    except SettingsError as exc:
        raise ApiConfigError(str(exc)) from None
    app.config.from_mapping(
        MSCC_SETTINGS=settings,
        MSCC_RULES_PATH=None,             # None: the project's rules/ (or $MSCC_TRIAGE_RULES)
        MAX_CONTENT_LENGTH=settings.max_body_bytes,  # bytes; a case is a few kB (documented in the README)
        PUBLIC_BASE_URL=settings.public_base_url,
        CDS_STORE_PATH=settings.cds_store_path,
        CDS_TRUSTED_ISSUERS=_issuers_from_file(settings.cds_issuers_file),
        CDS_ALLOW_UNAUTHENTICATED=settings.cds_allow_unauthenticated,
        CDS_JWT_MAX_LIFETIME_S=settings.cds_jwt_max_lifetime_s,
        CDS_CARD_LANGUAGE=settings.cds_card_language,
        CORS_ORIGINS=settings.cors_origins,
        FHIR_SERVERS=settings.fhir_servers,
        RECORD_PATH=settings.record_path,
        RECORD_DSN=settings.record_dsn,
    )
    if config:
        app.config.from_mapping(config)
    _check_config(app)
    app.extensions[EXTENSION] = triage.load_ruleset(app.config["MSCC_RULES_PATH"])

    from . import cors, http, record_hook, web

    record_hook.init_app(app)   # the decision record (before the views that write to it)
    http.init_app(app)
    web.init_app(app)
    cors.init_app(app)          # CORS on the CDS Hooks paths, for the origins named in MSCC_CORS_ORIGINS

    @app.after_request
    def _security_headers(response: Response) -> Response:
        from flask import request

        # Each header a view did not set itself, added in one pass over the response's headers (werkzeug's
        # setdefault scans them once per header: about 20 µs of every answer).
        headers = response.headers
        present = {name.lower() for name in headers.keys()}
        headers.extend([(name, value) for lower, name, value in _SECURITY_ITEMS if lower not in present])
        # A clinical answer (a result, a card, a form filled from the record) is never kept by a browser
        # or a proxy: every answer but the static files and the public reference documents.
        if request.endpoint not in CACHEABLE:
            if "cache-control" in present:
                headers["Cache-Control"] = "no-store"
            else:
                headers.add("Cache-Control", "no-store")
        return response

    return app


def _issuers_from_file(path: Optional[str]) -> dict[str, Any]:
    """Trusted CDS Hooks issuers from a JSON file; a missing or malformed file stops the start."""
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        raise ApiConfigError(f"MSCC_CDS_ISSUERS_FILE {path}: cannot be read as JSON ({exc})") from None
    from .cds.jwks import parse_issuers

    try:
        parse_issuers(data)   # keys inline or a JWK Set URL (api/cds/jwks.py); checked again, from the config, by cds
    except ValueError as exc:
        raise ApiConfigError(f"MSCC_CDS_ISSUERS_FILE {path}: {exc}") from None
    return data


def _check_config(app: Flask) -> None:
    base = app.config.get("PUBLIC_BASE_URL")
    if base:
        if not str(base).startswith(("https://", "http://")):
            raise ApiConfigError(f"PUBLIC_BASE_URL must be an http(s) URL, not {base!r}")
        app.config["PUBLIC_BASE_URL"] = str(base).rstrip("/") + "/"
    elif app.config.get("CDS_TRUSTED_ISSUERS"):
        raise ApiConfigError("CDS_TRUSTED_ISSUERS needs PUBLIC_BASE_URL (or MSCC_PUBLIC_BASE_URL, or "
                             "'triage serve --public-url'): the JWT audience is the URL the EHR calls, "
                             "never the request's Host header")
    try:
        configured = app.config.get("CDS_JWT_MAX_LIFETIME_S")
        lifetime = float(300 if configured is None or configured == "" else configured)
    except (TypeError, ValueError):
        lifetime = -1.0
    if not 0 < lifetime <= 3600:
        raise ApiConfigError("CDS_JWT_MAX_LIFETIME_S (MSCC_CDS_JWT_MAX_LIFETIME_S) must be a number of seconds "
                             f"above 0 and at most 3600, not {app.config.get('CDS_JWT_MAX_LIFETIME_S')!r}")
    app.config["CDS_JWT_MAX_LIFETIME_S"] = lifetime
    if not app.config.get("CDS_STORE_PATH"):
        from .scratch import private_folder

        app.config["CDS_STORE_PATH"] = os.path.join(private_folder("mscc-triage-"), "cds.sqlite3")


def ruleset_of(app: Flask) -> triage.Ruleset:
    """The ruleset the app was started with."""
    return app.extensions[EXTENSION]

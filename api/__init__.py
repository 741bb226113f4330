"""The mscc-triage HTTP service: a Flask app built by a factory; nothing happens at import time.

The core (``triage``) does the triage; this package translates HTTP to core calls and back.
The ruleset is loaded and checked once, in :func:`create_app`: a broken rule file stops the
server from starting, with the reason. durable-rules state is created lazily in each worker
process on its first evaluation, so a pre-forking server's master evaluates nothing.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from flask import Flask

import triage

EXTENSION = "mscc_triage"


def create_app(config: Optional[Mapping[str, Any]] = None) -> Flask:
    """Build the app. ``config`` overrides defaults (e.g. ``MSCC_RULES_PATH`` for another ruleset)."""
    app = Flask(__name__)
    app.config.from_mapping(
        MSCC_RULES_PATH=None,             # None: the project's rules/ (or $MSCC_TRIAGE_RULES)
        MAX_CONTENT_LENGTH=64 * 1024,     # bytes; a case is a few kB (documented in the README)
    )
    if config:
        app.config.from_mapping(config)
    app.extensions[EXTENSION] = triage.load_ruleset(app.config["MSCC_RULES_PATH"])

    from . import http, web

    http.init_app(app)
    web.init_app(app)
    return app


def ruleset_of(app: Flask) -> triage.Ruleset:
    """The ruleset the app was started with."""
    return app.extensions[EXTENSION]

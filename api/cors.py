"""CORS for the CDS Hooks endpoints: browser-based EHR front ends and CDS Hooks sandboxes call the
service from a page on another origin, and CDS Hooks 2.0 asks services to support it.

Only origins named in ``MSCC_CORS_ORIGINS`` (``CORS_ORIGINS`` in the app config: a comma-separated
list of origins such as ``https://ehr.example.org``, or ``*``) are granted; unset, none is. Only the
CDS Hooks paths answer CORS: discovery, the service and its feedback. A preflight (``OPTIONS``) is
answered by Flask's automatic OPTIONS response, to which the allowed method and headers are added
(``Authorization`` and ``Content-Type``: the JWT and the JSON body). The grant never replaces the JWT:
a page on an allowed origin still needs a token the service trusts.
"""

from __future__ import annotations

from typing import Optional

from flask import Flask, Response, request

from triage import settings

SETTING = "MSCC_CORS_ORIGINS"
PATHS = "/cds-services"


def parse_origins(raw: Optional[str]) -> frozenset[str]:
    """The allowed origins of the setting; a malformed one stops the start with the setting's name."""
    try:
        return settings.parse_origins(raw)
    except ValueError as exc:
        from . import ApiConfigError

        raise ApiConfigError(f"{SETTING}: {exc}") from None


def init_app(app: Flask) -> None:
    given = app.config.get("CORS_ORIGINS")   # MSCC_CORS_ORIGINS, read with every setting by create_app
    app.config["CORS_ORIGINS"] = parse_origins(given if given is None or isinstance(given, str) else ",".join(given))

    @app.after_request
    def _cors(response: Response) -> Response:
        origin = request.headers.get("Origin")
        allowed = app.config["CORS_ORIGINS"]
        if not origin or not request.path.startswith(PATHS) or not allowed:
            return response
        if "*" not in allowed and origin.rstrip("/") not in allowed:
            return response
        response.headers["Access-Control-Allow-Origin"] = "*" if "*" in allowed else origin
        response.headers.add("Vary", "Origin")
        response.headers["Access-Control-Expose-Headers"] = "X-Request-Id"
        if request.method == "OPTIONS":
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
            response.headers["Access-Control-Max-Age"] = "600"
        return response

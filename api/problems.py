"""RFC 9457 problem details: every error the service returns, in one place.

The map from the core's error tree to HTTP lives here and nowhere else:
CaseValidationError -> 422 (every field's path and reason), malformed JSON -> 400,
body over the limit -> 413, wrong content type -> 415, unknown path -> 404, wrong method -> 405,
CDS Hooks: missing prefetch -> 412, bad or missing JWT -> 401; the engine failed (EngineError) or
the CDS store cannot be written (read-only, full, missing) -> 503 with the reason and ``Retry-After``;
anything unexpected -> 500 with no internals (logged without any case content).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from triage import CASE_FORMAT, CaseValidationError, EngineError, TriageError

PROBLEM = "application/problem+json"
log = logging.getLogger("mscc_triage.api")


def problem(status: int, title: str, detail: str = "", type_: str = "about:blank", **extra: Any) -> Response:
    body: dict[str, Any] = {"type": type_, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extra)
    return Response(json.dumps(body, ensure_ascii=False), status=status, mimetype=PROBLEM)


def invalid_case(exc: CaseValidationError) -> Response:
    return problem(422, "Invalid case", f"The case does not follow case-format {CASE_FORMAT}: see errors.",
                   "urn:mscc-triage:problem:invalid-case", errors=[p.as_dict() for p in exc.problems])


def unavailable(detail: str, type_: str, retry_after: int = 5) -> Response:
    """503: the service cannot answer this request now, and says why."""
    response = problem(503, "Service Unavailable", detail, type_)
    response.headers["Retry-After"] = str(retry_after)
    return response


class ApiProblem(Exception):
    """Raised by a view to answer with a problem document."""

    def __init__(self, status: int, title: str, detail: str = "", type_: str = "about:blank", **extra: Any):
        super().__init__(detail or title)
        self.response = problem(status, title, detail, type_, **extra)


def init_app(app: Flask) -> None:
    @app.errorhandler(ApiProblem)
    def _api_problem(exc: ApiProblem) -> Response:
        return exc.response

    @app.errorhandler(CaseValidationError)
    def _invalid(exc: CaseValidationError) -> Response:
        return invalid_case(exc)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        status = exc.code or 500
        detail = {
            404: f"No resource at {request.path}.",
            405: f"{request.method} is not allowed on {request.path}.",
            413: f"The body is larger than {app.config.get('MAX_CONTENT_LENGTH')} bytes.",
        }.get(status, exc.description or "")
        response = problem(status, exc.name, detail)
        if status == 405 and getattr(exc, "valid_methods", None):
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(EngineError)
    def _engine_error(exc: EngineError) -> Response:
        # Crash isolation: the request gets a clear answer, the worker carries on.
        log.error("engine failure %s on %s %s", exc.code, request.method, request.path)
        return unavailable("The triage engine failed on this case; no result was produced. "
                           "Triage the patient clinically; the failure is logged.",
                           "urn:mscc-triage:problem:engine-failure")

    @app.errorhandler(TriageError)
    def _triage_error(exc: TriageError) -> Response:
        log.error("triage error %s on %s %s", exc.code, request.method, request.path)
        return problem(500, "Internal error", "The triage engine failed; no result was produced.")

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        # Never the case, never the case_id, never a traceback to the client.
        log.error("unexpected %s on %s %s", type(exc).__name__, request.method, request.path)
        return problem(500, "Internal error", "The request could not be processed; no result was produced.")

"""The JSON API: ``POST /v1/triage``, ``GET /v1/ruleset``, ``GET /healthz``, OpenAPI and the API page."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Flask, Response, current_app, render_template_string, request

import triage

from . import cds, problems
from .problems import ApiProblem

bp = Blueprint("v1", __name__)
JSON_TYPES = ("application/json",)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"the key '{key}' appears twice in one object")
        seen[key] = value
    return seen


def read_json_body() -> Any:
    """The request body as JSON: 415 unless JSON, 413 over the limit, 400 unless well-formed."""
    mimetype = request.mimetype or ""
    if mimetype not in JSON_TYPES and not mimetype.endswith("+json"):
        raise ApiProblem(415, "Unsupported Media Type",
                         f"Send the case as application/json, not {mimetype or 'no content type'}.")
    raw = request.get_data(cache=False)  # raises 413 past MAX_CONTENT_LENGTH
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant, object_pairs_hook=_no_duplicates)
    except UnicodeDecodeError:
        raise ApiProblem(400, "Malformed JSON", "The body is not UTF-8 text.") from None
    except ValueError as exc:
        raise ApiProblem(400, "Malformed JSON", f"The body is not valid JSON: {exc}") from None


def ruleset() -> triage.Ruleset:
    from . import ruleset_of

    return ruleset_of(current_app)


def json_response(text: str, status: int = 200) -> Response:
    return Response(text, status=status, mimetype="application/json")


@bp.post("/v1/triage")
def triage_case() -> Response:
    """Triage one case (case-format v1) and return the result (result-format v1)."""
    data = read_json_body()
    return json_response(ruleset().evaluate(data).to_json())


@bp.get("/v1/ruleset")
def describe_ruleset() -> Response:
    data = ruleset().data
    body = {
        "name": data.name, "version": data.version, "sha256": data.sha256, "disclaimer": data.disclaimer,
        "rules": [{"id": r.id, "version": r.version, "title": r.title, "rationale": r.rationale, "source": r.source}
                  for r in data.rules],
        "vocabulary": {
            "actions": [a.model_dump() for a in data.actions.values()],
            "flags": [f.model_dump() for f in data.flags.values()],
        },
    }
    return json_response(json.dumps(body, ensure_ascii=False))


@bp.get("/healthz")
def healthz() -> Response:
    rs = ruleset()
    return json_response(json.dumps({"status": "ok", "ruleset": {"name": rs.name, "version": rs.version,
                                                                 "sha256": rs.sha256}}))


@bp.get("/openapi.json")
def openapi() -> Response:
    return json_response(json.dumps(openapi_document(), ensure_ascii=False))


def openapi_document() -> dict[str, Any]:
    """OpenAPI 3.1, with the schemas generated from the same pydantic models the core validates with."""
    from pydantic.json_schema import models_json_schema

    _, schemas = models_json_schema([(triage.Case, "validation"), (triage.Result, "serialization")],
                                    ref_template="#/components/schemas/{model}")
    components = schemas.get("$defs", {})
    problem_schema = {
        "type": "object",
        "properties": {"type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                       "detail": {"type": "string"},
                       "errors": {"type": "array", "items": {"type": "object", "properties": {
                           "path": {"type": "string"}, "reason": {"type": "string"}, "code": {"type": "string"}}}}},
        "required": ["type", "title", "status"],
    }
    components["Problem"] = problem_schema

    def problem_response(description: str) -> dict[str, Any]:
        return {"description": description,
                "content": {problems.PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}}

    return {
        "openapi": "3.1.0",
        "info": {"title": "mscc-triage", "version": triage.__version__,
                 "description": "Triage of suspected metastatic spinal cord compression. Decision support for "
                                "clinicians; it does not replace clinical judgement."},
        "paths": {
            "/v1/triage": {"post": {
                "summary": "Triage one case",
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Case"}}}},
                "responses": {
                    "200": {"description": "The result", "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/Result"}}}},
                    "400": problem_response("Malformed JSON"),
                    "413": problem_response("Body larger than the limit"),
                    "415": problem_response("Not JSON"),
                    "422": problem_response("Invalid case: every field's path and reason"),
                }}},
            "/v1/ruleset": {"get": {"summary": "The ruleset: rules with sources, and the vocabulary",
                                    "responses": {"200": {"description": "The ruleset"}}}},
            "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "ok"}}}},
            "/cds-services": {"get": {"summary": "CDS Hooks 2.0 discovery",
                                      "responses": {"200": {"description": "The services"}}}},
            "/cds-services/mscc-triage": {"post": {
                "summary": "CDS Hooks 2.0 patient-view service",
                "responses": {"200": {"description": "Cards"}, "400": problem_response("Malformed request"),
                              "401": problem_response("Missing or invalid JWT"),
                              "412": problem_response("Required prefetch missing")}}},
            "/cds-services/mscc-triage/feedback": {"post": {
                "summary": "CDS Hooks feedback", "responses": {"200": {"description": "Recorded"}}}},
        },
        "components": {"schemas": components},
    }


API_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>mscc-triage API</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;color:#111}
code,pre{background:#f3f3f3;padding:.1rem .3rem}pre{padding:.8rem;overflow:auto}h2{margin-top:2rem}</style></head>
<body><h1>mscc-triage API</h1>
<p>Ruleset <b>{{ rs.name }} {{ rs.version }}</b>, sha256 <code>{{ rs.sha256 }}</code>.
Decision support for clinicians; it does not replace clinical judgement.</p>
<h2>POST /v1/triage</h2><p>A case (case-format v1) in, a result (result-format v1) out.
Errors are problem details (<code>application/problem+json</code>): 422 lists every invalid field's path and reason;
400 malformed JSON; 413 over {{ limit }} bytes; 415 not JSON.</p>
<pre>curl -s -X POST {{ root }}v1/triage -H 'Content-Type: application/json' \\
  -d '{"patient": {"cancer": {"history": "current"}}, "presentation": {"weakness": {"present": true}}}'</pre>
<h2>GET /v1/ruleset</h2><p>Every rule (id, version, title, rationale, source) and the vocabulary.</p>
<h2>GET /openapi.json</h2><p>The OpenAPI 3.1 description, generated from the models the engine validates with.</p>
<h2>CDS Hooks 2.0</h2><p><code>GET /cds-services</code> (discovery), <code>POST /cds-services/mscc-triage</code>
(hook <code>patient-view</code>), <code>POST /cds-services/mscc-triage/feedback</code>.</p>
<h2>GET /healthz</h2><p>Liveness and the ruleset in use.</p>
</body></html>"""


@bp.get("/docs")
def docs() -> str:
    return render_template_string(API_PAGE, rs=ruleset(), root=request.url_root,
                                  limit=current_app.config.get("MAX_CONTENT_LENGTH"))


def init_app(app: Flask) -> None:
    """Register the API blueprints and error handlers."""
    problems.init_app(app)
    app.register_blueprint(bp)
    cds.init_app(app)

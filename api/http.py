"""The JSON API: ``POST /v1/triage``, ``GET /v1/ruleset``, ``GET /healthz``, OpenAPI and the API page."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from flask import Blueprint, Flask, Response, current_app, render_template_string, request

import triage

from . import problems, record_hook
from .body import read_json_body
from .cds import service as cds
from .limits import MAX_JSON_DEPTH
from .problems import ApiProblem

bp = Blueprint("v1", __name__)
def ruleset() -> triage.Ruleset:
    from . import ruleset_of

    return ruleset_of(current_app)


def json_response(text: str, status: int = 200) -> Response:
    return Response(text, status=status, mimetype="application/json")


@bp.post("/v1/triage")
def triage_case() -> Response:
    """Triage one case (case-format 2.2) and return the result (result-format 2.2)."""
    data = read_json_body()
    rules = ruleset()
    case = triage.validate_case(data)   # once: the evaluation and the record share it
    result = rules.evaluate(case)
    dumped = result.model_dump(mode="json")   # once, for the record and the answer (Result.to_json's form)
    written = record_hook.record("api", case, result, dumped=dumped)   # before answering: 503 if it cannot be written
    if _wants_fhir():   # an EHR that stores decision support as FHIR: the result as a GuidanceResponse
        from .guidance import guidance_response

        resource = guidance_response(result, rules, cds.public_root(), request_id=written.id)
        return Response(json.dumps(resource, ensure_ascii=False), mimetype="application/fhir+json")
    return json_response(triage.Result.json_of(dumped))   # Result.to_json's bytes


def _wants_fhir() -> bool:
    """``Accept: application/fhir+json`` preferred over plain JSON asks for the FHIR form of the result.

    Media types are compared without case and without their parameters (RFC 9110, 8.3.1 and 12.5.1):
    ``application/fhir+json; fhirVersion=4.0`` (FHIR R4's own parameter) asks for FHIR too. A type's
    quality is that of the most specific range naming it; a wildcard gives plain JSON the same quality
    as FHIR, and plain JSON wins a tie."""
    header = request.environ.get("HTTP_ACCEPT", "")
    if "fhir" not in header.lower():   # most calls: no need to parse the header
        return False
    fhir, json_, any_app, anything = None, None, None, None
    for part in header.split(","):
        media, *params = [p.strip() for p in part.split(";")]
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = max(0.0, min(1.0, float(value.strip())))
                except ValueError:
                    quality = 0.0
        media = media.lower()
        if media == "application/fhir+json":
            fhir = max(fhir or 0.0, quality)
        elif media == "application/json":
            json_ = max(json_ or 0.0, quality)
        elif media == "application/*":
            any_app = max(any_app or 0.0, quality)
        elif media == "*/*":
            anything = max(anything or 0.0, quality)
    if not fhir:   # FHIR must be named, with a quality above 0
        return False
    plain = next((q for q in (json_, any_app, anything) if q is not None), 0.0)
    return fhir > plain


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


HEALTH_CASE = {"patient": {"cancer": {"history": "current"}}, "presentation": {"weakness": {"present": True}}}


def _ruleset_health(rs: triage.Ruleset) -> Optional[str]:
    """None when the ruleset answers a case in this worker (nothing recorded), else why not."""
    try:
        rs.evaluate_afresh(HEALTH_CASE)   # the engine itself, not an answer kept from an earlier call
    except triage.TriageError as exc:
        return f"the triage engine fails ({exc.code})"
    return None


@bp.get("/healthz")
def healthz() -> Response:
    """200 ``ok`` when every part a triage needs works; 503 ``degraded`` naming each part that does not:
    the ruleset (it evaluates a case), the decision record (a write, rolled back: every triage is
    recorded before it is answered) and the CDS store."""
    rs = ruleset()
    problems_found = {"ruleset": _ruleset_health(rs),
                      "record_store": record_hook.store_of(current_app).health(),
                      "cds_store": cds.store_health(current_app)}
    checks = {name: {"status": "ok"} if why is None else {"status": "failing", "reason": why}
              for name, why in problems_found.items()}
    healthy = all(why is None for why in problems_found.values())
    body = {"status": "ok" if healthy else "degraded",
            "ruleset": {"name": rs.name, "version": rs.version, "sha256": rs.sha256},
            "checks": checks}
    return json_response(json.dumps(body), 200 if healthy else 503)


@bp.get("/openapi.json")
def openapi() -> Response:
    return json_response(json.dumps(openapi_document(), ensure_ascii=False))


STRICT_INTEGER = ("A whole number: 70, or 70.0 (case-format 2.2 reads a zero fraction as the integer); 70.5 is "
                  "refused with 422 (code int_type), and so is a string or a boolean.")


def _note_strict_integers(node: Any) -> None:
    """Say on every integer property what it accepts (70 and 70.0) and refuses (70.5, "70", true)."""
    if isinstance(node, dict):
        types = [node.get("type")] + [alt.get("type") for alt in node.get("anyOf", []) if isinstance(alt, dict)]
        if "integer" in types and "properties" not in node:
            node["description"] = (node.get("description", "") + " " + STRICT_INTEGER).strip()
        for key, value in node.items():
            if key != "anyOf":
                _note_strict_integers(value)
    elif isinstance(node, list):
        for value in node:
            _note_strict_integers(value)


def openapi_document() -> dict[str, Any]:
    """OpenAPI 3.1, with the schemas generated from the same pydantic models the core validates with.

    Every status the service can answer is documented, each error as a problem document. Integer
    fields of the case say what they accept: a whole number, 70.0 read as 70 (case-format 2.2); 70.5,
    strings and booleans are refused with 422.
    """
    from pydantic.json_schema import models_json_schema

    _, schemas = models_json_schema([(triage.Case, "validation"), (triage.Result, "serialization")],
                                    ref_template="#/components/schemas/{model}")
    components = schemas.get("$defs", {})
    _note_strict_integers(components.get("Case"))
    for name, schema in components.items():
        if name not in ("Case", "Result") and schema.get("additionalProperties") is False:
            _note_strict_integers(schema)   # the case's sub-models (the result's are outputs)
    components["Problem"] = {
        "type": "object",
        "properties": {"type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                       "detail": {"type": "string"},
                       "errors": {"type": "array", "items": {"type": "object", "properties": {
                           "path": {"type": "string"}, "reason": {"type": "string"}, "code": {"type": "string"}}}}},
        "required": ["type", "title", "status"],
    }
    components["Health"] = {
        "type": "object", "required": ["status", "ruleset", "checks"],
        "properties": {"status": {"enum": ["ok", "degraded"]},
                       "ruleset": {"type": "object", "required": ["name", "version", "sha256"]},
                       "checks": {"type": "object", "properties": {name: {
                           "type": "object", "required": ["status"],
                           "properties": {"status": {"enum": ["ok", "failing"]}, "reason": {"type": "string"}}}
                           for name in ("ruleset", "record_store", "cds_store")}}},
    }
    components["CdsResponse"] = {"type": "object", "required": ["cards"],
                                 "properties": {"cards": {"type": "array", "items": {
                                     "type": "object", "required": ["uuid", "summary", "indicator", "source"],
                                     "properties": {"summary": {"type": "string", "maxLength": 140},
                                                    "indicator": {"enum": ["info", "warning", "critical"]}}}}}}
    json_object = {"type": "object"}

    def problem_response(description: str) -> dict[str, Any]:
        return {"description": description,
                "content": {problems.PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}}

    def ok(description: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {"schema": schema}}}

    read_errors = {
        "400": problem_response("Malformed JSON (also duplicate keys, NaN, nesting deeper than "
                                f"{MAX_JSON_DEPTH}), or a malformed request"),
        "408": problem_response("The request was not complete in time (production server)"),
        "413": problem_response(f"Body larger than {current_app.config['MAX_CONTENT_LENGTH']} bytes, chunked or not"),
        "415": problem_response("Not JSON (send application/json), or a body with a Content-Encoding (send it as it is)"),
        "431": problem_response("Request header fields too large (production server)"),
    }
    failures = {
        "500": problem_response("Unexpected failure; no internals are returned"),
        "503": problem_response("The engine failed on this case, or the CDS store or the decision record "
                                "cannot be written: no result, see detail; retry after Retry-After seconds"),
    }
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
                    "200": {**ok("The result", {"$ref": "#/components/schemas/Result"}),
                            "headers": {"X-Request-Id": {"description": "The id of this decision's record "
                                                         "('triage audit show ID')", "schema": {"type": "string"}}}},
                    **read_errors,
                    "422": problem_response("Invalid case: every field's path and reason"),
                    **failures,
                }}},
            "/v1/ruleset": {"get": {"summary": "The ruleset: rules with sources, and the vocabulary",
                                    "responses": {"200": ok("The ruleset", json_object)}}},
            "/healthz": {"get": {"summary": "Health: the ruleset in use and whether it evaluates, and whether the "
                                            "decision record and the CDS store can be written",
                                 "responses": {"200": ok("Every part works",
                                                         {"$ref": "#/components/schemas/Health"}),
                                               "503": ok("Degraded: checks names the failing part and why",
                                                         {"$ref": "#/components/schemas/Health"})}}},
            "/cds-services": {"get": {"summary": "CDS Hooks 2.0 discovery",
                                      "responses": {"200": ok("The services", json_object)}}},
            "/cds-services/mscc-triage": {"post": {
                "summary": "CDS Hooks 2.0 patient-view service",
                "requestBody": {"required": True, "content": {"application/json": {"schema": json_object}}},
                "responses": {"200": ok("Cards", {"$ref": "#/components/schemas/CdsResponse"}),
                              **read_errors,
                              "401": problem_response("Missing or invalid JWT"),
                              "412": problem_response("Required prefetch missing"),
                              **failures}}},
            "/cds-services/mscc-triage/feedback": {"post": {
                "summary": "CDS Hooks feedback: recorded all or nothing (card id, outcome, override reason code)",
                "requestBody": {"required": True, "content": {"application/json": {"schema": json_object}}},
                "responses": {"200": ok("Recorded", json_object), **read_errors,
                              "401": problem_response("Missing or invalid JWT"), **failures}}},
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
<h2>Formats</h2><p><a href="docs/case-format.md">The case</a> (case-format 2.2),
<a href="docs/result-format.md">the result</a> (result-format 2.2) and
<a href="docs/vignette-format.md">vignettes</a> (the replayable test format).</p>
<h2>POST /v1/triage</h2><p>A case (case-format 2.2) in, a result (result-format 2.2) out.
Errors are problem details (<code>application/problem+json</code>): 422 lists every invalid field's path and reason;
400 malformed JSON; 413 over {{ limit }} bytes; 415 not JSON, or compressed; 503 when the engine failed on the case
(no result: triage clinically) or the CDS store cannot be written.</p>
<pre>curl -s -X POST {{ root }}v1/triage -H 'Content-Type: application/json' \\
  -d '{"patient": {"cancer": {"history": "current"}}, "presentation": {"weakness": {"present": true}}}'</pre>
<h2>GET /v1/ruleset</h2><p>Every rule (id, version, title, rationale, source) and the vocabulary.</p>
<h2>GET /openapi.json</h2><p>The OpenAPI 3.1 description, generated from the models the engine validates with.</p>
<h2>CDS Hooks 2.0</h2><p><code>GET /cds-services</code> (discovery), <code>POST /cds-services/mscc-triage</code>
(hook <code>patient-view</code>), <code>POST /cds-services/mscc-triage/feedback</code>.</p>
<h2>GET /healthz</h2><p>The ruleset in use, and whether it evaluates, the decision record and the CDS store
can be written (503 "degraded" naming the failing part and why when one cannot).</p>
</body></html>"""


@bp.get("/docs")
def docs() -> Response:
    root = current_app.config.get("PUBLIC_BASE_URL") or request.url_root
    response = Response(render_template_string(API_PAGE, rs=ruleset(), root=root,
                                               limit=current_app.config.get("MAX_CONTENT_LENGTH")), mimetype="text/html")
    # the page's own inline <style>, nothing else inline
    response.headers["Content-Security-Policy"] = ("default-src 'self'; style-src 'self' 'unsafe-inline'; "
                                                   "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; "
                                                   "object-src 'none'")
    return response


DOC_NAMES = ("case-format.md", "result-format.md", "vignette-format.md")


def docs_folder() -> Path:
    """The format documents: inside the installed package, or the repository's top-level docs/."""
    packaged = Path(__file__).resolve().parent / "docs"
    return packaged if (packaged / DOC_NAMES[0]).is_file() else Path(__file__).resolve().parent.parent / "docs"


@bp.get("/docs/<name>")
def format_doc(name: str) -> Response:
    if name not in DOC_NAMES:
        raise ApiProblem(404, "Not Found", f"No document {name!r}; there are {', '.join(DOC_NAMES)}.")
    text = (docs_folder() / name).read_text(encoding="utf-8")
    return Response(text, mimetype="text/markdown")


def init_app(app: Flask) -> None:
    """Register the API blueprints and error handlers."""
    problems.init_app(app)
    app.register_blueprint(bp)
    cds.init_app(app)

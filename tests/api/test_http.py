"""POST /v1/triage, GET /v1/ruleset, /healthz, /openapi.json, /docs, and every error status."""

from __future__ import annotations

import json

import pytest

import triage

CASE = {"case_id": "h-1", "patient": {"cancer": {"history": "current", "primary": "prostate"}},
        "presentation": {"weakness": {"present": True, "limbs": "legs", "bilateral": True}}}


def test_triage_returns_the_core_result(client):
    response = client.post("/v1/triage", json=CASE)
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_data(as_text=True) == triage.evaluate(CASE).to_json()
    assert response.get_json()["urgency"] == "emergency"


def test_invalid_case_is_422_with_every_field(client):
    response = client.post("/v1/triage", json={"patient": {"age_years": 121},
                                               "presentation": {"weakness": {"present": "yes", "progresive": True}}})
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == 422 and body["title"] == "Invalid case"
    paths = {e["path"]: e for e in body["errors"]}
    assert set(paths) == {"patient.age_years", "presentation.weakness.present", "presentation.weakness.progresive"}
    assert "did you mean" in paths["presentation.weakness.progresive"]["reason"]


def test_contradiction_is_422_naming_both_fields(client):
    body = client.post("/v1/triage", json={"assessment": {"mri_performed": False, "mri_compression": True}}).get_json()
    text = json.dumps(body["errors"])
    assert "assessment.mri_performed" in text and "assessment.mri_compression" in text


@pytest.mark.parametrize("data, status", [
    (b"{not json", 400),
    (b'{"a": NaN}', 400),
    (b"\xff\xfe", 400),
    (b'{"patient": {}, "patient": {}}', 400),
    (b"[1, 2]", 422),
    (b'"text"', 422),
])
def test_malformed_bodies(client, data, status):
    response = client.post("/v1/triage", data=data, content_type="application/json")
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    assert "Traceback" not in response.get_data(as_text=True)


def test_wrong_content_type_is_415(client):
    response = client.post("/v1/triage", data=json.dumps(CASE), content_type="text/plain")
    assert response.status_code == 415 and response.mimetype == "application/problem+json"


@pytest.mark.parametrize("charset, status", [("latin-1", 415), ("ISO-8859-1", 415), ("utf-16", 415),
                                             ("utf-8", 200), ("UTF-8", 200), ("utf8", 200)])
def test_json_in_another_charset_is_415(client, charset, status):
    """RFC 8259 8.1: JSON is UTF-8. A body said to be Latin-1 was read as UTF-8, as what it is not (audit of
    6 December); it is now refused, naming the charset."""
    response = client.post("/v1/triage", data=b'{"patient": {"cancer": {"history": "current"}}}',
                           content_type=f"application/json; charset={charset}")
    assert response.status_code == status, response.get_data(as_text=True)
    if status == 415:
        assert response.mimetype == "application/problem+json" and charset in response.get_json()["detail"]


def test_a_compressed_body_is_415_naming_the_coding(client):
    """Reviewer B (5 December): Content-Encoding was ignored, so gzip bytes were read as the JSON text
    (a 400 "not UTF-8"), and a body marked gzip but sent plain was triaged as if unmarked."""
    import gzip

    for data, coding in ((gzip.compress(json.dumps(CASE).encode()), "gzip"), (json.dumps(CASE).encode(), "gzip"),
                         (json.dumps(CASE).encode(), "identity, br")):
        response = client.post("/v1/triage", data=data, content_type="application/json",
                               headers={"Content-Encoding": coding})
        assert response.status_code == 415 and response.mimetype == "application/problem+json", coding
        assert response.headers["Accept-Encoding"] == "identity"
        assert coding.split(", ")[-1] in response.get_json()["detail"]
    response = client.post("/v1/triage", data=json.dumps(CASE), content_type="application/json",
                           headers={"Content-Encoding": "identity"})
    assert response.status_code == 200


def test_body_over_the_limit_is_413(client, app):
    big = b'{"case_id": "' + b"x" * (app.config["MAX_CONTENT_LENGTH"] + 10) + b'"}'
    response = client.post("/v1/triage", data=big, content_type="application/json")
    assert response.status_code == 413 and response.mimetype == "application/problem+json"


def test_404_and_405_are_problems(client):
    r404 = client.get("/v2/triage")
    assert r404.status_code == 404 and r404.mimetype == "application/problem+json"
    r405 = client.get("/v1/triage")
    assert r405.status_code == 405 and r405.mimetype == "application/problem+json"
    assert "POST" in r405.headers["Allow"]


def test_unexpected_failure_is_a_500_problem_without_internals(app):
    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals")

    response = app.test_client().get("/boom")
    assert response.status_code == 500 and response.mimetype == "application/problem+json"
    assert "secret" not in response.get_data(as_text=True)


def test_ruleset_lists_every_rule_and_the_vocabulary(client):
    body = client.get("/v1/ruleset").get_json()
    rs = triage.default_ruleset()
    assert body["sha256"] == rs.sha256 and body["name"] == "mscc"
    assert [r["id"] for r in body["rules"]] == [r.id for r in rs.data.rules]
    assert all(r["source"] and r["rationale"] for r in body["rules"])
    assert {a["id"] for a in body["vocabulary"]["actions"]} == set(rs.data.actions)
    assert all("timing" in a for a in body["vocabulary"]["actions"])
    assert all("severity" in f for f in body["vocabulary"]["flags"])


def test_healthz(client):
    assert client.get("/healthz").get_json()["status"] == "ok"


def test_openapi_is_generated_from_the_models(client):
    doc = client.get("/openapi.json").get_json()
    assert doc["openapi"].startswith("3.1")
    schemas = doc["components"]["schemas"]
    assert "Case" in schemas and "Result" in schemas
    assert schemas["Case"]["additionalProperties"] is False
    assert "/v1/triage" in doc["paths"] and "422" in doc["paths"]["/v1/triage"]["post"]["responses"]


def test_api_page(client):
    page = client.get("/docs").get_data(as_text=True)
    assert "POST /v1/triage" in page and "curl" in page


def test_no_state_leaks_between_requests(client):
    first = client.post("/v1/triage", json=CASE).get_json()
    client.post("/v1/triage", json={"case_id": "other", "labs": {"corrected_calcium_mmol_l": 3.7}})
    assert client.post("/v1/triage", json=CASE).get_json() == first


@pytest.mark.parametrize("accept, fhir", [
    ("application/fhir+json", True),
    ("application/fhir+json; fhirVersion=4.0", True),        # FHIR R4's own parameter (audit of 5 December)
    ("application/fhir+json;charset=utf-8", True),
    ("Application/FHIR+JSON", True),                         # media types are case-insensitive (RFC 9110)
    ("application/fhir+json, application/json;q=0.5", True),
    ("application/json, application/fhir+json;q=0.5", False),
    ("application/fhir+json, */*", False),                   # a tie: plain JSON
    ("application/fhir+json;q=0", False),
    ("application/fhir+json;q=oops", False),
    ("*/*", False),
])
def test_the_fhir_form_is_asked_for_by_accept(client, accept, fhir):
    response = client.post("/v1/triage", json=CASE, headers={"Accept": accept})
    assert response.status_code == 200
    assert (response.mimetype == "application/fhir+json") is fhir, accept
    assert (response.get_json()["resourceType"] == "GuidanceResponse") if fhir else ("urgency" in response.get_json())


def test_a_number_too_small_for_a_float_is_refused_not_read_as_zero(client):
    for body in ('{"patient": {"age_years": 1e-400}}', '{"presentation": {"weakness": {"onset_hours": -1e-400}}}'):
        response = client.post("/v1/triage", data=body, content_type="application/json")
        assert response.status_code == 400 and "too small" in response.get_json()["detail"], body
    for body in ('{"presentation": {"weakness": {"onset_hours": 0e-400}}}', '{"patient": {"age_years": 0.0}}'):
        assert client.post("/v1/triage", data=body, content_type="application/json").status_code == 200, body

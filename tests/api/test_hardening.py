"""Issue 10 (HTTP side): malformed input never gives a 500, limits hold whatever the framing, the JWT
audience is the configured public URL, CDS store failures answer 503, crashes are isolated, headers."""

from __future__ import annotations

import base64
import io
import json
import sqlite3
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

import triage
from mscc_triage_api import ApiConfigError, create_app
from mscc_triage_api.cds import store as cds_store
from mscc_triage_api.cds.service import recorded_feedback

SERVICE = "/cds-services/mscc-triage"
FEEDBACK = SERVICE + "/feedback"
CASE = {"patient": {"cancer": {"history": "current"}}, "presentation": {"weakness": {"present": True}}}


def cds_body(**prefetch_changes) -> dict:
    prefetch = {"patient": {"resourceType": "Patient", "id": "p1", "birthDate": "1958-03-14"},
                "conditions": {"resourceType": "Bundle", "type": "searchset", "entry": []},
                "observations": {"resourceType": "Bundle", "type": "searchset", "entry": []}}
    prefetch.update(prefetch_changes)
    return {"hook": "patient-view", "hookInstance": str(uuid.uuid4()),
            "context": {"userId": "Practitioner/1", "patientId": "p1"}, "prefetch": prefetch}


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == status and "Traceback" not in json.dumps(body)
    return body


# ------------------------------------------------------------------------------ item 4: malformed input

@pytest.mark.parametrize("digits", [4001, 5000, 60_000])
def test_a_whole_number_of_too_many_digits_is_a_400_in_our_words(client, digits):
    """Audit of 5 December: 5,000 digits answered with Python's own limit message (sys.set_int_max_str_digits)."""
    for sign in ("", "-"):
        body = assert_problem(client.post("/v1/triage", data='{"patient": {"age_years": %s%s}}' % (sign, "9" * digits),
                                          content_type="application/json"), 400)
        assert f"a whole number of {digits} digits (at most 4000 are read)" in body["detail"]
        assert "sys." not in body["detail"] and "4300" not in body["detail"]
    # 4,000 digits are read, and refused by the case's own bound, naming the field
    assert client.post("/v1/triage", data='{"patient": {"age_years": %s}}' % ("9" * 4000),
                       content_type="application/json").status_code == 422


def test_10000_level_nesting_is_a_400(client):
    for data in (b"[" * 10_000 + b"]" * 10_000, b'{"a":' * 10_000 + b"1" + b"}" * 10_000):
        body = assert_problem(client.post("/v1/triage", data=data, content_type="application/json"), 400)
        assert "deep" in body["detail"]


def test_nesting_just_over_the_limit_is_a_400_and_under_it_is_validated(client):
    assert_problem(client.post("/v1/triage", data=b"[" * 65 + b"]" * 65, content_type="application/json"), 400)
    assert_problem(client.post("/v1/triage", data=b"[" * 64 + b"]" * 64, content_type="application/json"), 422)


ENTRY_OF = {"resourceType": "Bundle", "type": "searchset"}
P1 = {"reference": "Patient/p1"}   # every Condition and Observation names its patient (else: set aside, 412)


@pytest.mark.parametrize("change", [
    {"conditions": dict(ENTRY_OF, entry=5)},
    {"observations": dict(ENTRY_OF, entry={"resource": {}})},
    {"conditions": dict(ENTRY_OF, entry=[{"resource": {"resourceType": "Condition", "subject": P1, "code": {"coding": 5}}}])},
    {"conditions": dict(ENTRY_OF, entry=[{"resource": {"resourceType": "Condition", "subject": P1,
                                                        "clinicalStatus": {"coding": "active"}}}])},
    {"observations": dict(ENTRY_OF, entry=[{"resource": {"resourceType": "Observation", "subject": P1, "code": {"coding": 5}}}])},
])
def test_malformed_fhir_is_a_400_naming_it(client, change):
    body = assert_problem(client.post(SERVICE, json=cds_body(**change)), 400)
    assert body["title"] == "Bad prefetch"


@pytest.mark.parametrize("status", ["clinicalStatus", "verificationStatus"])
@pytest.mark.parametrize("value", ["refuted", "active", 5, ["refuted"]])
def test_a_status_that_is_not_a_codeable_concept_is_a_400_never_read_as_no_status(client, status, value):
    """Audit of 5 December: verificationStatus "refuted" (a string) was read as no status: a confirmed cancer."""
    change = {"conditions": dict(ENTRY_OF, entry=[{"resource": {"resourceType": "Condition", "subject": P1, status: value,
                                                                "code": {"coding": [{"system": "http://snomed.info/sct",
                                                                                     "code": "399068003"}]}}}])}
    body = assert_problem(client.post(SERVICE, json=cds_body(**change)), 400)
    assert body["title"] == "Bad prefetch" and "CodeableConcept" in body["detail"]


@pytest.mark.parametrize("coding", [[5], [{"system": ["x"], "code": "1"}], [{"system": {}, "code": {}}],
                                    [{"system": "http://snomed.info/sct", "code": ["399068003"]}]])
def test_odd_codings_map_nothing(client, coding):
    change = {"conditions": dict(ENTRY_OF, entry=[{"resource": {"resourceType": "Condition", "subject": P1, "code": {"coding": coding}}}])}
    assert client.post(SERVICE, json=cds_body(**change)).status_code == 200


@pytest.mark.parametrize("birth", ["12345678901234567890", "99999999999999999999-01-01", "1958-13", "1958-02-30",
                                   "0000", "١٩٥٨", 1958, None, "2010-12-31T00:00:00Z"])
def test_a_birth_date_that_is_not_a_fhir_date_maps_no_age(client, birth):
    body = cds_body(patient={"resourceType": "Patient", "id": "p1", "birthDate": birth})
    response = client.post(SERVICE, json=body)
    assert response.status_code == 200
    detail = response.get_json()["cards"][0]["detail"]
    assert "Patient.birthDate" not in detail
    # a date given but unusable is said on the card (audit of 5 December: the age just went missing)
    said = "Age (years): Not known (date of birth; no age of 0 to 120 years can be read from it)"
    assert (said in detail) == (birth is not None), detail


@pytest.mark.parametrize("item", [
    {"card": "c", "outcome": "overridden", "overrideReason": {"reason": "text"}},
    {"card": "c", "outcome": "overridden", "overrideReason": "text"},
    {"card": "c", "outcome": "overridden", "overrideReason": {"reason": {"code": 5}}},
    {"card": "c", "outcome": "overridden", "overrideReason": {"userComment": 5}},
    {"card": "c", "outcome": "accepted", "acceptedSuggestions": 5},
    {"card": "c", "outcome": "accepted", "acceptedSuggestions": [5]},
    {"card": 5, "outcome": "accepted"},
    {"outcome": "accepted"},
    {"card": "c", "outcome": "accepted", "outcomeTimestamp": 5},
    5,
])
def test_bad_feedback_is_a_400_and_stores_nothing(client, app, item):
    good = {"card": "first", "outcome": "accepted", "acceptedSuggestions": [{"id": "s1"}],
            "outcomeTimestamp": "2026-11-22T10:00:00Z"}
    body = assert_problem(client.post(FEEDBACK, json={"feedback": [good, good, item]}), 400)
    assert body["detail"].startswith("feedback[2]: ")
    assert recorded_feedback(app) == []          # all or nothing: the two good items were not written


def test_good_feedback_is_stored_whole(client, app):
    items = [{"card": f"c{i}", "outcome": "accepted", "acceptedSuggestions": [{"id": "s"}] * i} for i in range(3)]
    assert client.post(FEEDBACK, json={"feedback": items}).status_code == 200
    assert [r["accepted_suggestions"] for r in recorded_feedback(app)] == [0, 1, 2]


# ------------------------------------------------------------------------------ item 5: chunked bodies

def chunked_post(client, data: bytes):
    return client.post("/v1/triage", input_stream=io.BytesIO(data), content_type="application/json",
                       environ_overrides={"wsgi.input_terminated": True})


def test_a_chunked_body_over_the_limit_is_413_not_truncated(client, app):
    limit = app.config["MAX_CONTENT_LENGTH"]
    case = json.dumps(CASE).encode()
    padded = case[:-1] + b" " * (limit - len(case) + 1) + b"}"    # valid JSON, one byte over the limit
    assert len(padded) == limit + 1
    assert_problem(chunked_post(client, padded), 413)
    exact = case[:-1] + b" " * (limit - len(case)) + b"}"
    assert chunked_post(client, exact).status_code == 200


# ------------------------------------------------------------------------------ item 6: JWT audience

@pytest.fixture
def signer():
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    jwk.update(kid="k1", alg="RS256")

    def sign(aud: str, **claims) -> str:
        now = int(time.time())
        payload = {"iss": "https://ehr.example.org", "aud": aud, "exp": now + 300, "iat": now,
                   "jti": str(uuid.uuid4()), **claims}
        return jwt.encode(payload, private, algorithm="RS256", headers={"kid": "k1"})

    sign.jwks = {"keys": [jwk]}  # type: ignore[attr-defined]
    return sign


def secured_client(tmp_path, signer, base: str):
    return create_app({"TESTING": True, "CDS_STORE_PATH": str(tmp_path / "cds.sqlite3"), "PUBLIC_BASE_URL": base,
                       "CDS_TRUSTED_ISSUERS": {"https://ehr.example.org": signer.jwks}}).test_client()


def test_https_audience_behind_a_tls_proxy_is_accepted(tmp_path, signer):
    client = secured_client(tmp_path, signer, "https://triage.example.org")
    token = signer("https://triage.example.org/cds-services/mscc-triage")
    # the proxy speaks plain http to the service, with its own Host
    response = client.post(SERVICE, json=cds_body(), headers={"Authorization": f"Bearer {token}"},
                           base_url="http://10.0.0.5:8000")
    assert response.status_code == 200
    card = response.get_json()["cards"][0]
    assert card["links"][0]["url"] == "https://triage.example.org/v1/ruleset"
    feedback_token = signer("https://triage.example.org/cds-services/mscc-triage")
    assert client.post(FEEDBACK, json={"feedback": [{"card": "c", "outcome": "accepted"}]},
                       headers={"Authorization": f"Bearer {feedback_token}"}).status_code == 200


def test_the_audience_does_not_follow_a_forged_host(tmp_path, signer):
    client = secured_client(tmp_path, signer, "https://triage.example.org/")
    token = signer("http://other-service.example/cds-services/mscc-triage")   # minted for another service
    response = client.post(SERVICE, json=cds_body(), headers={"Authorization": f"Bearer {token}",
                                                              "Host": "other-service.example"})
    assert_problem(response, 401)
    # the answer names the audience the service expects (issue 20), so an integrator can fix the token
    assert "https://triage.example.org/cds-services/mscc-triage" in response.get_json()["detail"]


def unsigned_token(header: dict, payload: dict) -> str:
    """A token PyJWT refuses to write (odd types): refused before its signature is looked at."""
    def b64(obj) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{b64(header)}.{b64(payload)}.{b64('not-a-signature')}"


@pytest.mark.parametrize("header, claims", [
    ({}, {"iss": ["https://ehr.example.org"]}),
    ({}, {"iss": {"a": 1}}),
    ({}, {"iss": 5}),
    ({"kid": ["k1"]}, {}),
    ({"alg": ["RS256"]}, {}),
])
def test_odd_claims_are_a_401_before_any_signature_check(tmp_path, signer, header, claims):
    client = secured_client(tmp_path, signer, "http://localhost/")
    now = int(time.time())
    token = unsigned_token({"alg": "RS256", "kid": "k1", "typ": "JWT", **header},
                           {"iss": "https://ehr.example.org", "aud": "http://localhost/cds-services/mscc-triage",
                            "exp": now + 60, "iat": now, "jti": "j", **claims})
    assert_problem(client.post(SERVICE, json=cds_body(), headers={"Authorization": f"Bearer {token}"}), 401)


def test_issuers_without_a_public_url_stop_the_start(tmp_path, signer):
    with pytest.raises(ApiConfigError, match="PUBLIC_BASE_URL"):
        create_app({"CDS_STORE_PATH": str(tmp_path / "s"), "CDS_TRUSTED_ISSUERS": {"https://e": signer.jwks}})


# ------------------------------------------------------------------------------ item 8: the CDS store

def make_store(path) -> None:
    app = create_app({"TESTING": True, "CDS_STORE_PATH": str(path)})
    assert recorded_feedback(app) == []   # creates the tables
    cds_store._forget_sqlite(str(path))   # the store exists; this thread keeps no connection to it


def test_a_read_only_store_is_a_503_with_the_reason_and_healthz_says_so(tmp_path):
    path = tmp_path / "cds.sqlite3"
    make_store(path)
    client = create_app({"TESTING": True, "CDS_STORE_PATH": f"file:{path}?mode=ro",
                         "CDS_ALLOW_UNAUTHENTICATED": True}).test_client()
    body = assert_problem(client.post(FEEDBACK, json={"feedback": [{"card": "c", "outcome": "accepted"}]}), 503)
    assert "read-only" in body["detail"]
    health = client.get("/healthz")
    assert health.status_code == 503
    assert health.get_json()["checks"]["cds_store"] == {"status": "failing", "reason": "read-only"}
    assert client.post("/v1/triage", json=CASE).status_code == 200    # the JSON API does not need the store


def test_a_full_store_is_a_503_with_the_reason(tmp_path, monkeypatch):
    path = tmp_path / "cds.sqlite3"
    make_store(path)
    real_connect = cds_store.connect_sqlite

    def full(p: str) -> sqlite3.Connection:           # a real SQLITE_FULL: no page may be added
        conn = real_connect(p)
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")
        return conn

    monkeypatch.setattr(cds_store, "connect_sqlite", full)
    client = create_app({"TESTING": True, "CDS_STORE_PATH": str(path), "CDS_ALLOW_UNAUTHENTICATED": True}).test_client()
    items = [{"card": "c" * 64, "outcome": "accepted"}] * 600
    body = assert_problem(client.post(FEEDBACK, json={"feedback": items}), 503)
    assert "full" in body["detail"] and client.post(FEEDBACK, json={"feedback": items}).headers["Retry-After"]


def test_a_store_that_cannot_be_opened_is_a_503(tmp_path):
    (tmp_path / "file").write_text("")
    client = create_app({"TESTING": True, "CDS_STORE_PATH": str(tmp_path / "file" / "cds.sqlite3"),
                         "CDS_ALLOW_UNAUTHENTICATED": True}).test_client()
    assert "cannot be opened" in assert_problem(
        client.post(FEEDBACK, json={"feedback": [{"card": "c", "outcome": "accepted"}]}), 503)["detail"]
    assert client.get("/healthz").status_code == 503


def test_healthz_is_ok_with_a_writable_store(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json()["checks"] == {"ruleset": {"status": "ok"}, "record_store": {"status": "ok"},
                                             "cds_store": {"status": "ok"}}   # issue 19: every part a triage needs


def test_each_app_has_its_own_store_by_default():
    first, second = create_app({"TESTING": True}), create_app({"TESTING": True})
    assert first.config["CDS_STORE_PATH"] != second.config["CDS_STORE_PATH"]


# ------------------------------------------------------------------------------ crash isolation

def test_an_engine_failure_is_a_503_problem_and_the_next_request_works(client, monkeypatch):
    real = triage.Ruleset.evaluate

    def failing(self, case, *args, **kwargs):
        case_id = case.get("case_id") if isinstance(case, dict) else getattr(case, "case_id", None)
        if case_id == "boom":                      # the view gives the validated case
            raise triage.EngineError("durable-rules failed")
        return real(self, case, *args, **kwargs)

    monkeypatch.setattr(triage.Ruleset, "evaluate", failing)
    for path, body in (("/v1/triage", dict(CASE, case_id="boom")),):
        problem = assert_problem(client.post(path, json=body), 503)
        assert problem["type"] == "urn:mscc-triage:problem:engine-failure"
        assert "durable" not in json.dumps(problem)
    assert client.post("/v1/triage", json=CASE).status_code == 200


def test_an_engine_failure_in_cds_hooks_is_a_503_problem(client, monkeypatch):
    def failing(self, case, *args, **kwargs):
        raise triage.EngineError("durable-rules failed")

    monkeypatch.setattr(triage.Ruleset, "evaluate", failing)
    assert_problem(client.post(SERVICE, json=cds_body()), 503)


# ------------------------------------------------------------------------------ item 9: headers and OpenAPI

@pytest.mark.parametrize("method, path", [("get", "/"), ("get", "/healthz"), ("get", "/docs"), ("get", "/nowhere"),
                                          ("post", "/v1/triage")])
def test_security_headers_on_every_answer(client, method, path):
    response = getattr(client, method)(path, json=CASE) if method == "post" else client.get(path)
    csp = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"


def test_security_headers_once_each_and_a_views_own_kept(client):
    """Each header appears once; /docs keeps its own policy (its inline style) instead of the default."""
    for path in ("/healthz", "/docs", "/static/form.css"):
        response = client.get(path)
        response.close()   # a static file's answer holds the file open until closed
        for name in ("Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy", "X-Frame-Options"):
            assert len(response.headers.getlist(name)) == 1, (path, name)
    assert "style-src 'self' 'unsafe-inline'" in client.get("/docs").headers["Content-Security-Policy"]
    answer = client.post("/v1/triage", json=CASE)
    assert answer.headers.getlist("Cache-Control") == ["no-store"]
    assert "no-store" not in client.get("/docs").headers.get("Cache-Control", "")


def test_openapi_documents_every_status_and_strict_integers(client):
    doc = client.get("/openapi.json").get_json()
    for path in ("/v1/triage", "/cds-services/mscc-triage", "/cds-services/mscc-triage/feedback"):
        assert {"400", "413", "415", "500", "503"} <= set(doc["paths"][path]["post"]["responses"]), path
    assert "503" in doc["paths"]["/healthz"]["get"]["responses"]
    age = doc["components"]["schemas"]["Patient"]["properties"]["age_years"]
    assert "70.0" in age["description"] and "70.5" in age["description"]
    # and the server does what the description says (case-format 2.2: a zero fraction is the integer)
    assert client.post("/v1/triage", json={"patient": {"age_years": 70.0}}).status_code == 200
    response = client.post("/v1/triage", json={"patient": {"age_years": 70.5}})
    assert response.status_code == 422 and response.get_json()["errors"][0]["code"] == "int_type"
    response = client.post("/v1/triage", json={"patient": {"age_years": "70"}})
    assert response.status_code == 422 and response.get_json()["errors"][0]["code"] == "int_type"


def test_a_lab_on_the_card_says_when_it_was_taken(client):
    """Audit of 5 December: a calcium of 2020 was shown as if of today. Labs have no window (the spec sets
    none); the card gives the date so that the clinician can judge the value's age."""
    calcium = {"resourceType": "Observation", "subject": P1, "status": "final",
               "code": {"coding": [{"system": "http://loinc.org", "code": "29265-6"}]},
               "valueQuantity": {"value": 3.6, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"},
               "effectiveDateTime": "2020-01-01T08:00:00Z"}
    response = client.post(SERVICE, json=cds_body(observations=dict(ENTRY_OF, entry=[{"resource": calcium}])))
    assert response.status_code == 200
    assert "3.6 mmol/L, 2020-01-01" in response.get_json()["cards"][0]["detail"]

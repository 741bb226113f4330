"""Issue 19 ("Hold under attack"), the HTTP side: malformed input answers 4xx, never 500; record text is
inert in card Markdown; /healthz names every part a triage needs; JWT lifetime, NumericDate and
kid-less keys; ``Cache-Control: no-store`` on clinical answers."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

import triage
from mscc_triage_api import ApiConfigError, create_app
from mscc_triage_api.cds.cards import escape
from mscc_triage_api.cds.service import recorded_feedback
from mscc_triage_api.fhir import fetch as ff
from mscc_triage_api.fhir import map as fhir_map
from mscc_triage_api.fhir import units as fhir_units

SERVICE = "/cds-services/mscc-triage"
FEEDBACK = SERVICE + "/feedback"
CASE = {"patient": {"cancer": {"history": "current"}}, "presentation": {"weakness": {"present": True}}}
ISS = "https://ehr.example.org"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"

_spec = importlib.util.spec_from_file_location("record_shapes_probe",
                                               Path(__file__).resolve().parents[2] / "scripts" / "record_shapes_probe.py")
probe = importlib.util.module_from_spec(_spec)
sys.modules["record_shapes_probe"] = probe
_spec.loader.exec_module(probe)


class _QuietServer(ThreadingHTTPServer):
    """A client that resets the connection on purpose is not an error to print."""

    def handle_error(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
            return
        super().handle_error(request, client_address)


def bundle(*resources) -> dict:
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}


def cds_body(**prefetch_changes) -> dict:
    prefetch = {"patient": {"resourceType": "Patient", "id": "p1", "birthDate": "1958-03-14"},
                "conditions": bundle(), "observations": bundle()}
    prefetch.update(prefetch_changes)
    return {"hook": "patient-view", "hookInstance": str(uuid.uuid4()),
            "context": {"userId": "Practitioner/1", "patientId": "p1"}, "prefetch": prefetch}


def calcium(quantity: dict, code: str = "29265-6") -> dict:
    return {"resourceType": "Observation", "id": "ca", "status": "final", "subject": {"reference": "Patient/p1"},
            "code": {"coding": [{"system": LOINC, "code": code}]}, "effectiveDateTime": "2026-11-27T07:00:00Z",
            "valueQuantity": quantity}


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == status and "Traceback" not in json.dumps(body)
    return body


def post_raw(client, path: str, text: str):
    return client.post(path, data=text.encode("utf-8"), content_type="application/json")


# ------------------------------------------------------------------------------ 1. malformed input: 4xx, never 500

def test_a_lab_value_beyond_a_float_is_left_unknown_not_a_crash(client):
    assert fhir_units.convert({"value": 10 ** 400, "system": UCUM, "code": "mmol/L"}, "calcium_mmol_l") is None
    assert fhir_units.convert({"value": -(10 ** 400), "unit": "mmol/L"}, "calcium_mmol_l") is None
    assert fhir_units.convert({"value": 1e308, "unit": "mg/dL"}, "calcium_mmol_l") is not None
    assert fhir_units.convert({"value": 1.7e308, "unit": "ng/mL"}, "vitamin_d_nmol_l") is None   # inf once converted
    body = cds_body(observations=bundle(calcium({"value": 1, "system": UCUM, "code": "mmol/L"})))
    text = json.dumps(body).replace('"value": 1,', '"value": 1' + "0" * 400 + ",")
    assert "0" * 400 in text
    response = post_raw(client, SERVICE, text)
    assert response.status_code == 200, response.get_data(as_text=True)
    detail = response.get_json()["cards"][0]["detail"]
    assert "Corrected calcium (mmol/L): Not known (observation " in detail and "no usable value" in detail


@pytest.mark.parametrize("value", ["tökén-€", "token with space", "tok\u2028en", "\ud800", "tok\x00en"])
def test_an_access_token_that_cannot_be_sent_is_refused_as_authorization(value):
    with pytest.raises(ff.AuthorizationFailed, match="visible ASCII"):
        ff.token_of({"access_token": value, "token_type": "Bearer"})


class _NextLinkServer:
    """A FHIR server whose searches answer one entry and a ``next`` link on the same server that is not ASCII."""

    def __init__(self, link_tail: str):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:   # noqa: N802
                page = {"resourceType": "Bundle", "type": "searchset",
                        "entry": [{"resource": {"resourceType": "Observation", "id": "o1", "status": "final",
                                                "subject": {"reference": "Patient/p1"}}}],
                        "link": [{"relation": "next", "url": outer.base + link_tail}]}
                data = json.dumps(page, ensure_ascii=False).encode("utf-8")
                self.send_response(200)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}/fhir"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "_NextLinkServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize("tail", ["/Observation?patient=p1&_page=ü", "/Obs\u00e9rvation?patient=p1", "/Observation?a=b c",
                                  "/Observation?page=\u20ac2"])
def test_a_next_link_that_is_not_ascii_is_not_fhir_not_a_crash(tail):
    with _NextLinkServer(tail) as server:
        settings = ff.FetchSettings(servers=ff.parse_servers([server.base]), request_timeout_s=0.5, budget_s=1.0)
        with pytest.raises(ff.FetchFailed) as failed:
            ff.fetch_all(server.base, None, {"observations": "Observation?patient=p1"}, settings)
    assert [e.code for e in failed.value.errors] == ["fhir-not-fhir"]
    assert "next link" in failed.value.errors[0].reason


def test_a_non_ascii_next_link_or_token_through_the_service_is_a_412(tmp_path):
    with _NextLinkServer("/Observation?patient=p1&_page=ü") as server:
        app = create_app({"TESTING": True, "CDS_STORE_PATH": str(tmp_path / "cds.sqlite3"),
                          "CDS_ALLOW_UNAUTHENTICATED": True, "FHIR_SERVERS": [server.base],
                          "FHIR_FETCH_TIMEOUT_S": 0.5, "FHIR_FETCH_BUDGET_S": 1.0})
        client = app.test_client()
        body = cds_body()
        del body["prefetch"]["observations"]
        body["fhirServer"] = server.base
        problem = assert_problem(client.post(SERVICE, json=body), 412)
        assert problem["errors"][0]["prefetch"] == "observations" and problem["errors"][0]["code"] == "fhir-not-fhir"
        body = {**body, "hookInstance": str(uuid.uuid4()),
                "fhirAuthorization": {"access_token": "jéton-secret", "token_type": "Bearer"}}
        problem = assert_problem(client.post(SERVICE, json=body), 412)
        assert problem["errors"][0]["code"] == "fhir-authorization" and "jéton" not in json.dumps(problem)


@pytest.mark.parametrize("item", [
    '{"card": "\\ud800", "outcome": "accepted"}',
    '{"card": "c\\udfff", "outcome": "overridden"}',
    '{"card": "c", "outcome": "overridden", "overrideReason": {"reason": {"code": "\\ud83d"}}}',
])
def test_a_lone_surrogate_in_feedback_is_a_400_and_nothing_is_written(app, client, item):
    ok = '{"card": "good", "outcome": "accepted"}'
    body = assert_problem(post_raw(client, FEEDBACK, '{"feedback": [' + ok + ", " + item + "]}"), 400)
    assert "feedback[1]" in body["detail"]
    assert recorded_feedback(app) == []


def test_a_lone_surrogate_hook_instance_is_a_400(client):
    text = json.dumps(cds_body()).replace('"hookInstance": "', '"hookInstance": "\\ud800')
    assert_problem(post_raw(client, SERVICE, text), 400)


def test_wrong_shapes_in_the_record_are_never_a_500(client):
    """The probe's mutations (scripts/record_shapes_probe.py) of the dates, units and values of a full record."""
    prefetch = probe.good_prefetch()
    wanted = ("valueQuantity", "effectivePeriod", "authoredOn", "effectiveDateTime", "performedDateTime", "birthDate")
    seen = 0
    for path in probe.places(prefetch):
        if not any(part in wanted for part in map(str, path)):
            continue
        for value in probe.ODD:
            body = {"hook": "patient-view", "hookInstance": str(uuid.uuid4()),
                    "context": {"patientId": prefetch["patient"]["id"]},
                    "prefetch": probe.replaced(prefetch, path, value)}
            response = client.post(SERVICE, data=json.dumps(body), content_type="application/json")
            assert response.status_code == 200 or 400 <= response.status_code < 500, (path, value)
            seen += 1
    assert seen > 300


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00"])
def test_a_date_time_at_the_edge_of_the_calendar_is_no_date(client, when):
    dex = {"resourceType": "MedicationRequest", "id": "d", "status": "active", "intent": "order",
           "subject": {"reference": "Patient/p1"}, "authoredOn": when,
           "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                     "code": "3264"}]}}
    assert fhir_map._instant(when) is None
    response = client.post(SERVICE, json=cds_body(medicationRequests=bundle(dex)))
    assert response.status_code == 200


def test_a_record_that_breaks_the_mapping_is_a_400_naming_the_resources(client, monkeypatch):
    def broken(*args, **kwargs):
        raise TypeError("'int' object is not subscriptable")

    monkeypatch.setattr(fhir_map, "_observations", broken)
    body = assert_problem(client.post(SERVICE, json=cds_body()), 400)
    assert body["title"] == "Bad prefetch" and "Observation resource" in body["detail"]
    assert "subscriptable" not in body["detail"]


# ------------------------------------------------------------------------------ 2. record text is inert Markdown

HOSTILE = ["[open](https://evil.example/)", "![x](https://evil.example/x.png)", "<img src=x onerror=alert(1)>",
           "**loud** _quiet_", "<https://evil.example>", "`code`", "line\n# heading", "&#x6A;avascript"]


@pytest.mark.parametrize("text", HOSTILE)
def test_escape_leaves_no_markdown(text):
    out = escape(text)
    assert "\n" not in out
    assert not re.search(r"(?<!\\)[\[\]<`*&]", out), out
    assert not re.search(r"(?<![\\A-Za-z0-9])_", out), out
    assert "https://" not in out and "www." not in escape("see www.evil.example")


def test_snake_case_and_arrows_read_as_they_are():
    assert escape("labs.corrected_calcium_mmol_l = 3.6") == "labs.corrected_calcium_mmol_l = 3.6"
    assert escape("cancer C79.5 -> current (Patient.birthDate)") == "cancer C79.5 -> current (Patient.birthDate)"
    assert escape("a \ud800 b") == "a ? b"


def test_hostile_units_codes_and_displays_stay_text_in_the_card(client):
    observations = [calcium({"value": 2.1, "unit": unit}) for unit in HOSTILE[:4]]
    for item, unit in zip(observations, HOSTILE):
        item["id"] = uuid.uuid4().hex[:8]
        item["code"]["coding"][0]["display"] = unit
        item["code"]["text"] = unit
    metastasis = {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"},
                  "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "C79.5[open](https://evil.example/)",
                                       "display": "![x](https://evil.example/x.png)"}],
                           "text": "<script>alert(1)</script>"}}
    response = client.post(SERVICE, json=cds_body(observations=bundle(*observations), conditions=bundle(metastasis)))
    assert response.status_code == 200, response.get_data(as_text=True)
    card = response.get_json()["cards"][0]
    detail = card["detail"]
    record_part = detail.split("**From the record**", 1)[1]
    assert "C79.5" in record_part and "unit" in record_part                        # the record's words are shown
    assert "\\[open\\](https\\://evil" in record_part and "\\<img" in record_part        # shown, escaped
    for live in (r"(?<!\\)\[open", r"(?<!\\)<img", r"(?<!\\)<script", r"https://evil", r"(?<!\\)\*\*loud"):
        assert not re.search(live, detail), live
    assert not re.search(r"(?<!\\)\[[^\]]*\]\(", detail)                            # no live link or image
    assert "evil" not in json.dumps(card["links"]) and "evil" not in json.dumps(card.get("suggestions", []))


# ------------------------------------------------------------------------------ 3. /healthz names the failing part

def test_healthz_is_503_naming_the_record_store_when_triage_cannot_be_recorded(tmp_path):
    blocker = tmp_path / "data"
    blocker.write_text("a file where the record's folder should be")
    app = create_app({"TESTING": True, "CDS_STORE_PATH": str(tmp_path / "cds.sqlite3"),
                      "RECORD_PATH": str(blocker / "records.sqlite3")})
    client = app.test_client()
    assert client.post("/v1/triage", json=CASE).status_code == 503
    health = client.get("/healthz")
    assert health.status_code == 503
    body = health.get_json()
    assert body["status"] == "degraded"
    assert body["checks"]["record_store"]["status"] == "failing"
    assert "decision record" in body["checks"]["record_store"]["reason"]
    assert body["checks"]["cds_store"] == {"status": "ok"} and body["checks"]["ruleset"] == {"status": "ok"}
    blocker.unlink()                                                    # the store recovers: so does the health
    assert client.get("/healthz").status_code == 200
    assert client.post("/v1/triage", json=CASE).status_code == 200


def test_healthz_writes_no_record(app, client):
    store = app.extensions["mscc_records"]
    head = store.head()
    assert client.get("/healthz").status_code == 200
    assert store.head() == head and store.count() == 0


def test_healthz_is_503_naming_the_ruleset_when_the_engine_fails(client, monkeypatch):
    """Even when the health check's case was answered before: an answer kept from then would hide an
    engine that no longer answers in this worker."""
    from mscc_triage_api.http import HEALTH_CASE
    from triage._engine import CompiledEngine

    assert client.get("/healthz").status_code == 200
    assert client.post("/v1/triage", json=HEALTH_CASE).status_code == 200   # its answer is kept

    def failing(self, worlds, base=None, **options):
        raise triage.EngineError("boom")

    monkeypatch.setattr(CompiledEngine, "run", failing)
    assert client.post("/v1/triage", json=HEALTH_CASE).status_code == 200   # the kept answer
    health = client.get("/healthz")
    assert health.status_code == 503
    assert health.get_json()["checks"]["ruleset"] == {"status": "failing",
                                                      "reason": "the triage engine fails (engine_failure)"}


# ------------------------------------------------------------------------------ 5. JWT and Cache-Control

@pytest.fixture
def keys():
    """Two keys of the issuer (a rotation), and one key of no one."""
    privates = [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(3)]
    jwks = []
    for n, private in enumerate(privates[:2]):
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
        jwk.update(kid=f"k{n + 1}", alg="RS256")
        jwks.append(jwk)
    return privates, {"keys": jwks}


def secured(tmp_path, keys, **config):
    return create_app({"TESTING": True, "CDS_STORE_PATH": str(tmp_path / "cds.sqlite3"),
                       "PUBLIC_BASE_URL": "http://localhost/", "CDS_TRUSTED_ISSUERS": {ISS: keys[1]},
                       **config}).test_client()


def token(private, headers=None, lifetime=300, **claims) -> str:
    now = int(time.time())
    payload = {"iss": ISS, "aud": "http://localhost/cds-services/mscc-triage", "exp": now + lifetime, "iat": now,
               "jti": str(uuid.uuid4()), **claims}
    return jwt.encode(payload, private, algorithm="RS256", headers=headers if headers is not None else {"kid": "k1"})


def call(client, bearer):
    return client.post(SERVICE, json=cds_body(), headers={"Authorization": f"Bearer {bearer}"})


def test_a_jwt_living_longer_than_five_minutes_is_refused(tmp_path, keys):
    client = secured(tmp_path, keys)
    assert call(client, token(keys[0][0], lifetime=300)).status_code == 200
    body = assert_problem(call(client, token(keys[0][0], lifetime=301)), 401)
    assert "lives too long" in body["detail"]
    now = int(time.time())
    assert_problem(call(client, token(keys[0][0], iat=now - 3600, exp=now + 60)), 401)   # an old token made fresh


def test_the_maximum_lifetime_is_configurable_and_checked_at_start(tmp_path, keys):
    client = secured(tmp_path, keys, CDS_JWT_MAX_LIFETIME_S=900)
    assert call(client, token(keys[0][0], lifetime=800)).status_code == 200
    for bad in (0, -5, "soon", 7200):
        with pytest.raises(ApiConfigError, match="CDS_JWT_MAX_LIFETIME_S"):
            secured(tmp_path, keys, CDS_JWT_MAX_LIFETIME_S=bad)


@pytest.mark.parametrize("claims", [
    {"exp": str(int(time.time()) + 60)},
    {"iat": str(int(time.time()))},
    {"exp": True},
    {"exp": [int(time.time()) + 60]},
])
def test_exp_and_iat_must_be_numbers(tmp_path, keys, claims):
    client = secured(tmp_path, keys)
    body = assert_problem(call(client, token(keys[0][0], **claims)), 401)
    assert "must be a number" in body["detail"]


def test_without_a_kid_every_key_of_the_issuer_is_tried(tmp_path, keys):
    client = secured(tmp_path, keys)
    assert call(client, token(keys[0][1], headers={})).status_code == 200      # the second key
    assert call(client, token(keys[0][0], headers={})).status_code == 200      # the first key
    body = assert_problem(call(client, token(keys[0][2], headers={})), 401)    # no key of the issuer
    assert "not valid" in body["detail"]
    assert_problem(call(client, token(keys[0][1], headers={"kid": "k1"})), 401)   # the kid names another key


def test_a_jwt_with_a_lone_surrogate_jti_is_a_401(tmp_path, keys):
    client = secured(tmp_path, keys)
    assert_problem(call(client, token(keys[0][0], jti="\ud800")), 401)


def test_every_clinical_answer_is_no_store(client):
    answers = [client.post("/v1/triage", json=CASE), client.post("/v1/triage", json={"patient": {"age_years": "x"}}),
               client.post(SERVICE, json=cds_body()),
               client.post(FEEDBACK, json={"feedback": [{"card": "c", "outcome": "accepted"}]}),
               client.get("/healthz"), client.get("/"), client.get("/fr/"), client.post("/", data={})]
    for response in answers:
        assert response.headers.get("Cache-Control") == "no-store", (response.request.path, response.status_code)
    for reference in ("/v1/ruleset", "/openapi.json", "/cds-services"):
        assert client.get(reference).headers.get("Cache-Control") != "no-store"

"""Behind a load balancer: with the decision record in PostgreSQL, the CDS store (seen JWT ids, feedback,
cards, prefill answers) is there too, shared by every server. A real PostgreSQL server, no mock."""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_record_pgserver import PgServer, pg_dsn, pg_server  # noqa: E402,F401 - fixtures

from mscc_triage_api import create_app  # noqa: E402
from mscc_triage_api.cds.service import feedback_summary, recorded_feedback  # noqa: E402
from mscc_triage_api.record_hook import store_of  # noqa: E402

SERVICE = "/cds-services/mscc-triage"
BASE = "https://triage.example.org/"


@pytest.fixture
def signer():
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    jwk.update(kid="k1", alg="RS256")

    def sign(path: str) -> str:
        now = int(time.time())
        payload = {"iss": "https://ehr.example.org", "aud": BASE + path.lstrip("/"), "exp": now + 300, "iat": now,
                   "jti": str(uuid.uuid4()), "sub": "Practitioner/1"}
        return jwt.encode(payload, private, algorithm="RS256", headers={"kid": "k1"})

    sign.jwks = {"keys": [jwk]}  # type: ignore[attr-defined]
    return sign


_APPS: list = []


@pytest.fixture(autouse=True)
def _close_record_stores():
    yield
    while _APPS:
        store_of(_APPS.pop()).close()   # the decision record's PostgreSQL connection


def server(tmp_path, name: str, dsn: str, signer):
    """One of several servers behind a load balancer: its own SQLite path (unused), the shared PostgreSQL."""
    app = create_app({"TESTING": True, "CDS_STORE_PATH": str(tmp_path / f"{name}.sqlite3"), "RECORD_DSN": dsn,
                      "PUBLIC_BASE_URL": BASE, "CDS_TRUSTED_ISSUERS": {"https://ehr.example.org": signer.jwks}})
    _APPS.append(app)
    return app


def body() -> dict:
    return {"hook": "patient-view", "hookInstance": str(uuid.uuid4()), "context": {"patientId": "p1"},
            "prefetch": {"patient": {"resourceType": "Patient", "id": "p1", "birthDate": "1950-02-01"},
                         "conditions": {"resourceType": "Bundle", "type": "searchset", "entry": []},
                         "observations": {"resourceType": "Bundle", "type": "searchset", "entry": []}}}


def test_a_jwt_replayed_to_another_server_is_refused(tmp_path, pg_dsn, signer):
    first, second = server(tmp_path, "a", pg_dsn, signer), server(tmp_path, "b", pg_dsn, signer)
    token = signer(SERVICE)
    headers = {"Authorization": f"Bearer {token}"}
    assert first.test_client().post(SERVICE, json=body(), headers=headers).status_code == 200
    replayed = second.test_client().post(SERVICE, json=body(), headers=headers)
    assert replayed.status_code == 401 and "already used" in replayed.get_json()["detail"]


def test_feedback_given_to_one_server_is_seen_by_all(tmp_path, pg_dsn, signer):
    first, second = server(tmp_path, "a", pg_dsn, signer), server(tmp_path, "b", pg_dsn, signer)
    card = first.test_client().post(SERVICE, json=body(), headers={
        "Authorization": f"Bearer {signer(SERVICE)}"}).get_json()["cards"][0]
    items = {"feedback": [{"card": card["uuid"], "outcome": "overridden",
                           "overrideReason": {"reason": {"code": "not-indicated"}}},
                          {"card": card["uuid"], "outcome": "accepted"}]}
    response = second.test_client().post(SERVICE + "/feedback", json=items,
                                         headers={"Authorization": f"Bearer {signer(SERVICE + '/feedback')}"})
    assert response.status_code == 200
    assert [r["outcome"] for r in recorded_feedback(first)] == ["overridden", "accepted"]   # arrival order
    summary = feedback_summary(first)
    assert summary["cardsIssued"] == {card["indicator"]: 1}
    assert {(o["indicator"], o["outcome"], o["count"]) for o in summary["outcomes"]} == {
        (card["indicator"], "overridden", 1), (card["indicator"], "accepted", 1)}
    bad = {"feedback": [{"card": card["uuid"], "outcome": "accepted"}, {"card": 5, "outcome": "accepted"}]}
    assert second.test_client().post(SERVICE + "/feedback", json=bad, headers={
        "Authorization": f"Bearer {signer(SERVICE + '/feedback')}"}).status_code == 400
    assert len(recorded_feedback(first)) == 2                                  # all or nothing


def test_postgresql_down_is_a_503_and_healthz_says_so(tmp_path, signer):
    pg = PgServer()
    try:
        app = server(tmp_path, "a", pg.database(), signer)
        client = app.test_client()
        assert client.get("/healthz").status_code == 200
        pg.stop()
        response = client.post(SERVICE, json=body(), headers={"Authorization": f"Bearer {signer(SERVICE)}"})
        assert response.status_code == 503 and response.get_json()["type"] == "urn:mscc-triage:problem:cds-store"
        health = client.get("/healthz")
        assert health.status_code == 503 and "PostgreSQL" in health.get_json()["checks"]["cds_store"]["reason"]
        pg.start()
        assert client.post(SERVICE, json=body(), headers={"Authorization": f"Bearer {signer(SERVICE)}"}).status_code == 200
    finally:
        pg.close()


def test_a_postgresql_restart_costs_no_failed_request(tmp_path, signer):
    """Issue 19: the record's and the CDS store's kept connections die with the server; the next requests
    (a CDS call, feedback, /healthz) are all answered, and the chain still verifies."""
    pg = PgServer()
    try:
        app = server(tmp_path, "a", pg.database(), signer)
        client = app.test_client()
        card = client.post(SERVICE, json=body(), headers={
            "Authorization": f"Bearer {signer(SERVICE)}"}).get_json()["cards"][0]
        assert client.get("/healthz").status_code == 200
        pg.stop()
        pg.start()                                   # same port: every kept connection is now closed
        assert client.post(SERVICE, json=body(), headers={
            "Authorization": f"Bearer {signer(SERVICE)}"}).status_code == 200
        pg.stop()
        pg.start()
        items = {"feedback": [{"card": card["uuid"], "outcome": "accepted"}]}
        assert client.post(SERVICE + "/feedback", json=items, headers={
            "Authorization": f"Bearer {signer(SERVICE + '/feedback')}"}).status_code == 200
        pg.stop()
        pg.start()
        assert client.get("/healthz").status_code == 200
        assert [r["outcome"] for r in recorded_feedback(app)] == ["accepted"]
        report = store_of(app).verify()
        assert report.ok and report.count == 2
    finally:
        pg.close()

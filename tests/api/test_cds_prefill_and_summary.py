"""Issue 16: the card's form link expires after 30 minutes (then it opens an empty form), and the operators'
summary of feedback per card type (indicator x outcome x override reason), protected like every CDS call.
"""

from __future__ import annotations

import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from mscc_triage_api.cds import service as cds_module
from mscc_triage_api import create_app

SERVICE = "/cds-services/mscc-triage"
SUMMARY = SERVICE + "/feedback/summary"
SNOMED = "http://snomed.info/sct"


def patient_view(patient: str = "p1", weakness: bool = True) -> dict:
    """Prostate cancer with bone metastases, with (critical) or without (routine) new leg weakness."""
    def condition(code: str) -> dict:
        return {"resource": {"resourceType": "Condition", "subject": {"reference": f"Patient/{patient}"},
                             "clinicalStatus": {"coding": [{"code": "active"}]},
                             "code": {"coding": [{"system": SNOMED, "code": code}]}}}
    observations = []
    if weakness:
        observations.append({"resource": {
            "resourceType": "Observation", "status": "final", "subject": {"reference": f"Patient/{patient}"},
            "code": {"coding": [{"system": SNOMED, "code": "26544005"}]},
            "valueCodeableConcept": {"coding": [{"system": SNOMED, "code": "52101004"}]}}})
    return {"hook": "patient-view", "hookInstance": str(uuid.uuid4()),
            "context": {"userId": "Practitioner/1", "patientId": patient},
            "prefetch": {"patient": {"resourceType": "Patient", "id": patient, "birthDate": "1950-02-01"},
                         "conditions": {"resourceType": "Bundle", "type": "searchset",
                                        "entry": [condition("399068003"), condition("94222008")]},
                         "observations": {"resourceType": "Bundle", "type": "searchset", "entry": observations},
                         "medicationRequests": None, "medicationStatements": None}}


@pytest.fixture
def app(tmp_path):
    return create_app({"TESTING": True, "CDS_STORE_PATH": str(tmp_path / "cds.sqlite3"),
                       "CDS_ALLOW_UNAUTHENTICATED": True})


@pytest.fixture
def client(app):
    return app.test_client()


def form_path(card: dict) -> str:
    url = next(link["url"] for link in card["links"] if "?from=" in link["url"] and "/fr/" not in link["url"])
    return url.split("localhost", 1)[1]


def prefilled(page: str) -> bool:
    return 'id="prefilled"' in page and "selected" in page.split('value="prostate"', 1)[1][:20]


class Clock:
    """``time`` for the cds module only, moved forward at will."""

    def __init__(self) -> None:
        self.offset = 0.0

    def time(self) -> float:
        return time.time() + self.offset


# ------------------------------------------------------------------------------ the form link expires

def test_the_form_link_lives_30_minutes():
    assert cds_module.PREFILL_SECONDS == 1800


def test_an_expired_form_link_opens_an_empty_form(client, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(cds_module, "time", clock)
    card = client.post(SERVICE, json=patient_view()).get_json()["cards"][0]
    path = form_path(card)
    assert prefilled(client.get(path).get_data(as_text=True))
    clock.offset = 29 * 60   # still kept at 29 minutes
    assert prefilled(client.get(path).get_data(as_text=True))
    clock.offset = 30 * 60 + 1   # gone after 30 minutes
    page = client.get(path).get_data(as_text=True)
    assert client.get(path).status_code == 200
    assert 'id="prefilled"' not in page and "selected" not in page.split('value="prostate"', 1)[1][:20]
    assert cds_module.prefilled_answers(client.application, path.split("?from=", 1)[1]) is None
    fr = client.get(path.replace("/?from=", "/fr/?from=")).get_data(as_text=True)
    assert 'id="prefilled"' not in fr
    # the page says the record's answers were not loaded (audit of 5 December: a blank form, no word)
    assert 'id="prefill-lost"' in page and "has expired or is unknown: nothing was filled in" in page
    assert 'id="prefill-lost"' in fr and "a expiré ou est inconnu" in fr
    assert 'id="prefill-lost"' in client.get("/?from=bogus").get_data(as_text=True)
    assert 'id="prefill-lost"' not in client.get("/").get_data(as_text=True)   # no link: no word about one


def test_expired_answers_are_deleted_when_the_next_card_is_made(app, client, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(cds_module, "time", clock)
    client.post(SERVICE, json=patient_view())
    clock.offset = 1801
    client.post(SERVICE, json=patient_view("p2"))
    with cds_module.store(app) as conn:
        assert conn.execute("SELECT COUNT(*) FROM prefill").fetchone()[0] == 1   # only the fresh one


# ------------------------------------------------------------------------------ feedback summary

def feedback(client, card: dict, outcome: str, reason: str | None = None, accepted: int = 0, headers=None):
    item = {"card": card["uuid"], "outcome": outcome, "outcomeTimestamp": "2026-11-29T10:00:00Z"}
    if reason:
        item["overrideReason"] = {"reason": {"system": "urn:mscc-triage:override-reason", "code": reason}}
    if accepted:
        item["acceptedSuggestions"] = [{"id": s["uuid"]} for s in card["suggestions"][:accepted]]
    response = client.post(SERVICE + "/feedback", json={"feedback": [item]}, headers=headers or {})
    assert response.status_code == 200, response.get_data(as_text=True)


def test_the_summary_counts_feedback_per_indicator_outcome_and_override_reason(client):
    critical = [client.post(SERVICE, json=patient_view()).get_json()["cards"][0] for _ in range(3)]
    other = client.post(SERVICE, json=patient_view(weakness=False)).get_json()["cards"][0]
    assert {c["indicator"] for c in critical} == {"critical"} and other["indicator"] != "critical"
    feedback(client, critical[0], "overridden", "already-done")
    feedback(client, critical[1], "overridden", "already-done")
    feedback(client, critical[2], "accepted", accepted=2)
    feedback(client, other, "overridden", "not-indicated")
    feedback(client, {"uuid": "a-card-this-store-never-issued"}, "overridden", "patient-declined")
    response = client.get(SUMMARY)
    assert response.status_code == 200 and response.mimetype == "application/json"
    summary = response.get_json()
    assert summary["cardsIssued"] == {"critical": 3, other["indicator"]: 1}
    assert sorted(summary["outcomes"], key=lambda r: (r["indicator"], r["outcome"])) == sorted([
        {"indicator": "critical", "outcome": "accepted", "overrideReason": None, "count": 1, "acceptedSuggestions": 2},
        {"indicator": "critical", "outcome": "overridden", "overrideReason": "already-done", "count": 2,
         "acceptedSuggestions": 0},
        {"indicator": other["indicator"], "outcome": "overridden", "overrideReason": "not-indicated", "count": 1,
         "acceptedSuggestions": 0},
        {"indicator": "unknown", "outcome": "overridden", "overrideReason": "patient-declined", "count": 1,
         "acceptedSuggestions": 0},
    ], key=lambda r: (r["indicator"], r["outcome"]))
    text = response.get_data(as_text=True)
    assert critical[0]["uuid"] not in text and "p1" not in text   # counts only: no card id, no patient


def test_the_summary_is_empty_before_any_card(client):
    assert client.get(SUMMARY).get_json() == {"cardsIssued": {}, "outcomes": []}


def test_the_card_table_holds_no_patient_data(app, client):
    card = client.post(SERVICE, json=patient_view("patient-42")).get_json()["cards"][0]
    with cds_module.store(app) as conn:
        rows = conn.execute("SELECT * FROM card").fetchall()
    assert len(rows) == 1 and rows[0][:2] == (card["uuid"], "critical")
    assert "patient-42" not in repr(rows)


def test_a_store_that_cannot_keep_the_card_type_still_answers_the_card(client, monkeypatch, caplog):
    class Full:
        def __init__(self, app):
            pass

        def __enter__(self):
            raise cds_module.StoreUnavailable("full")

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(cds_module, "store", Full)   # the CDS store only; the decision record has its own
    response = client.post(SERVICE, json=patient_view())
    assert response.status_code == 200
    card = response.get_json()["cards"][0]
    assert card["indicator"] == "critical"
    assert not any("?from=" in link["url"] for link in card["links"])   # nothing kept: the link opens an empty form
    assert "its feedback will count as 'unknown'" in caplog.text


# ------------------------------------------------------------------------------ protected like the rest

@pytest.fixture
def keys():
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    jwk.update(kid="k1", alg="RS384", use="sig")
    return private, {"keys": [jwk]}


@pytest.fixture
def secured(tmp_path, keys):
    return create_app({"TESTING": True, "CDS_STORE_PATH": str(tmp_path / "cds.sqlite3"),
                       "PUBLIC_BASE_URL": "http://localhost/",
                       "CDS_TRUSTED_ISSUERS": {"https://ehr.example.org": keys[1]}}).test_client()


def token(private, aud: str) -> str:
    now = int(time.time())
    return jwt.encode({"iss": "https://ehr.example.org", "aud": aud, "exp": now + 300, "iat": now,
                       "jti": str(uuid.uuid4())}, private, algorithm="RS384", headers={"kid": "k1"})


def test_the_summary_needs_a_valid_jwt(secured, keys):
    assert secured.get(SUMMARY).status_code == 401
    assert secured.get(SUMMARY, headers={"Authorization": "Bearer not-a-jwt"}).status_code == 401
    wrong_audience = token(keys[0], "http://localhost/cds-services/mscc-triage")
    assert secured.get(SUMMARY, headers={"Authorization": f"Bearer {wrong_audience}"}).status_code == 401
    good = token(keys[0], "http://localhost" + SUMMARY)
    response = secured.get(SUMMARY, headers={"Authorization": f"Bearer {good}"})
    assert response.status_code == 200 and response.get_json() == {"cardsIssued": {}, "outcomes": []}
    assert secured.get(SUMMARY, headers={"Authorization": f"Bearer {good}"}).status_code == 401   # jti used once


def test_an_unauthenticated_server_refuses_the_summary_without_issuers(tmp_path):
    client = create_app({"TESTING": True, "CDS_STORE_PATH": str(tmp_path / "c.sqlite3")}).test_client()
    assert client.get(SUMMARY).status_code == 401

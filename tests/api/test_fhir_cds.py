"""Issue 16, end to end: a CDS Hooks call gathers the record from prefetch and from a real local FHIR
server (tests/api/fhir/localfhir.py on 127.0.0.1), maps it, triages it and answers a card with
suggestions; every way the FHIR server can fail is a 412 naming the data and why.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
import time
import uuid
from pathlib import Path

import pytest

import triage
from mscc_triage_api import ApiConfigError, create_app
from mscc_triage_api.cds.service import recorded_feedback

SERVICE = "/cds-services/mscc-triage"
HERE = Path(__file__).parent
if "localfhir" not in sys.modules:
    _spec = importlib.util.spec_from_file_location("localfhir", HERE / "fhir" / "localfhir.py")
    sys.modules["localfhir"] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules["localfhir"])
localfhir = sys.modules["localfhir"]
MODES = ("fhir", "open", "forbidden", "slow", "html", "nomeds", "offsite")


@pytest.fixture
def fhir():
    with localfhir.LocalFhir(localfhir.load()) as server:
        yield server


@pytest.fixture
def client(fhir, tmp_path):
    app = create_app({"TESTING": True, "CDS_STORE_PATH": str(tmp_path / "cds.sqlite3"), "CDS_ALLOW_UNAUTHENTICATED": True,
                      "FHIR_SERVERS": [fhir.base(m) for m in MODES]})
    client = app.test_client()
    client.application = app
    return client


def call(fhir, mode="fhir", bearer=localfhir.TOKEN, prefetch=None, patient="mscc-1", server=None) -> dict:
    body = {"hook": "patient-view", "hookInstance": str(uuid.uuid4()),
            "context": {"userId": "Practitioner/1", "patientId": patient},
            "fhirServer": server or fhir.base(mode)}
    if bearer:
        body["fhirAuthorization"] = {"access_token": bearer, "token_type": "Bearer", "expires_in": 300,
                                     "scope": "patient/*.read", "subject": "mscc-triage"}
    if prefetch is not None:
        body["prefetch"] = prefetch
    return body


def bundle(*names: str) -> dict:
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in localfhir.load(*names)]}


def fetched_paths(fhir) -> list[str]:
    return sorted(r[1].split("?")[0].split("/")[2] for r in fhir.requests)


def test_done_when_no_prefetch_everything_is_fetched_and_the_card_is_critical_with_orders(client, fhir):
    response = client.post(SERVICE, json=call(fhir))
    assert response.status_code == 200, response.get_data(as_text=True)
    card = response.get_json()["cards"][0]
    assert card["indicator"] == "critical"
    assert fetched_paths(fhir) == ["Condition", "MedicationRequest", "MedicationStatement", "Observation", "Patient", "Procedure"]
    assert "Corrected calcium (mmol/L): 3.6 (observation " in card["detail"]
    assert "observations: fetched from the FHIR server" in card["detail"]
    resources = [a["resource"] for s in card["suggestions"] for a in s["actions"]]
    mri = [r for r in resources if r["resourceType"] == "ServiceRequest" and "whole spine" in r["code"]["text"]]
    dex = [r for r in resources if r["resourceType"] == "MedicationRequest"
           and r["medicationCodeableConcept"]["text"].startswith("Dexamethasone 16 mg")]
    assert len(mri) == 1 and len(dex) == 1
    for r in resources:
        assert r["status"] == "draft" and r["intent"] == "proposal" and r["subject"] == {"reference": "Patient/mscc-1"}
    assert card["suggestions"][0]["isRecommended"] is True and "whole spine" in card["suggestions"][0]["label"]
    assert card["selectionBehavior"] == "any"
    assert all(uuid.UUID(s["uuid"]) for s in card["suggestions"])
    assert localfhir.TOKEN not in response.get_data(as_text=True)


def test_full_prefetch_contacts_nobody(client, fhir):
    prefetch = {"patient": localfhir.load("patient")[0], "conditions": bundle("condition-prostate-cancer"),
                "observations": bundle("observation-weakness"), "medicationRequests": None, "medicationStatements": None,
                "procedures": None}
    response = client.post(SERVICE, json=call(fhir, prefetch=prefetch))
    assert response.status_code == 200 and fhir.requests == []
    assert "medicationRequests: sent empty (null)" in response.get_json()["cards"][0]["detail"]


def test_partial_prefetch_fetches_only_what_is_missing_and_null_is_never_refetched(client, fhir):
    prefetch = {"patient": localfhir.load("patient")[0], "conditions": None, "medicationStatements": None}
    response = client.post(SERVICE, json=call(fhir, prefetch=prefetch))
    assert response.status_code == 200
    assert fetched_paths(fhir) == ["MedicationRequest", "Observation", "Procedure"]
    detail = response.get_json()["cards"][0]["detail"]
    assert "conditions: sent empty (null)" in detail and "observations: fetched from the FHIR server" in detail


@pytest.mark.parametrize("mode, bearer, code", [
    ("fhir", "a-wrong-token", "fhir-authorization"),
    ("fhir", None, "fhir-authorization"),
    ("forbidden", localfhir.TOKEN, "fhir-authorization"),
    ("slow", localfhir.TOKEN, "fhir-timeout"),
    ("html", localfhir.TOKEN, "fhir-not-fhir"),
    ("offsite", localfhir.TOKEN, "fhir-incomplete"),   # search pages left unread: never a card from part of the record
])
def test_a_failing_fhir_server_is_a_412_naming_the_data_and_why(client, fhir, mode, bearer, code, caplog):
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="mscc_triage"):
        response = client.post(SERVICE, json=call(fhir, mode, bearer, prefetch={"patient": localfhir.load("patient")[0]}))
    assert time.monotonic() - started < 0.6   # the EHR expects an answer in the order of 500 ms
    assert response.status_code == 412 and response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert problem["type"] == f"urn:mscc-triage:problem:{code}"
    assert {e["prefetch"] for e in problem["errors"]} == {"conditions", "observations"}
    assert "conditions" in problem["detail"] and "observations" in problem["detail"]
    assert localfhir.TOKEN not in response.get_data(as_text=True) and localfhir.TOKEN not in caplog.text


def test_a_server_not_on_the_list_is_never_contacted(client, fhir):
    response = client.post(SERVICE, json=call(fhir, "gone"))   # a base of the same server, but not listed
    assert response.status_code == 412
    assert response.get_json()["type"] == "urn:mscc-triage:problem:fhir-server-not-allowed"
    assert fhir.requests == []


def test_without_an_allow_list_nothing_is_fetched(fhir, tmp_path, monkeypatch):
    monkeypatch.delenv("MSCC_TRIAGE_FHIR_SERVERS", raising=False)
    client = create_app({"TESTING": True, "CDS_STORE_PATH": str(tmp_path / "c.sqlite3"),
                         "CDS_ALLOW_UNAUTHENTICATED": True}).test_client()
    response = client.post(SERVICE, json=call(fhir))
    assert response.status_code == 412 and "MSCC_TRIAGE_FHIR_SERVERS" in response.get_json()["detail"]
    assert fhir.requests == []


def test_the_allow_list_is_read_from_the_environment_and_checked_at_start(fhir, tmp_path, monkeypatch):
    monkeypatch.setenv("MSCC_TRIAGE_FHIR_SERVERS", f"{fhir.base('open')}, ")
    client = create_app({"TESTING": True, "CDS_STORE_PATH": str(tmp_path / "c.sqlite3"),
                         "CDS_ALLOW_UNAUTHENTICATED": True}).test_client()
    assert client.post(SERVICE, json=call(fhir, "open", bearer=None)).status_code == 200
    monkeypatch.setenv("MSCC_TRIAGE_FHIR_SERVERS", "fhir.example.org")
    with pytest.raises(ApiConfigError, match="MSCC_TRIAGE_FHIR_SERVERS"):
        create_app({"TESTING": True, "CDS_STORE_PATH": str(tmp_path / "c.sqlite3")})


def test_medications_that_cannot_be_had_stay_unknown_and_the_card_says_so(client, fhir):
    response = client.post(SERVICE, json=call(fhir, "nomeds", bearer=None))
    assert response.status_code == 200
    detail = response.get_json()["cards"][0]["detail"]
    assert "medicationRequests: not available (the FHIR server answered 403" in detail
    assert "patient.treatments" not in detail.split("From the record")[1]


def test_healthchain_patient_view_with_its_own_keys(client, fhir):
    """HealthChain 0.16 sandbox: prefetch keys patient, encounter, condition; one Condition, not a Bundle."""
    body = json.loads((HERE / "fhir" / "requests" / "healthchain-patient-view.json").read_text())
    body["fhirServer"] = fhir.base("open")
    response = client.post(SERVICE, json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    detail = response.get_json()["cards"][0]["detail"]
    assert "Cancer history: Current, Primary cancer: Prostate (condition " in detail and "SNOMED CT 399068003" in detail
    assert "conditions: sent under another key" in detail and "patient: sent" in detail
    # only what HealthChain did not send was fetched: never its Conditions again
    assert fetched_paths(fhir) == ["MedicationRequest", "MedicationStatement", "Observation", "Procedure"]


def test_healthchain_without_a_fhir_server_gets_a_card_that_asks_what_it_lacks(client, fhir):
    body = json.loads((HERE / "fhir" / "requests" / "healthchain-patient-view.json").read_text())
    response = client.post(SERVICE, json=body)
    assert response.status_code == 200, response.get_json()
    card = response.get_json()["cards"][0]
    # a cancer and no symptom: a warning that asks, never "No MSCC pathway today" (audit of 5 December)
    assert card["summary"] == "No symptom in the record: open the form to triage" and card["indicator"] == "warning"
    assert "Ask first" in card["detail"] and "observations" in card["detail"]
    assert "Cancer history: Current" in card["detail"]
    assert fhir.requests == []


def test_observations_that_cannot_be_fetched_from_a_given_server_are_a_412(client, fhir):
    body = json.loads((HERE / "fhir" / "requests" / "healthchain-patient-view.json").read_text())
    body["fhirServer"] = "http://127.0.0.1:9/not-allowed"
    response = client.post(SERVICE, json=body)
    assert response.status_code == 412
    assert "observations" in [e["prefetch"] for e in response.get_json()["errors"]]


@pytest.mark.parametrize("patient", ["..", "a/b", "x?y=1", "", "é"])
def test_a_patient_id_that_is_not_a_fhir_id_is_never_put_in_a_url(client, fhir, patient):
    response = client.post(SERVICE, json=call(fhir, patient=patient))
    if patient == "":   # no patient at all: a 400 naming context.patientId
        assert response.status_code == 400 and "context.patientId is required" in response.get_json()["detail"]
    else:
        assert response.status_code == 412 and response.get_json()["type"] == "urn:mscc-triage:problem:fhir-cannot-fetch"
    assert fhir.requests == []


def test_resources_about_another_patient_are_a_412_never_a_card(client, fhir):
    # Issue 20 changed this: they used to be set aside and the rest triaged, with a "Set aside: 1
    # resource(s)" line on a card that could say "No MSCC pathway today" (info) for a record that was
    # never read. Now the call is refused (412) naming what was set aside, and nothing is fetched.
    other = dict(localfhir.load("condition-prostate-cancer")[0], subject={"reference": "Patient/someone-else"})
    prefetch = {"patient": localfhir.load("patient")[0], "conditions": {"resourceType": "Bundle", "entry": [{"resource": other}]},
                "observations": None, "medicationRequests": None, "medicationStatements": None}
    response = client.post(SERVICE, json=call(fhir, prefetch=prefetch))
    assert response.status_code == 412 and response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert problem["type"] == "urn:mscc-triage:problem:fhir-other-patient"
    assert problem["setAside"] == [{"source": "prefetch.conditions", "resourceType": "Condition", "count": 1,
                                    "reason": "subject is not context.patientId"}]
    assert "someone-else" not in response.get_data(as_text=True) and "399068003" not in response.get_data(as_text=True)
    assert fhir.requests == []


def test_override_and_accepted_suggestions_feedback_round_trip(client, fhir):
    card = client.post(SERVICE, json=call(fhir)).get_json()["cards"][0]
    assert card["indicator"] == "critical"
    reasons = card["overrideReasons"]
    assert {r["code"] for r in reasons} >= {"already-done", "discussed-with-coordinator", "patient-declined", "not-indicated"}
    assert all(r["system"] == "urn:mscc-triage:override-reason" and r["display"] for r in reasons)
    feedback = {"feedback": [
        {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-29T10:00:00Z",
         "overrideReason": {"reason": reasons[1], "userComment": "coordinator already called"}},
        {"card": card["uuid"], "outcome": "accepted", "outcomeTimestamp": "2026-11-29T10:01:00Z",
         "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}]},
    ]}
    assert client.post(SERVICE + "/feedback", json=feedback).status_code == 200
    assert recorded_feedback(client.application) == [
        {"card": card["uuid"], "outcome": "overridden", "accepted_suggestions": 0,
         "override_reason": "discussed-with-coordinator"},
        {"card": card["uuid"], "outcome": "accepted", "accepted_suggestions": 1, "override_reason": None}]


def test_the_form_links_are_absolute(client, fhir):
    card = client.post(SERVICE, json=call(fhir)).get_json()["cards"][0]
    urls = {link["url"].split("?from=")[0]: link["type"] for link in card["links"]}
    assert urls == {"http://localhost/v1/ruleset": "absolute", "http://localhost/": "absolute",
                    "http://localhost/fr/": "absolute"}
    assert client.get("/").status_code == 200 and client.get("/fr/").status_code == 200


def test_discovery_names_the_medication_templates(client):
    prefetch = client.get("/cds-services").get_json()["services"][0]["prefetch"]
    assert prefetch["medicationRequests"] == "MedicationRequest?patient={{context.patientId}}&status=active"
    assert prefetch["medicationStatements"] == "MedicationStatement?patient={{context.patientId}}&status=active"


def test_version_of_the_ruleset_is_on_the_card(client, fhir):
    card = client.post(SERVICE, json=call(fhir)).get_json()["cards"][0]
    assert triage.load_ruleset().version in card["source"]["label"]


def test_the_cards_form_link_opens_the_form_filled_in_from_the_record(tmp_path):
    from mscc_triage_api import create_app

    app = create_app({"TESTING": True, "CDS_STORE_PATH": str(tmp_path / "cds.sqlite3"),
                      "CDS_ALLOW_UNAUTHENTICATED": True})
    client = app.test_client()
    body = {"hook": "patient-view", "hookInstance": "6b1c1b0e-1d55-4a43-9a0e-5b2b3f0c2d11",
            "context": {"userId": "Practitioner/1", "patientId": "p1"},
            "prefetch": {"patient": {"resourceType": "Patient", "id": "p1", "birthDate": "1950-02-01"},
                         "conditions": {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": {
                             "resourceType": "Condition", "subject": {"reference": "Patient/p1"},
                             "clinicalStatus": {"coding": [{"code": "active"}]},
                             "code": {"coding": [{"system": "http://snomed.info/sct", "code": "399068003"}]}}}]},
                         "observations": {"resourceType": "Bundle", "type": "searchset", "entry": []}}}
    card = client.post("/cds-services/mscc-triage", json=body).get_json()["cards"][0]
    links = {link["url"] for link in card["links"]}
    form_link = next(u for u in links if "?from=" in u and "/fr/" not in u)
    assert "prostate" not in form_link and "399068003" not in form_link   # the link carries no finding
    page = client.get(form_link.split("localhost", 1)[-1]).get_data(as_text=True)
    assert 'id="prefilled"' in page
    assert 'selected' in page.split('value="prostate"', 1)[1][:20]
    assert 'id="prefilled"' not in client.get("/?from=not-a-token").get_data(as_text=True)

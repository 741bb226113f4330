"""Issue 20, "The EHR edge": never a reassuring card for the wrong record.

A breast-cancer patient with bone metastases and new leg weakness came back "No MSCC pathway today"
(info) because HealthChain's sandbox had sent a prefetch about another patient than
``context.patientId``: the resources were set aside and the empty rest triaged. Now:

- resources about another patient (Bundle entries, a Patient of another id, what a FHIR server
  answers) are a 412 problem naming how many resources of which type were set aside and why, and
  nothing about the other patient is echoed or logged;
- a record read for this patient that holds no finding gets a warning card that asks for the form,
  with the form's labels (never field paths) and its pre-filled link;
- a matched record still gets its card.

The requests are real FHIR R4 JSON in tests/api/fhir/requests/.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import re
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from mscc_triage_api import create_app
from triage._case import FIELDS

SERVICE = "/cds-services/mscc-triage"
HERE = Path(__file__).parent
REQUESTS = HERE / "fhir" / "requests"
if "localfhir" not in sys.modules:
    _spec = importlib.util.spec_from_file_location("localfhir", HERE / "fhir" / "localfhir.py")
    sys.modules["localfhir"] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules["localfhir"])
localfhir = sys.modules["localfhir"]
OTHER_PATIENT = "urn:mscc-triage:problem:fhir-other-patient"
THIN = "Not enough in the record to triage: open the form"


def request(name: str) -> dict:
    body = json.loads((REQUESTS / f"{name}.json").read_text(encoding="utf-8"))
    body["hookInstance"] = str(uuid.uuid4())
    return body


@pytest.fixture
def fhir():
    with localfhir.LocalFhir(localfhir.load()) as server:
        yield server


@pytest.fixture
def app(tmp_path, fhir):
    return create_app({"TESTING": True, "CDS_STORE_PATH": str(tmp_path / "cds.sqlite3"),
                       "CDS_ALLOW_UNAUTHENTICATED": True, "FHIR_SERVERS": [fhir.base("fhir"), fhir.base("open")]})


@pytest.fixture
def client(app):
    return app.test_client()


def never_a_card(response) -> dict:
    """The answer is a 412 problem, never a card (least of all a routine / info one)."""
    assert response.status_code == 412, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert "cards" not in problem
    assert problem["type"] == OTHER_PATIENT and problem["status"] == 412
    assert "No MSCC pathway" not in response.get_data(as_text=True)
    return problem


def nothing_of(text: str, *about: str) -> None:
    for value in about:
        assert value not in text, value


# What the other patient's resources hold: ids, names, identifiers, dates, codes, values, body sites.
OTHER_RECORD = ("Patient/other", "Roe", "Jane", "9990000417", "1962-04-17", "254837009", "94222008", "26544005",
                "2.71", "both legs", "cond-breast", "obs-weakness")


# ------------------------------------------------------------------------------ another patient: 412

def test_bundle_entries_about_patient_other_are_a_412_naming_what_was_set_aside(client, caplog):
    with caplog.at_level(logging.DEBUG):
        response = client.post(SERVICE, json=request("bundle-about-another-patient"))
    problem = never_a_card(response)
    assert problem["setAside"] == [
        {"source": "prefetch.conditions", "resourceType": "Condition", "count": 2,
         "reason": "subject is not context.patientId"},
        {"source": "prefetch.observations", "resourceType": "Observation", "count": 5,
         "reason": "subject is not context.patientId"}]
    assert "7 resource(s) set aside (2 Condition, 5 Observation)" in problem["detail"]
    assert "subject is not context.patientId" in problem["detail"] and "integration error" in problem["detail"]
    nothing_of(response.get_data(as_text=True), *OTHER_RECORD)
    nothing_of(caplog.text, *OTHER_RECORD)


def test_a_patient_resource_of_another_id_is_a_412(client, caplog):
    with caplog.at_level(logging.DEBUG):
        response = client.post(SERVICE, json=request("patient-resource-of-another-patient"))
    problem = never_a_card(response)
    assert problem["setAside"] == [{"source": "prefetch.patient", "resourceType": "Patient", "count": 1,
                                    "reason": "Patient.id is not context.patientId"}]
    other = ("Smith", "Zoe", "1990-09-09", "9990000909", "Patient/other", '"other"')
    nothing_of(response.get_data(as_text=True), *other)
    nothing_of(caplog.text, *other)


def test_a_healthchain_request_with_a_random_patient_id_never_gets_a_routine_card(client, fhir, caplog):
    """HealthChain's sandbox: context.patientId invented, prefetch keys patient, condition, observation
    about patient 123 (breast cancer, bone metastases, new leg weakness): the 8 resources of the
    incident. Before, it was set aside and the empty rest answered "No MSCC pathway today" (info)."""
    body = request("healthchain-random-patient")
    with caplog.at_level(logging.DEBUG):
        response = client.post(SERVICE, json=body)
    problem = never_a_card(response)
    assert {(s["source"], s["resourceType"], s["count"]) for s in problem["setAside"]} == {
        ("prefetch.patient", "Patient", 1), ("prefetch.condition", "Condition", 2),
        ("prefetch.observation", "Observation", 5)}
    assert problem["detail"].startswith("8 resource(s) set aside (2 Condition, 5 Observation, 1 Patient)")
    text = response.get_data(as_text=True)
    nothing_of(text, *OTHER_RECORD, "Patient/123", '"123"')
    nothing_of(caplog.text, *OTHER_RECORD, "Patient/123")
    assert body["context"]["patientId"] not in text   # nor any id at all

    # with a FHIR server to fetch from: still a 412, and nothing is fetched for a record about someone else
    body = request("healthchain-random-patient")
    body["fhirServer"] = fhir.base("open")
    never_a_card(client.post(SERVICE, json=body))
    assert fhir.requests == []


def test_a_fhir_server_that_answers_for_another_patient_is_a_412(client, fhir, caplog):
    """The prefetch is right; the FHIR server, asked for this patient's observations, answers with
    another patient's (a misconfigured proxy or search parameter)."""
    body = request("breast-bone-mets-weakness")
    del body["prefetch"]["observations"]
    body["fhirServer"] = fhir.base("open")
    stray = json.loads((REQUESTS / "bundle-about-another-patient.json").read_text())["prefetch"]["observations"]
    fhir.answer = lambda mode, path, query: stray if path == ["Observation"] else None
    with caplog.at_level(logging.DEBUG):
        response = client.post(SERVICE, json=body)
    problem = never_a_card(response)
    assert problem["setAside"] == [{"source": "fetched.observations", "resourceType": "Observation", "count": 5,
                                    "reason": "subject is not context.patientId"}]
    nothing_of(response.get_data(as_text=True), *OTHER_RECORD)
    nothing_of(caplog.text, *OTHER_RECORD)


@pytest.mark.parametrize("context", [None, [], {}, {"patientId": None}, {"patientId": ""}, {"patientId": 5}])
def test_without_a_context_patient_id_the_call_is_a_400_naming_it_and_nothing_is_read(client, fhir, context):
    body = request("breast-bone-mets-weakness")
    body["fhirServer"] = fhir.base("open")
    body["context"] = context
    response = client.post(SERVICE, json=body)
    assert response.status_code == 400 and response.mimetype == "application/problem+json"
    assert "context.patientId is required" in response.get_json()["detail"] and "cards" not in response.get_json()
    assert fhir.requests == []


def test_nothing_is_recorded_or_remembered_for_a_refused_call(app, client):
    never_a_card(client.post(SERVICE, json=request("healthchain-random-patient")))
    from mscc_triage_api.cds.service import feedback_summary

    assert feedback_summary(app)["cardsIssued"] == {}


# ------------------------------------------------------------------------------ the right record: its card

def test_the_same_record_matched_gets_its_critical_card(client):
    response = client.post(SERVICE, json=request("breast-bone-mets-weakness"))
    assert response.status_code == 200, response.get_data(as_text=True)
    card = response.get_json()["cards"][0]
    assert card["indicator"] == "critical" and card["summary"] != THIN
    assert "Cancer history: Current, Primary cancer: Breast (condition " in card["detail"] and "254837009" in card["detail"]
    assert "Limb weakness: Yes (observation " in card["detail"]
    assert "Set aside" not in card["detail"]


def test_the_healthchain_request_of_issue_16_still_gets_its_card(client):
    body = json.loads((REQUESTS / "healthchain-patient-view.json").read_text())
    response = client.post(SERVICE, json=body)
    assert response.status_code == 200
    assert response.get_json()["cards"][0]["summary"] != THIN   # a cancer was read: a finding


# ------------------------------------------------------------------------------ a thin record: the form

def field_paths_in(text: str) -> list[str]:
    return [path for path in FIELDS if path in text] + re.findall(r"\b(?:patient|presentation|assessment|labs)\.[a-z_]+", text)


def test_a_thin_record_gets_a_warning_card_asking_for_the_form(client, app):
    response = client.post(SERVICE, json=request("thin-record"))
    assert response.status_code == 200, response.get_data(as_text=True)
    card = response.get_json()["cards"][0]
    assert card["indicator"] == "warning"
    assert card["summary"] == THIN
    assert "No MSCC pathway" not in card["summary"] + card["detail"]
    assert field_paths_in(card["summary"] + card["detail"]) == []
    detail = card["detail"]
    asked = detail.split("**Ask first**", 1)[1].split("**From the record**", 1)[0]
    labels = app.extensions["mscc_form_texts"].fields
    assert f"- {labels['presentation.weakness.present']['en']}: if present, emergency" in asked
    assert labels["presentation.focal_vertebral_pain.present"]["en"] in asked
    # (spec 2.2: with nothing known every group leads to an emergency, so there is no 'urgent' line to order)
    assert re.search(r"Age \(years\): \d+ \(date of birth\)", detail) and "conditions: sent" in detail
    assert "suggestions" not in card
    # the form's link, pre-filled with what the record said (the age); the links keep their order
    form = next(link for link in card["links"] if link["label"].startswith("Open the MSCC triage form"))
    assert "?from=" in form["url"]
    page = client.get(form["url"].split("localhost", 1)[1]).get_data(as_text=True)
    assert 'id="prefilled"' in page
    assert {link["url"].split("?")[0] for link in card["links"]} == {
        "http://localhost/", "http://localhost/fr/", "http://localhost/v1/ruleset"}


@pytest.mark.parametrize("change", ["nothing at all", "refuted cancer", "no observations key"])
def test_every_thin_record_asks_for_the_form_never_reassures(client, change):
    body = request("thin-record")
    prefetch = body["prefetch"]
    if change == "nothing at all":
        prefetch["conditions"] = prefetch["observations"] = None
    elif change == "refuted cancer":
        condition = prefetch["conditions"]["entry"][0]["resource"]
        condition["code"]["coding"][0].update(code="254837009", display="Malignant neoplasm of breast")
        condition["verificationStatus"] = {"coding": [{"code": "refuted"}]}
    else:
        del prefetch["observations"]   # no server to fetch from: every finding is still to ask
    response = client.post(SERVICE, json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    card = response.get_json()["cards"][0]
    assert (card["indicator"], card["summary"]) == ("warning", THIN)
    assert field_paths_in(card["summary"] + card["detail"]) == []


def test_findings_are_every_mapped_field_but_the_age():
    from mscc_triage_api.fhir.map import findings

    assert findings({}) == [] and findings({"patient": {"age_years": 70, "cancer": {}}}) == []
    assert findings({"patient": {"age_years": 70, "cancer": {"history": "past"}}}) == ["patient.cancer.history"]
    assert findings({"presentation": {"weakness": {"present": False}}}) == ["presentation.weakness.present"]


# ------------------------------------------------------------------------------ not shown to be this patient's: 412
# (audit of 2026-12-05: only a plain "Patient/<other id>" was caught; these were triaged as the context patient)

UNCHECKABLE_SUBJECTS = [
    ({"identifier": {"system": "urn:mrn", "value": "victim-99"}}, "subject is not a reference to a Patient by id"),
    ({"reference": "https://other-hospital.example/fhir/Patient/mscc-2"},
     "subject is not a reference to a Patient on the call's FHIR server"),
    ({"reference": "Group/mscc-2"}, "subject is not a reference to a Patient on the call's FHIR server"),
    ({"reference": {"x": 1}}, "subject is not a reference to a Patient by id"),
    ({"reference": "#p1"}, "subject is not a reference to a Patient on the call's FHIR server"),
    ({"reference": "patient/mscc-2"}, "subject is not a reference to a Patient on the call's FHIR server"),
    (None, "Condition has no subject"),
]


@pytest.mark.parametrize("subject, reason", UNCHECKABLE_SUBJECTS)
def test_a_condition_not_shown_to_be_this_patients_is_set_aside_never_triaged(client, subject, reason):
    body = request("breast-bone-mets-weakness")
    condition = body["prefetch"]["conditions"]["entry"][1]["resource"]
    assert condition["subject"] == {"reference": "Patient/mscc-2"}
    if subject is None:
        del condition["subject"]
    else:
        condition["subject"] = subject
    problem = never_a_card(client.post(SERVICE, json=body))
    assert problem["setAside"] == [{"source": "prefetch.conditions", "resourceType": "Condition", "count": 1,
                                    "reason": reason}]
    nothing_of(json.dumps(problem), "victim-99", "other-hospital")


def test_a_patient_without_an_id_is_set_aside(client):
    body = request("breast-bone-mets-weakness")
    del body["prefetch"]["patient"]["id"]
    problem = never_a_card(client.post(SERVICE, json=body))
    assert problem["setAside"] == [{"source": "prefetch.patient", "resourceType": "Patient", "count": 1,
                                    "reason": "a Patient without an id"}]


@pytest.mark.parametrize("reference", ["Patient/mscc-2", "Patient/mscc-2/_history/3", "{server}/Patient/mscc-2",
                                       "{server}/Patient/mscc-2/_history/1"])
def test_references_to_this_patient_relative_or_on_the_calls_server_are_read(client, fhir, reference):
    body = request("breast-bone-mets-weakness")
    body["fhirServer"] = fhir.base("open")
    for entry in body["prefetch"]["conditions"]["entry"]:
        entry["resource"]["subject"] = {"reference": reference.format(server=fhir.base("open") + "/")}
    response = client.post(SERVICE, json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["cards"][0]["indicator"] == "critical"


def test_an_absolute_reference_without_a_fhir_server_to_check_it_against_is_set_aside(client, fhir):
    body = request("breast-bone-mets-weakness")
    body["prefetch"]["conditions"]["entry"][0]["resource"]["subject"] = {"reference": fhir.base("open") + "/Patient/mscc-2"}
    body.pop("fhirServer", None)
    problem = never_a_card(client.post(SERVICE, json=body))
    assert problem["setAside"][0]["reason"] == "subject is not a reference to a Patient on the call's FHIR server"


def test_a_resource_the_triage_does_not_read_keeps_the_old_check_only(client):
    """An Encounter (read by nobody) with a Group subject is left alone; one naming another Patient is not."""
    body = request("breast-bone-mets-weakness")
    body["prefetch"]["encounter"] = {"resourceType": "Encounter", "id": "e1", "subject": {"reference": "Group/ward-4"}}
    assert client.post(SERVICE, json=body).status_code == 200
    body = request("breast-bone-mets-weakness")
    body["prefetch"]["encounter"] = {"resourceType": "Encounter", "id": "e1", "subject": {"reference": "Patient/other"}}
    never_a_card(client.post(SERVICE, json=body))


def test_an_observation_whose_focus_is_another_patient_is_a_412(client, caplog):
    """Audit: an Observation of this patient's record about another Patient (Observation.focus: a
    relative, a donor) was read as this patient's finding."""
    body = request("breast-bone-mets-weakness")
    observations = body["prefetch"]["observations"]["entry"]
    observations[0]["resource"]["focus"] = [{"reference": "Patient/relative-1"}]
    with caplog.at_level(logging.DEBUG):
        response = client.post(SERVICE, json=body)
    problem = never_a_card(response)
    assert {"source": "prefetch.observations", "resourceType": "Observation", "count": 1,
            "reason": "focus is another patient than context.patientId"} in problem["setAside"]
    nothing_of(response.get_data(as_text=True), "relative-1")
    nothing_of(caplog.text, "relative-1")
    patient = body["context"]["patientId"]
    observations[0]["resource"]["focus"] = [{"reference": f"Patient/{patient}"}]   # this patient: read as usual
    assert client.post(SERVICE, json=body).status_code == 200


# ------------------------------------------------------------------------------ audit2: a record that reassures
# (audit of 2026-12-06: each of these gave 200 info "No MSCC pathway today" from data not known to be this
# patient's, or from a record read only in part)

SYMPTOMS = ("161891005", "26544005", "91019004", "267064002", "165232002", "72042002", "23056005", "22325002")


def observation(code: str, value: bool, patient: str = "mscc-2", **extra) -> dict:
    """A final symptom Observation made an hour ago, ``valueBoolean`` ``value``."""
    when = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)
    resource = {"resourceType": "Observation", "id": f"obs-{code}", "status": "final",
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": code}]},
                "subject": {"reference": f"Patient/{patient}"},
                "effectiveDateTime": when.isoformat().replace("+00:00", "Z"), "valueBoolean": value}
    resource.update(extra)
    return resource


def searchset(*resources: dict, **extra) -> dict:
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources], **extra}


def reassuring_request() -> dict:
    """Active breast cancer and every symptom recorded absent an hour ago: 200 info "No MSCC pathway today"."""
    return {"hook": "patient-view", "hookInstance": str(uuid.uuid4()),
            "context": {"userId": "Practitioner/1", "patientId": "mscc-2"},
            "prefetch": {"patient": {"resourceType": "Patient", "id": "mscc-2", "birthDate": "1960-01-01"},
                         "conditions": searchset({
                             "resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/mscc-2"},
                             "clinicalStatus": {"coding": [{"code": "active"}]},
                             "code": {"coding": [{"system": "http://snomed.info/sct", "code": "254837009"}]}}),
                         "observations": searchset(*(observation(code, False) for code in SYMPTOMS)),
                         "medicationRequests": None, "medicationStatements": None, "procedures": None}}


def test_the_reassuring_baseline_is_info_and_weakness_present_is_critical(client):
    response = client.post(SERVICE, json=reassuring_request())
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["cards"][0]["indicator"] == "info"
    body = reassuring_request()
    body["prefetch"]["observations"] = searchset(*(observation(code, code == "26544005") for code in SYMPTOMS))
    assert client.post(SERVICE, json=body).get_json()["cards"][0]["indicator"] == "critical"


NOT_THIS_PATIENT_FOCUS = [
    ({"reference": "Patient/other/_history/1"}, "focus is another patient than context.patientId"),
    ({"reference": "Patient/other/"}, "focus is not a reference to a Patient on the call's FHIR server"),
    ({"type": "Patient", "identifier": {"system": "urn:mrn", "value": "999"}}, "focus is not a reference to a Patient by id"),
    ({"reference": "Patient?identifier=urn:mrn|999"}, "focus is not a reference to a Patient on the call's FHIR server"),
    ({"reference": "urn:uuid:7f1c2a55-0000-4000-8000-000000000001", "type": "Patient"},
     "focus is not a reference to a Patient on the call's FHIR server"),
    ({"reference": "#p1"}, "focus is not a reference to a Patient on the call's FHIR server"),
    ({"reference": "https://other-hospital.example/fhir/Patient/other"},
     "focus is not a reference to a Patient on the call's FHIR server"),
    ({"reference": "https://other-hospital.example/fhir/Patient/mscc-2"},
     "focus is not a reference to a Patient on the call's FHIR server"),
    ({"reference": "RelatedPerson/mother"}, "focus is not a reference to a Patient on the call's FHIR server"),
]


@pytest.mark.parametrize("focus, reason", NOT_THIS_PATIENT_FOCUS)
def test_an_observation_whose_focus_is_not_known_to_be_this_patient_is_a_412(client, focus, reason):
    body = reassuring_request()
    for entry in body["prefetch"]["observations"]["entry"]:
        entry["resource"]["focus"] = [focus]
        if focus.get("reference") == "#p1":
            entry["resource"]["contained"] = [{"resourceType": "Patient", "id": "p1", "birthDate": "1990-01-01"}]
    problem = never_a_card(client.post(SERVICE, json=body))
    assert problem["setAside"] == [{"source": "prefetch.observations", "resourceType": "Observation", "count": 8,
                                    "reason": reason}]
    nothing_of(json.dumps(problem), "other-hospital", "999", "mother")


@pytest.mark.parametrize("subject", [{"reference": "Patient/other/"}, {"reference": "urn:uuid:7f1c2a55-0000-4000-8000-000000000001"},
                                     {"reference": "Patient?identifier=urn:mrn|999"},
                                     {"reference": "Patient/mscc-2", "type": "Group"}])
def test_an_observation_whose_subject_is_not_known_to_be_this_patient_is_a_412(client, subject):
    body = reassuring_request()
    for entry in body["prefetch"]["observations"]["entry"]:
        entry["resource"]["subject"] = subject
    problem = never_a_card(client.post(SERVICE, json=body))
    assert [(s["resourceType"], s["count"]) for s in problem["setAside"]] == [("Observation", 8)]


@pytest.mark.parametrize("focus", ["Patient/mscc-2", "Patient/mscc-2/_history/4", "{server}/Patient/mscc-2",
                                   "{server}/Patient/mscc-2/_history/2"])
def test_a_focus_on_this_patient_relative_versioned_or_on_the_calls_server_is_read(client, fhir, focus):
    body = reassuring_request()
    body["fhirServer"] = fhir.base("open")
    for entry in body["prefetch"]["observations"]["entry"]:
        entry["resource"]["focus"] = [{"reference": focus.format(server=fhir.base("open") + "/")}]
    response = client.post(SERVICE, json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["cards"][0]["indicator"] == "info"


@pytest.mark.parametrize("reference", ["Patient/other/", "Patient/other/_history/1", "urn:uuid:1234"])
def test_a_resource_the_triage_does_not_read_naming_another_patient_is_still_a_412(client, reference):
    body = reassuring_request()
    body["prefetch"]["encounter"] = {"resourceType": "Encounter", "id": "e1",
                                     "subject": {"reference": reference, "type": "Patient"}}
    problem = never_a_card(client.post(SERVICE, json=body))
    assert [(s["source"], s["resourceType"]) for s in problem["setAside"]] == [("prefetch.encounter", "Encounter")]


def fetched_observations(client, fhir, answer):
    """The reassuring request with its observations left to fetch; the FHIR server answers ``answer``
    (a resource, or raw bytes) to the Observation search."""
    body = reassuring_request()
    del body["prefetch"]["observations"]
    body["fhirServer"] = fhir.base("open")
    fhir.answer = lambda mode, path, query: answer(path, query) if path[0] == "Observation" else None
    return client.post(SERVICE, json=body)


def test_a_fhir_answer_with_a_key_given_twice_is_not_fhir_never_its_last_copy(client, fhir):
    """Audit2 finding 2: {"entry": [weakness present], "entry": [eight absent]} was read as its last copy."""
    present = json.dumps([{"resource": observation("26544005", True)}])
    absent = json.dumps([{"resource": observation(code, False)} for code in SYMPTOMS])
    for first, second in ((present, absent), (absent, present)):
        raw = f'{{"resourceType": "Bundle", "type": "searchset", "entry": {first}, "entry": {second}}}'.encode()
        response = fetched_observations(client, fhir, lambda path, query, raw=raw: raw)
        assert response.status_code == 412, response.get_data(as_text=True)
        problem = response.get_json()
        assert problem["type"] == "urn:mscc-triage:problem:fhir-not-fhir" and "cards" not in problem
        assert "appears twice" in problem["detail"]


def test_a_prefetch_with_a_key_given_twice_is_a_400(client):
    raw = json.dumps(reassuring_request())
    raw = raw.replace('"resourceType": "Bundle", "type": "searchset"',
                      '"resourceType": "Bundle", "type": "searchset", "entry": []', 1)
    response = client.post(SERVICE, data=raw, content_type="application/json")
    assert response.status_code == 400 and "appears twice" in response.get_json()["detail"]


INCOMPLETE = "urn:mscc-triage:problem:fhir-incomplete"


def test_a_bundle_inside_a_prefetch_bundle_is_a_412_never_dropped(client):
    """Audit2 finding 3: a nested searchset holding 'weakness present' was skipped; the rest gave info."""
    body = reassuring_request()
    body["prefetch"]["observations"]["entry"].append({"resource": searchset(observation("26544005", True))})
    response = client.post(SERVICE, json=body)
    assert response.status_code == 412, response.get_data(as_text=True)
    problem = response.get_json()
    assert problem["type"] == INCOMPLETE and "cards" not in problem
    assert problem["errors"] == [{"prefetch": "observations", "code": "fhir-incomplete",
                                  "reason": "prefetch.observations holds a Bundle inside a Bundle, which is not read"}]
    # a batch-response of searchsets, under a key of the client's own: the same
    body = reassuring_request()
    body["prefetch"]["everything"] = {"resourceType": "Bundle", "type": "batch-response",
                                      "entry": [{"resource": searchset(observation("26544005", True))}]}
    assert client.post(SERVICE, json=body).get_json()["type"] == INCOMPLETE


def test_a_bundle_inside_a_fetched_bundle_is_a_412_never_dropped(client, fhir):
    absent = [observation(code, False) for code in SYMPTOMS]
    response = fetched_observations(client, fhir, lambda path, query: {
        **searchset(*absent), "entry": [{"resource": r} for r in absent]
        + [{"resource": searchset(observation("26544005", True))}]})
    assert response.status_code == 412, response.get_data(as_text=True)
    problem = response.get_json()
    assert problem["type"] == INCOMPLETE and "cards" not in problem
    assert problem["errors"][0]["prefetch"] == "observations" and "Bundle inside" in problem["errors"][0]["reason"]


TRUNCATED = {"search": {"mode": "outcome"},
             "resource": {"resourceType": "OperationOutcome",
                          "issue": [{"severity": "warning", "code": "too-costly", "diagnostics": "results truncated at 8"}]}}


@pytest.mark.parametrize("marked", ["total 50", "total 9", "outcome too-costly", "outcome error"])
def test_a_fetched_search_that_says_it_is_incomplete_is_a_412(client, fhir, marked):
    """Audit2 finding 4: total larger than the entries, or a truncation OperationOutcome, gave info."""
    bundle = searchset(*(observation(code, False) for code in SYMPTOMS))
    if marked.startswith("total"):
        bundle["total"] = int(marked.split()[1])
    else:
        outcome = json.loads(json.dumps(TRUNCATED))
        outcome["resource"]["issue"][0]["severity"] = marked.split()[1].replace("too-costly", "warning")
        bundle["entry"].append(outcome)
    response = fetched_observations(client, fhir, lambda path, query: bundle)
    assert response.status_code == 412, response.get_data(as_text=True)
    problem = response.get_json()
    assert problem["type"] == INCOMPLETE and "cards" not in problem
    assert problem["errors"][0]["prefetch"] == "observations" and problem["errors"][0]["code"] == "fhir-incomplete"
    assert "truncated" not in problem["detail"]   # the server's own words are not echoed


def test_a_fetched_search_whose_total_counts_every_page_read_is_complete(client, fhir):
    """total counts the matches of every page: a total met across pages (and _include entries, an
    information outcome) is a complete search."""
    absent = [observation(code, False) for code in SYMPTOMS]
    info = json.loads(json.dumps(TRUNCATED))
    info["resource"]["issue"][0].update(severity="information", code="informational")

    def answer(path, query):
        page = int((query.get("_page") or ["0"])[0])
        bundle = searchset(*absent[page * 4:page * 4 + 4], total=8)
        bundle["entry"].append({"search": {"mode": "include"}, "resource": {"resourceType": "Practitioner", "id": "pr"}})
        if page == 0:
            bundle["entry"].append(info)
            bundle["link"] = [{"relation": "next", "url": f"{fhir.base('open')}/Observation?patient=mscc-2&_page=1"}]
        return bundle

    response = fetched_observations(client, fhir, answer)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["cards"][0]["indicator"] == "info"


@pytest.mark.parametrize("marked", ["total 50", "outcome", "next"])
def test_a_prefetch_search_that_says_it_is_incomplete_is_a_412(client, marked):
    body = reassuring_request()
    bundle = body["prefetch"]["observations"]
    if marked == "total 50":
        bundle["total"] = 50
    elif marked == "outcome":
        bundle["entry"].append(TRUNCATED)
    else:
        bundle["link"] = [{"relation": "next", "url": "https://ehr.example/fhir/Observation?page=2"}]
    response = client.post(SERVICE, json=body)
    assert response.status_code == 412, response.get_data(as_text=True)
    problem = response.get_json()
    assert problem["type"] == INCOMPLETE and problem["errors"][0]["prefetch"] == "observations"


PRESENT = {"coding": [{"system": "http://snomed.info/sct", "code": "52101004"}]}


def test_an_observation_with_two_values_absent_and_present_is_read_present(client):
    """Audit2 finding 5: valueBoolean false and a Present valueCodeableConcept (invalid FHIR) read absent."""
    body = reassuring_request()
    weakness = next(e["resource"] for e in body["prefetch"]["observations"]["entry"]
                    if e["resource"]["code"]["coding"][0]["code"] == "26544005")
    weakness["valueCodeableConcept"] = PRESENT
    response = client.post(SERVICE, json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    card = response.get_json()["cards"][0]
    assert card["indicator"] == "critical" and "Limb weakness: Yes" in card["detail"]


def test_an_absent_value_beside_a_data_absent_reason_is_not_taken(client):
    body = reassuring_request()
    weakness = next(e["resource"] for e in body["prefetch"]["observations"]["entry"]
                    if e["resource"]["code"]["coding"][0]["code"] == "26544005")
    weakness["dataAbsentReason"] = {"coding": [{"code": "unknown"}]}
    response = client.post(SERVICE, json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert "Limb weakness: No" not in response.get_json()["cards"][0]["detail"]

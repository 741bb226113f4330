"""Issue 20: what HealthChain 0.16.1's CDS Hooks sandbox really sends, replayed against a real server.

The bodies in tests/api/fixtures/healthchain/ were captured on the wire from HealthChain's own client
(``SandboxClient.send_requests``) by ``scripts/capture_healthchain.py``, run in HealthChain's own
virtual environment (see its docstring to capture them again). The sandbox's default request
invents ``context.patientId``: its record is about another patient and must never get a card, least
of all a routine / info "nothing to do" one; the same record with the Patient's id gets the
emergency card a breast-cancer patient with bone metastases and new leg weakness needs.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from serverctl import server_log, start_server, stop_server

from mscc_triage_api import create_app

FIXTURES = Path(__file__).parent / "fixtures" / "healthchain"
SERVICE = "/cds-services/mscc-triage"
OTHER_PATIENT = "urn:mscc-triage:problem:fhir-other-patient"


def captured(name: str) -> dict:
    body = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    assert body.pop("_captured")["client"] == "healthchain 0.16.1"
    return body


@pytest.fixture(scope="module")
def server():
    proc, url = start_server("--workers", "1", "--threads", "2", "--allow-unauthenticated-cds")
    assert proc.poll() is None, server_log(proc)
    yield url
    stop_server(proc)


def post(url: str, body: dict) -> tuple[int, str, dict]:
    request = urllib.request.Request(url + SERVICE, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.headers.get_content_type(), json.loads(answer.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers.get_content_type(), json.loads(error.read())


def test_the_fixtures_are_healthchain_s_own_requests():
    default, matched = captured("default-random-patient"), captured("matched-patient")
    # the sandbox's default: a patient id HealthChain invented, not the Patient resource's
    assert default["context"]["patientId"] != default["prefetch"]["patient"]["id"]
    assert matched["context"]["patientId"] == matched["prefetch"]["patient"]["id"]
    assert sorted(default["prefetch"]) == ["condition", "observation", "patient"]   # HealthChain's own keys
    assert default["prefetch"] == matched["prefetch"]


@pytest.mark.parametrize("name", ["default-random-patient", "synthetic"])
def test_healthchain_s_default_request_never_gets_a_card(server, name):
    status, mimetype, answer = post(server, captured(name))
    assert (status, mimetype) == (412, "application/problem+json"), answer
    assert answer["type"] == OTHER_PATIENT and "cards" not in answer
    assert "No MSCC pathway" not in json.dumps(answer)


def test_the_matched_record_gets_its_emergency_card(server):
    status, _, answer = post(server, captured("matched-patient"))
    assert status == 200, answer
    [card] = answer["cards"]
    assert card["indicator"] == "critical"
    assert card["summary"].startswith("Suspected metastatic spinal cord compression")
    assert "Cancer history: Current, Primary cancer: Breast (condition " in card["detail"] and "254837009" in card["detail"]
    assert any(s["isRecommended"] and s["label"].startswith("MRI") for s in card["suggestions"])


def test_the_matched_record_in_french(tmp_path):
    client = create_app({"TESTING": True, "CDS_STORE_PATH": str(tmp_path / "cds.sqlite3"),
                         "CDS_ALLOW_UNAUTHENTICATED": True, "CDS_CARD_LANGUAGE": "fr"}).test_client()
    [card] = client.post(SERVICE, json=captured("matched-patient")).get_json()["cards"]
    assert card["indicator"] == "critical"
    assert card["summary"].startswith("Compression médullaire métastatique suspectée")
    assert "Antécédent de cancer\u00a0: En cours, Cancer primitif\u00a0: Sein (problème " in card["detail"]
    assert "254837009" in card["detail"]
    assert client.post(SERVICE, json=captured("default-random-patient")).status_code == 412

"""The decision record on the HTTP side: every JSON API evaluation recorded before it is answered.

The app is the real one (``create_app``), and a real server (``triage serve``: gunicorn, several
workers) is driven for the end-to-end checks; the stores are a real SQLite file and a real PostgreSQL
server (``tests/test_record_pgserver.py``). No mock.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from serverctl import ROOT, server_log, start_server, stop_server

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_record_pgserver import PgServer, pg_dsn, pg_server  # noqa: E402,F401 - fixtures

import triage  # noqa: E402
from mscc_triage_api import create_app  # noqa: E402
from mscc_triage_api.record_hook import store_of  # noqa: E402
from triage._random_cases import random_valid_cases  # noqa: E402
from triage._record import PostgresStore, SqliteStore  # noqa: E402

CASE = {"case_id": "MRN-99", "patient": {"cancer": {"history": "current"}}, "presentation": {"weakness": {"present": True}}}


def app_with(tmp_path, **config):
    return create_app({"TESTING": True, "CDS_STORE_PATH": str(tmp_path / "cds.sqlite3"), **config})


def test_every_json_evaluation_is_recorded_and_its_id_returned(tmp_path):
    app = app_with(tmp_path, RECORD_PATH=str(tmp_path / "records.sqlite3"))
    client = app.test_client()
    response = client.post("/v1/triage", json=CASE)
    assert response.status_code == 200
    request_id = response.headers["X-Request-Id"]
    record = store_of(app).get(request_id)
    assert record.body["channel"] == "api" and record.seq == 1
    served = response.get_json()
    assert served["case_id"] == "MRN-99"                       # the answer echoes it; the record never keeps it
    served.pop("case_id")
    assert record.body["result"] == served and "MRN-99" not in json.dumps(record.body)
    second = client.post("/v1/triage", json=CASE)
    assert second.headers["X-Request-Id"] != request_id and store_of(app).verify().count == 2


def test_no_record_and_no_request_id_without_a_decision(tmp_path):
    app = app_with(tmp_path, RECORD_PATH=str(tmp_path / "records.sqlite3"))
    client = app.test_client()
    assert client.post("/v1/triage", json={"patient": {"age_years": "70"}}).status_code == 422
    assert client.post("/v1/triage", data="{", content_type="application/json").status_code == 400
    assert client.get("/v1/ruleset").status_code == 200
    for response in (client.get("/healthz"), client.post("/v1/triage", json={"nope": 1})):
        assert "X-Request-Id" not in response.headers
    assert store_of(app).count() == 0


def test_an_unwritable_sqlite_store_is_a_503_with_no_result_and_service_resumes_without_restart(tmp_path):
    blocker = tmp_path / "data"
    blocker.write_text("a file where the record's folder should be")
    app = app_with(tmp_path, RECORD_PATH=str(blocker / "records.sqlite3"))
    client = app.test_client()
    response = client.post("/v1/triage", json=CASE)
    assert response.status_code == 503 and response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["type"] == "urn:mscc-triage:problem:record-unavailable" and "cannot be written" in body["detail"]
    assert "urgency" not in response.get_data(as_text=True) and response.headers["Retry-After"]
    assert "X-Request-Id" not in response.headers
    blocker.unlink()                                               # the store recovers
    response = client.post("/v1/triage", json=CASE)
    assert response.status_code == 200 and store_of(app).get(response.headers["X-Request-Id"]).seq == 1
    assert store_of(app).verify().ok


def test_postgresql_down_is_a_503_and_no_record_then_service_resumes(tmp_path):
    server = PgServer()
    try:
        dsn = server.database()
        app = app_with(tmp_path, RECORD_DSN=dsn)
        assert isinstance(store_of(app), PostgresStore)
        client = app.test_client()
        assert client.post("/v1/triage", json=CASE).status_code == 200
        server.stop()
        down = client.post("/v1/triage", json=CASE)
        assert down.status_code == 503 and down.get_json()["type"] == "urn:mscc-triage:problem:record-unavailable"
        assert "urgency" not in down.get_data(as_text=True)
        # the reason in words, never the server's address (operator audit: host and port in the 503 body)
        assert "PostgreSQL record is unreachable" in down.get_json()["detail"]
        assert str(server.port) not in down.get_data(as_text=True) and "127.0.0.1" not in down.get_data(as_text=True)
        server.start()
        again = client.post("/v1/triage", json=CASE)
        assert again.status_code == 200
        store = store_of(app)
        assert store.count() == 2 and store.verify().ok and store.get(again.headers["X-Request-Id"]).seq == 2
        store.close()
    finally:
        server.close()


def test_testing_apps_without_a_path_keep_their_records_apart(tmp_path, monkeypatch):
    monkeypatch.delenv("MSCC_RECORD_PATH", raising=False)
    monkeypatch.delenv("MSCC_RECORD_DSN", raising=False)
    one, two = app_with(tmp_path), app_with(tmp_path)
    assert isinstance(store_of(one), SqliteStore) and store_of(one).path != store_of(two).path


def test_openapi_documents_the_request_id_and_the_503(client):
    document = client.get("/openapi.json").get_json()
    post = document["paths"]["/v1/triage"]["post"]["responses"]
    assert "X-Request-Id" in post["200"]["headers"] and "decision record" in post["503"]["description"]


# ------------------------------------------------------------------------------ the real server, then the CLI

def _triage_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    exe = ROOT / ".venv" / "bin" / "triage"
    return subprocess.run([str(exe) if exe.exists() else "triage", *args], capture_output=True, text=True,
                          env=dict(os.environ, **env), timeout=600)


def _post(url: str, case: dict) -> tuple[int, str, dict]:
    request = urllib.request.Request(url + "/v1/triage", data=json.dumps(case).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers.get("X-Request-Id", ""), json.loads(response.read())
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.headers.get("X-Request-Id", ""), json.loads(err.read())


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_the_real_server_records_concurrent_requests_and_the_audit_commands_work_on_them(kind, tmp_path, request):
    if kind == "sqlite":
        env = {"MSCC_RECORD_PATH": str(tmp_path / "records.sqlite3"), "MSCC_RECORD_DSN": ""}
    else:
        env = {"MSCC_RECORD_DSN": request.getfixturevalue("pg_dsn"), "MSCC_RECORD_PATH": ""}
    env["MSCC_CDS_STORE_PATH"] = str(tmp_path / "cds.sqlite3")
    proc, url = start_server("--workers", "2", "--threads", "4", "--allow-unauthenticated-cds", env=env)
    try:
        assert proc.poll() is None, server_log(proc)
        cases = [CASE, *random_valid_cases(5, 39)]
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda c: _post(url, c), cases))
        card_id, cds_id = _cds_call_and_feedback(url)
        form_id = _form_post(url)
    finally:
        stop_server(proc)
    assert [status for status, _, _ in answers] == [200] * 40
    ids = [rid for _, rid, _ in answers]
    assert len(set(ids)) == 40 and all(ids)

    verify = _triage_cli("audit", "verify", env=env)
    assert verify.returncode == 0 and "ok: 42 records, head 42" in verify.stdout, verify.stderr
    by_card = json.loads(_triage_cli("audit", "show", card_id, env=env).stdout)   # feedback's card -> decision
    assert by_card["channel"] == "cds" and by_card["id"] == cds_id
    assert json.loads(_triage_cli("audit", "show", form_id, env=env).stdout)["channel"] == "form"
    ids += [cds_id, form_id]
    shown = json.loads(_triage_cli("audit", "show", ids[0], env=env).stdout)
    served = dict(answers[0][2])
    served.pop("case_id")
    assert shown["result"] == served and shown["channel"] == "api"
    exported = _triage_cli("audit", "export", "--since", "2000-01-01", env=env).stdout.splitlines()
    assert sorted(json.loads(line)["id"] for line in exported) == sorted(ids)
    replay = _triage_cli("audit", "replay", env=env)
    assert replay.returncode == 0 and "replayed 42 records: 0 differences" in replay.stdout, replay.stderr
    impact = _triage_cli("impact", str(triage.default_ruleset().path), "--format", "json", env=env)
    assert impact.returncode == 0, impact.stderr
    assert json.loads(impact.stdout)["summary"] == {"records": 42, "changed": 0, "urgency_down": 0, "urgency_up": 0,
                                                     "actions_changed": 0, "flags_changed": 0, "unchanged": 42,
                                                     "errors": 0}


def _cds_call_and_feedback(url: str) -> tuple[str, str]:
    """A CDS Hooks call and the feedback on its card, against the real server: (card uuid, record id)."""
    body = {"hook": "patient-view", "hookInstance": "0f3c8a8e-2f4b-4a57-9a51-3b2f7f1f9e10",
            "context": {"userId": "Practitioner/1", "patientId": "p1"},
            "prefetch": {"patient": {"resourceType": "Patient", "id": "p1", "birthDate": "1950-02-01"},
                         "conditions": {"resourceType": "Bundle", "type": "searchset", "entry": []},
                         "observations": {"resourceType": "Bundle", "type": "searchset", "entry": []}}}
    request = urllib.request.Request(url + "/cds-services/mscc-triage", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        record_id = response.headers["X-Request-Id"]
        card = json.loads(response.read())["cards"][0]
    feedback = {"feedback": [{"card": card["uuid"], "outcome": "overridden",
                              "overrideReason": {"reason": {"code": "not-indicated"}}}]}
    request = urllib.request.Request(url + "/cds-services/mscc-triage/feedback", data=json.dumps(feedback).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
    return card["uuid"], record_id


def _form_post(url: str) -> str:
    data = urllib.parse.urlencode({"patient.cancer.history": "current", "patient.cancer.primary": "breast",
                                   "presentation.weakness.present": "true"}).encode()
    with urllib.request.urlopen(urllib.request.Request(url + "/", data=data), timeout=30) as response:
        assert response.status == 200
        return response.headers["X-Request-Id"]


def test_cds_calls_and_the_form_are_recorded_and_feedback_joins_its_card(tmp_path):
    app = app_with(tmp_path, RECORD_PATH=str(tmp_path / "records.sqlite3"), CDS_ALLOW_UNAUTHENTICATED=True)
    client = app.test_client()
    body = {"hook": "patient-view", "hookInstance": "2b7f0b47-9d4b-4c1a-a0ef-6d0c6f1f0a01",
            "context": {"userId": "Practitioner/1", "patientId": "p1"},
            "prefetch": {"patient": {"resourceType": "Patient", "id": "p1", "birthDate": "1950-02-01"},
                         "conditions": {"resourceType": "Bundle", "type": "searchset", "entry": []},
                         "observations": {"resourceType": "Bundle", "type": "searchset", "entry": []}}}
    response = client.post("/cds-services/mscc-triage", json=body)
    assert response.status_code == 200
    card = response.get_json()["cards"][0]
    record = store_of(app).get(response.headers["X-Request-Id"])
    assert record.body["channel"] == "cds"
    assert store_of(app).get(card["uuid"]).id == record.id           # feedback's card uuid finds its decision
    assert client.post("/cds-services/mscc-triage/feedback",
                       json={"feedback": [{"card": card["uuid"], "outcome": "accepted"}]}).status_code == 200
    form = client.post("/", data={"patient.cancer.history": "current", "presentation.weakness.present": "true"})
    assert form.status_code == 200
    assert store_of(app).get(form.headers["X-Request-Id"]).body["channel"] == "form"
    assert store_of(app).verify().ok and store_of(app).count() == 2


def test_when_the_record_cannot_be_written_cds_and_the_form_show_no_decision(tmp_path):
    blocker = tmp_path / "data"
    blocker.write_text("a file where the record's folder should be")
    app = app_with(tmp_path, RECORD_PATH=str(blocker / "records.sqlite3"), CDS_ALLOW_UNAUTHENTICATED=True)
    client = app.test_client()
    body = {"hook": "patient-view", "hookInstance": "x1", "context": {"patientId": "p1"},
            "prefetch": {"patient": {"resourceType": "Patient", "id": "p1"},
                         "conditions": {"resourceType": "Bundle", "type": "searchset", "entry": []},
                         "observations": None}}
    response = client.post("/cds-services/mscc-triage", json=body)
    assert response.status_code == 503 and "cards" not in response.get_data(as_text=True)
    form = client.post("/fr/", data={"patient.cancer.history": "current", "presentation.weakness.present": "true"})
    page = form.get_data(as_text=True)
    assert form.status_code == 503 and 'id="record-error"' in page
    assert 'id="urgency-banner"' not in page                        # no decision shown
    assert 'value="current" selected' in page                         # the answers are kept

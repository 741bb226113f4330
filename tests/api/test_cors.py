"""Issue 20: CORS on the CDS Hooks paths, for the origins named in MSCC_CORS_ORIGINS only."""

from __future__ import annotations

import pytest

from mscc_triage_api import ApiConfigError, create_app

EHR = "https://ehr.example.org"


@pytest.fixture
def client(tmp_path):
    app = create_app({"TESTING": True, "CORS_ORIGINS": EHR, "RECORD_PATH": str(tmp_path / "r.sqlite3"),
                      "CDS_STORE_PATH": str(tmp_path / "cds.sqlite3")})
    return app.test_client()


def test_a_preflight_from_an_allowed_origin_is_granted(client):
    answer = client.options("/cds-services/mscc-triage", headers={
        "Origin": EHR, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert answer.status_code == 200
    assert answer.headers["Access-Control-Allow-Origin"] == EHR
    assert "POST" in answer.headers["Access-Control-Allow-Methods"]
    assert {"authorization", "content-type"} <= {h.strip().lower() for h in
                                                 answer.headers["Access-Control-Allow-Headers"].split(",")}


def test_discovery_from_an_allowed_origin_carries_the_grant(client):
    answer = client.get("/cds-services", headers={"Origin": EHR})
    assert answer.status_code == 200 and answer.headers["Access-Control-Allow-Origin"] == EHR
    assert "Origin" in answer.headers.get("Vary", "")


def test_another_origin_and_other_paths_get_no_grant(client):
    assert "Access-Control-Allow-Origin" not in client.get("/cds-services", headers={"Origin": "https://evil.example"}).headers
    assert "Access-Control-Allow-Origin" not in client.get("/healthz", headers={"Origin": EHR}).headers


def test_unset_grants_no_origin(tmp_path, monkeypatch):
    monkeypatch.delenv("MSCC_CORS_ORIGINS", raising=False)
    app = create_app({"TESTING": True, "RECORD_PATH": str(tmp_path / "r.sqlite3"),
                      "CDS_STORE_PATH": str(tmp_path / "cds.sqlite3")})
    assert "Access-Control-Allow-Origin" not in app.test_client().get(
        "/cds-services", headers={"Origin": EHR}).headers


def test_a_malformed_origin_stops_the_start_naming_the_setting(tmp_path):
    with pytest.raises(ApiConfigError, match="MSCC_CORS_ORIGINS: ehr.example.org is not an origin"):
        create_app({"TESTING": True, "CORS_ORIGINS": "ehr.example.org", "RECORD_PATH": str(tmp_path / "r.sqlite3")})

"""Fixtures of the HTTP tests: the Flask app and client, and a real gunicorn server."""

from __future__ import annotations

import pytest
from serverctl import server_log, start_server, stop_server

from mscc_triage_api import create_app


@pytest.fixture
def app(tmp_path):
    # CDS Hooks without a JWT: the explicit development mode (JWT checks have their own tests)
    return create_app({"TESTING": True, "CDS_STORE_PATH": str(tmp_path / "cds.sqlite3"),
                       "CDS_ALLOW_UNAUTHENTICATED": True})


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="module")
def server():
    proc, url = start_server("--workers", "3", "--threads", "4")
    assert proc.poll() is None, server_log(proc)
    yield url
    stop_server(proc)

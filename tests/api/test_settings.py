"""Production settings from the environment: trusted CDS issuers, the development flag, the body limit."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mscc_triage_api import ApiConfigError, create_app

SERVICE = "/cds-services/mscc-triage"
JWK = {"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
       "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0", "kid": "k1"}


def test_without_trusted_issuers_cds_hooks_is_closed_and_says_how_to_open_it(tmp_path, monkeypatch):
    monkeypatch.delenv("MSCC_CDS_ALLOW_UNAUTHENTICATED", raising=False)
    monkeypatch.delenv("MSCC_CDS_ISSUERS_FILE", raising=False)
    client = create_app({"TESTING": True, "CDS_STORE_PATH": str(tmp_path / "c.sqlite3")}).test_client()
    response = client.post(SERVICE, json={"hook": "patient-view", "hookInstance": "x", "context": {}})
    assert response.status_code == 401
    detail = response.get_json()["detail"]
    assert "MSCC_CDS_ISSUERS_FILE" in detail and "--allow-unauthenticated-cds" in detail
    assert client.get("/cds-services").status_code == 200          # discovery stays open
    assert client.post("/v1/triage", json={}).status_code == 200    # the JSON API is not CDS Hooks


def test_the_development_flag_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MSCC_CDS_ALLOW_UNAUTHENTICATED", "1")
    app = create_app({"TESTING": True, "CDS_STORE_PATH": str(tmp_path / "c.sqlite3")})
    assert app.config["CDS_ALLOW_UNAUTHENTICATED"] is True


def test_trusted_issuers_come_from_a_file(tmp_path, monkeypatch):
    issuers = tmp_path / "issuers.json"
    issuers.write_text(json.dumps({"https://ehr.example.org": {"keys": [JWK]}}))
    monkeypatch.setenv("MSCC_CDS_ISSUERS_FILE", str(issuers))
    monkeypatch.setenv("MSCC_PUBLIC_BASE_URL", "https://triage.example.org")
    app = create_app({"TESTING": True, "CDS_STORE_PATH": str(tmp_path / "c.sqlite3")})
    assert app.config["CDS_TRUSTED_ISSUERS"] == {"https://ehr.example.org": {"keys": [JWK]}}
    response = app.test_client().post(SERVICE, json={})
    assert response.status_code == 401 and "Bearer" in response.get_json()["detail"]


@pytest.mark.parametrize("content,reason", [
    ("not json", "cannot be read as JSON"),
    ("{}", "non-empty object"),
    ('{"ehr": {"keys": []}}', "must be a URL"),
    ('{"https://ehr.example.org": {"keys": [{"no": "kty"}]}}', "public JWKs"),
])
def test_a_bad_issuers_file_stops_the_start_with_the_reason(tmp_path, monkeypatch, content, reason):
    issuers = tmp_path / "issuers.json"
    issuers.write_text(content)
    monkeypatch.setenv("MSCC_CDS_ISSUERS_FILE", str(issuers))
    monkeypatch.setenv("MSCC_PUBLIC_BASE_URL", "https://triage.example.org")
    with pytest.raises(ApiConfigError, match=reason):
        create_app({"TESTING": True})


def test_the_body_limit_comes_from_the_environment():
    code = "from mscc_triage_api import create_app; print(create_app({'TESTING': True}).config['MAX_CONTENT_LENGTH'])"
    # a bare environment but for the run's private folders: the app's temporary stores go under them
    private = {k: os.environ[k] for k in ("TMPDIR", "XDG_DATA_HOME", "XDG_RUNTIME_DIR") if k in os.environ}
    out = subprocess.run([sys.executable, "-c", code], env={**private, "MSCC_MAX_BODY_BYTES": "2048", "PATH": ""},
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "2048"
    bad = subprocess.run([sys.executable, "-c", code], env={**private, "MSCC_MAX_BODY_BYTES": "lots", "PATH": ""},
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "MSCC_MAX_BODY_BYTES='lots': must be a whole number from 1024" in bad.stderr


def test_the_api_page_serves_the_format_documents(client):
    page = client.get("/docs").get_data(as_text=True)
    for name in ("case-format.md", "result-format.md", "vignette-format.md"):
        assert f'href="docs/{name}"' in page
        response = client.get(f"/docs/{name}")
        assert response.status_code == 200 and response.mimetype == "text/markdown"
        assert response.get_data(as_text=True).startswith("#")
    assert client.get("/docs/../README.md").status_code == 404
    assert client.get("/docs/secrets.md").status_code == 404


def test_an_app_given_no_store_paths_removes_its_own_folders_when_its_process_exits(tmp_path):
    """An integrator's create_app() with no CDS store path (and a testing app with no record path)
    keeps them in private temporary folders: used while the app runs, gone once its process exits;
    a forked child that exits first leaves them to the parent."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    code = (
        "import json, os\n"
        "from mscc_triage_api import create_app\n"
        "app = create_app({'TESTING': True})\n"
        "c = app.test_client()\n"
        "assert c.post('/v1/triage', json={'presentation': {'weakness': {'present': True}}}).status_code == 200\n"
        "assert c.get('/healthz').status_code == 200\n"
        "paths = [app.config['CDS_STORE_PATH'], app.config['RECORD_PATH']]\n"
        "assert all(os.path.exists(p) for p in paths), paths\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    raise SystemExit(0)\n"   # the child's exit runs the inherited hooks: they must leave the folders
        "os.waitpid(pid, 0)\n"
        "assert all(os.path.exists(p) for p in paths), 'a forked child removed its parent\\'s folders'\n"
        "print(json.dumps(paths))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MSCC_")}
    env["TMPDIR"] = str(scratch)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    paths = json.loads(done.stdout.strip().splitlines()[-1])
    assert all(p.startswith(str(scratch)) for p in paths), paths
    assert list(scratch.iterdir()) == []


def _serve(tmp_path, env: dict, *argv: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MSCC_")}
    environ.update(XDG_RUNTIME_DIR=str(tmp_path), TMPDIR=str(tmp_path), **env)
    return subprocess.run([sys.executable, "-m", "triage", "serve", "--port", "1", *argv], env=environ,
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)


@pytest.mark.parametrize("env,argv,words", [
    ({"MSCC_PUBLIC_BASE_URL": "triage.example.org"}, (), "MSCC_PUBLIC_BASE_URL='triage.example.org': must be an http(s) URL"),
    ({}, ("--public-url", "notaurl"), "MSCC_PUBLIC_BASE_URL='notaurl': must be an http(s) URL"),
    ({"MSCC_CORS_ORIGINS": "https://ehr.example.org, ehr.example.org"}, (),
     "ehr.example.org is not an origin (scheme://host[:port], or *)"),
    ({"MSCC_CDS_ISSUERS_FILE": "issuers.json"}, (), "MSCC_CDS_ISSUERS_FILE needs MSCC_PUBLIC_BASE_URL"),
    ({"MSCC_MAX_BODY_BYTES": "1k"}, (), "MSCC_MAX_BODY_BYTES='1k': must be a whole number"),
    ({"MSCC_LOG_LEVEL": "verbose"}, (), "MSCC_LOG_LEVEL='verbose': must be one of debug, info, warning"),
])
def test_a_setting_that_cannot_work_stops_serve_before_it_starts_with_exit_2(tmp_path, env, argv, words):
    done = _serve(tmp_path, env, *argv)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and words in done.stderr, done.stderr
    assert "worker processes" not in done.stderr and "Traceback" not in done.stderr   # nothing started


def test_a_setting_found_wrong_by_the_app_stops_the_start_with_exit_2_too(tmp_path):
    (tmp_path / "issuers.json").write_text("{}")
    done = _serve(tmp_path, {"MSCC_CDS_ISSUERS_FILE": str(tmp_path / "issuers.json"),
                             "MSCC_PUBLIC_BASE_URL": "https://triage.example.org/"}, "--workers", "1")
    assert done.returncode == 2, done.stderr
    assert "cannot start: MSCC_CDS_ISSUERS_FILE" in done.stderr and "non-empty object" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_cds_store_is_a_file_only_its_owner_can_read(tmp_path, monkeypatch):
    import stat

    monkeypatch.delenv("MSCC_CDS_STORE_PATH", raising=False)
    path = tmp_path / "cds.sqlite3"
    client = create_app({"TESTING": True, "CDS_STORE_PATH": str(path)}).test_client()
    assert client.get("/healthz").get_json()["checks"]["cds_store"]["status"] == "ok"
    assert path.exists() and stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_gunicorn_logs_no_request_path_and_says_sighup_keeps_the_ruleset(monkeypatch):
    """Operator audit: at debug level gunicorn logged 'GET /patients/PATIENT-666666/Jane-Doe'; and
    SIGHUP restarted the workers on the old ruleset without a word."""
    monkeypatch.delenv("MSCC_LOG_LEVEL", raising=False)
    from mscc_triage_api.server import gunicorn_conf

    lines: list[str] = []

    class Log:
        def debug(self, message: str, *args: object) -> None:
            lines.append(message % args)

        warning = debug

    worker = type("Worker", (), {"log": Log()})()
    request = type("Request", (), {"method": "GET", "path": "/patients/PATIENT-666666/Jane-Doe", "uri": "/x"})()
    gunicorn_conf.pre_request(worker, request)
    gunicorn_conf.on_reload(worker)
    assert lines[0] == "GET request" and not any("PATIENT" in line or "Jane" in line for line in lines)
    assert "restart the service to load changed rules" in lines[1]

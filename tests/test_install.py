"""Installed, not only cloned: a built wheel in a fresh virtual environment, used from another folder."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CASE = {"patient": {"cancer": {"history": "current", "primary": "prostate"}},
        "presentation": {"weakness": {"present": True, "limbs": "legs", "bilateral": True, "progressive": True}}}


def run(args: list[str], cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MSCC_", "PYTHON"))}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, **kwargs)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """(the fresh venv's bin folder, a working folder outside the checkout) with the built wheel installed."""
    base = tmp_path_factory.mktemp("install")
    wheels = base / "wheels"
    built = run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)], cwd=base)
    assert built.returncode == 0, built.stderr
    env_dir = base / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    bin_dir = env_dir / "bin"
    wheel = next(wheels.glob("mscc_triage-*.whl"))
    done = run([str(bin_dir / "python"), "-m", "pip", "install", "-q", str(wheel)], cwd=base)
    assert done.returncode == 0, done.stderr
    work = base / "elsewhere"
    work.mkdir()
    return bin_dir, work


def test_the_wheel_carries_the_rules_form_texts_and_labels(installed):
    wheel = next((Path(installed[1]).parent / "wheels").glob("mscc_triage-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for name in [p.name for p in (ROOT / "rules").iterdir() if p.is_file()]:
        assert f"triage/rules/{name}" in names
    assert "mscc_triage_api/templates/triage_form.html" in names and "mscc_triage_api/fhir_codemap.yaml" in names
    assert not any(n.startswith("api/") for n in names)   # no top-level package named 'api'
    assert any(n.endswith("licenses/LICENSE") for n in names)


def test_evaluate_and_rules_check_from_another_folder(installed):
    bin_dir, work = installed
    (work / "case.json").write_text(json.dumps(CASE))
    out = run([str(bin_dir / "triage"), "evaluate", "case.json"], cwd=work)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["urgency"] == "emergency" and result["ruleset"]["version"] == "2.2.0"
    import triage  # the installed copy hashes the same rule bytes as the checkout
    assert result["ruleset"]["sha256"] == triage.load_ruleset(ROOT / "rules").sha256
    check = run([str(bin_dir / "triage"), "rules", "check"], cwd=work)
    assert check.returncode == 0 and check.stdout.rstrip().endswith("ok"), check.stderr
    assert "site-packages/triage/rules" in check.stdout


def test_the_readme_python_example_runs_installed(installed):
    bin_dir, work = installed
    readme = (ROOT / "README.md").read_text()
    example = readme.split("```python\n", 1)[1].split("```", 1)[0]
    out = run([str(bin_dir / "python"), "-c", example], cwd=work)
    assert out.returncode == 0, out.stderr
    assert "emergency" in out.stdout and "dexamethasone_16mg" in out.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_answers_the_api_and_cds_hooks_installed(installed, tmp_path):
    bin_dir, work = installed
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MSCC_", "PYTHON"))}
    env["XDG_RUNTIME_DIR"] = str(tmp_path)
    env["MSCC_RECORD_PATH"] = str(tmp_path / "records.sqlite3")
    log = open(tmp_path / "serve.log", "w+")
    proc = subprocess.Popen([str(bin_dir / "triage"), "serve", "--port", str(port), "--workers", "1",
                             "--allow-unauthenticated-cds"], cwd=work, env=env,
                            stdout=subprocess.DEVNULL, stderr=log, text=True, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 30
        while True:
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=1):
                    break
            except OSError:
                assert proc.poll() is None and time.time() < deadline, (tmp_path / "serve.log").read_text()
                time.sleep(0.2)
        request = urllib.request.Request(url + "/v1/triage", data=json.dumps(CASE).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.load(response)["urgency"] == "emergency"
        body = {"hook": "patient-view", "hookInstance": "d1eec3d6-1a3a-4c3e-a6b0-0b1a8b1d2f11",
                "context": {"userId": "Practitioner/1", "patientId": "1"},
                "prefetch": {"patient": {"resourceType": "Patient", "id": "1", "birthDate": "1950-01-01"},
                             "conditions": {"resourceType": "Bundle", "type": "searchset", "entry": []},
                             "observations": {"resourceType": "Bundle", "type": "searchset", "entry": []}}}
        request = urllib.request.Request(url + "/cds-services/mscc-triage", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.load(response)["cards"][0]["indicator"] in ("info", "warning", "critical")
        with urllib.request.urlopen(url + "/", timeout=10) as response:
            assert b"<form" in response.read()
        with urllib.request.urlopen(url + "/docs/case-format.md", timeout=10) as response:
            assert b"presentation.weakness.present" in response.read()
        assert "development mode" in (tmp_path / "serve.log").read_text()
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=20)
        log.close()

"""Issue 20: the README's CDS Hooks quick start works as written against a real server: its Python
block makes the issuers file and a token; the server trusts them; discovery and one call answer."""

from __future__ import annotations

import io
import json
import re
import urllib.request
from contextlib import redirect_stdout
from pathlib import Path

from serverctl import server_log, start_server, stop_server  # tests/api is on sys.path

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_quick_start_gets_a_card(tmp_path, monkeypatch):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if b.startswith("# quick-start"))
    monkeypatch.chdir(tmp_path)
    printed = io.StringIO()
    with redirect_stdout(printed):
        exec(compile(block, "README.md", "exec"), {})
    token = printed.getvalue().strip()
    # the audience is the public URL (here the README's), whatever port the test server listens on
    proc, url = start_server("--public-url", "http://127.0.0.1:8000/", "--workers", "1",
                             env={"MSCC_CDS_ISSUERS_FILE": str(tmp_path / "issuers.json")})
    try:
        assert proc.poll() is None, server_log(proc)
        with urllib.request.urlopen(url + "/cds-services", timeout=10) as answer:
            assert json.loads(answer.read())["services"][0]["id"] == "mscc-triage"
        request = urllib.request.Request(
            url + "/cds-services/mscc-triage", data=(ROOT / "examples" / "cds-request.json").read_bytes(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=30) as answer:
            card = json.loads(answer.read())["cards"][0]
        assert card["indicator"] == "critical" and card["summary"]
    finally:
        stop_server(proc)


def test_a_misconfiguration_stops_the_start_in_one_line(tmp_path):
    """Issue 20: trusted issuers without a public URL used to print a 40-line traceback first."""
    import time

    issuers = tmp_path / "issuers.json"
    issuers.write_text(json.dumps({"https://ehr.example.org": {"keys": [
        {"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
         "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}}))
    proc, _ = start_server("--workers", "1", env={"MSCC_CDS_ISSUERS_FILE": str(issuers), "MSCC_PUBLIC_BASE_URL": ""})
    try:
        deadline = time.time() + 20
        while proc.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        log = server_log(proc)
        assert proc.returncode == 2, log   # a setting that cannot work, found before gunicorn starts
        assert "error: MSCC_CDS_ISSUERS_FILE needs MSCC_PUBLIC_BASE_URL (or --public-url)" in log, log
        assert "Traceback" not in log and "worker processes" not in log, log
    finally:
        stop_server(proc)

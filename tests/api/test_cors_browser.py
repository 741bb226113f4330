"""Issue 20: a Chromium page on another origin calls discovery and the CDS Hooks service of a real
server (preflight included), granted by MSCC_CORS_ORIGINS; a page on an origin not named is refused by
the browser."""

from __future__ import annotations

import http.server
import json
import shutil
import tempfile
import threading
from pathlib import Path

import pytest

from serverctl import server_log, start_server, stop_server  # tests/api is on sys.path

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"

PAGE = """<!doctype html><meta charset="utf-8"><title>EHR</title><pre id="out">waiting</pre>
<script>
const service = new URLSearchParams(location.search).get("service");
async function go() {
  const out = {};
  try {
    const d = await fetch(service + "/cds-services");
    out.discovery = (await d.json()).services[0].id;
    const body = await (await fetch("/request.json")).text();
    const c = await fetch(service + "/cds-services/mscc-triage",
                          {method: "POST", headers: {"Content-Type": "application/json"}, body});
    out.indicator = (await c.json()).cards[0].indicator;
  } catch (e) { out.error = String(e); }
  document.getElementById("out").textContent = JSON.stringify(out);
}
go();
</script>"""


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def _page_server(folder: Path) -> tuple[http.server.ThreadingHTTPServer, int]:
    handler = lambda *a, **k: _Quiet(*a, directory=str(folder), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def _driver():
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("browser tests need Debian's chromium and chromium-driver: run ./dev test, which installs them")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="mscc-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--no-first-run", f"--user-data-dir={profile}"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options), profile


def _result(driver, url: str) -> dict:
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    WebDriverWait(driver, 30).until(lambda d: d.find_element("id", "out").text != "waiting")
    return json.loads(driver.find_element("id", "out").text)


def test_a_page_on_an_allowed_origin_calls_the_service_and_another_is_refused(tmp_path):
    (tmp_path / "index.html").write_text(PAGE, encoding="utf-8")
    shutil.copy(ROOT / "examples" / "cds-request.json", tmp_path / "request.json")
    page, page_port = _page_server(tmp_path)
    other, other_port = _page_server(tmp_path)
    proc, url = start_server("--workers", "1", "--allow-unauthenticated-cds",
                             env={"MSCC_CORS_ORIGINS": f"http://127.0.0.1:{page_port}"})
    driver, profile = _driver()
    try:
        assert proc.poll() is None, server_log(proc)
        allowed = _result(driver, f"http://127.0.0.1:{page_port}/index.html?service={url}")
        assert allowed == {"discovery": "mscc-triage", "indicator": "critical"}, allowed
        refused = _result(driver, f"http://127.0.0.1:{other_port}/index.html?service={url}")
        assert "error" in refused and "discovery" not in refused, refused
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
        for server in (page, other):
            server.shutdown()
            server.server_close()
        stop_server(proc)

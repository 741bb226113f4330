#!/usr/bin/env python3
"""Capture what HealthChain's CDS Hooks sandbox really sends, as request-body fixtures for the tests.

Run it with a Python that has HealthChain installed, in its own virtual environment (it pins
pydantic, fastapi and fhir.resources versions of its own; never install it into the project's venv)::

    python3 -m venv /tmp/hc
    /tmp/hc/bin/pip install "healthchain[sandbox]==0.16.1"    # load_synthetic needs the extra (faker)
    /tmp/hc/bin/python scripts/capture_healthchain.py          # writes tests/api/fixtures/healthchain/

It starts a capturing HTTP server on 127.0.0.1 (a free port; it answers ``{"cards": []}``), points
HealthChain's ``SandboxClient`` (workflow ``patient-view``, REST) at it and sends, with the client's
own ``send_requests`` (httpx), the request bodies an integrator would send:

- ``default-random-patient.json``: ``load_from_path`` on a hand-written FHIR R4 prefetch (a woman with
  breast cancer, bone metastases and new leg weakness; HealthChain's keys ``patient``,
  ``condition``, ``observation``): the sandbox's default request, whose ``context.patientId`` is a
  random id HealthChain invents (not the Patient's id);
- ``matched-patient.json``: the same file, with ``context.patientId`` set to the Patient's id (what
  an integrator does to fix it);
- ``synthetic.json``: ``load_synthetic`` (HealthChain's own generated prefetch), as it comes.

Each fixture is the body exactly as received on the wire (parsed JSON), with the client's name and
version and the header names it sent beside it under ``_captured`` (the replay test drops that key).
``tests/api/test_healthchain_replay.py`` replays them against a real server.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "tests" / "api" / "fhir" / "requests" / "healthchain-random-patient.json"   # its prefetch
OUT = ROOT / "tests" / "api" / "fixtures" / "healthchain"


class Capture:
    """A loopback HTTP server that keeps every POST body and answers an empty CDS Hooks response."""

    def __init__(self) -> None:
        self.bodies: list[tuple[dict[str, Any], list[str]]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.bodies.append((json.loads(raw), sorted(k.lower() for k in self.headers.keys())))
                body = b'{"cards": []}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/cds-services/mscc-triage"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def capture(out: Path) -> list[Path]:
    try:
        from importlib.metadata import version

        from healthchain.sandbox import SandboxClient
    except ImportError:
        sys.exit("capture_healthchain: HealthChain is not installed in this Python; run it with the Python "
                 "of a virtual environment that has healthchain==0.16.1 (see the docstring)")
    prefetch = json.loads(SOURCE.read_text(encoding="utf-8"))["prefetch"]
    patient_id = prefetch["patient"]["id"]
    server = Capture()
    written = []
    try:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "prefetch.json"
            path.write_text(json.dumps(prefetch), encoding="utf-8")
            runs: dict[str, Any] = {}

            default = SandboxClient(url=server.url, workflow="patient-view")
            default.load_from_path(path)                       # context.patientId: invented by HealthChain
            runs["default-random-patient"] = default

            matched = SandboxClient(url=server.url, workflow="patient-view")
            matched.load_from_path(path)
            for request in matched.requests:
                request.context.patientId = patient_id          # the integrator's fix
            runs["matched-patient"] = matched

            synthetic = SandboxClient(url=server.url, workflow="patient-view")
            synthetic.load_synthetic(n=1, random_seed=20)
            runs["synthetic"] = synthetic

            out.mkdir(parents=True, exist_ok=True)
            for name, client in runs.items():
                before = len(server.bodies)
                client.send_requests()
                for body, headers in server.bodies[before:]:
                    body["_captured"] = {"client": f"healthchain {version('healthchain')}",
                                         "how": name, "headers": headers}
                    target = out / f"{name}.json"
                    target.write_text(json.dumps(body, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
                    written.append(target)
    finally:
        server.close()
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"folder of the fixtures (default {OUT})")
    args = parser.parse_args()
    for path in capture(args.out):
        body = json.loads(path.read_text(encoding="utf-8"))
        print(f"{path}: context.patientId={body['context'].get('patientId')!r}, "
              f"prefetch keys={sorted(body.get('prefetch') or {})}")


if __name__ == "__main__":
    main()

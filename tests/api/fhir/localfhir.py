"""A small, real FHIR R4-like HTTP server for the tests: 127.0.0.1, a free port, a thread.

It serves the JSON files of this folder (or whatever ``resources`` holds) with FHIR's REST shapes:
``GET <base>/Patient/<id>`` and ``GET <base>/<Type>?patient=<id>[&status=active]`` (a searchset
Bundle). The first path segment picks a behaviour, so that one server offers every failure kind
as its own base URL:

- ``/fhir``      a good server (Bearer ``TOKEN`` required: anything else is 401)
- ``/open``      a good server that needs no token
- ``/forbidden`` 403 to everything;  ``/gone`` 404;  ``/broken`` 500
- ``/slow``      answers after ``SLOW_S`` seconds;  ``/drip`` sends a valid body one byte at a time
- ``/html``      200 with an HTML page;  ``/notjson`` 200 application/fhir+json that is not JSON
- ``/redirect``  302 to the same path under ``/fhir``;  ``/huge`` 200 with a 3 MB Bundle
- ``/paged``     searches answer one entry per page with ``next`` links
- ``/offsite``   searches answer with a ``next`` link to another host
- ``/nomeds``    a good server (no token needed) that answers 403 to medication searches

Every request is recorded (``requests``: mode, path and query, the Authorization header).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
TOKEN = "s3cret-access-token-0123456789"
SLOW_S = 1.0


def load(*names: str) -> list[dict[str, Any]]:
    """Resources from this folder's JSON files (all of them when no name is given)."""
    paths = [HERE / f"{n}.json" for n in names] if names else sorted(HERE.glob("*.json"))
    return [json.loads(p.read_text(encoding="utf-8")) for p in paths]


def _subject_of(resource: dict[str, Any]) -> str:
    ref = (resource.get("subject") or resource.get("patient") or {}).get("reference", "")
    return ref.rsplit("/", 1)[-1]


class QuietServer(ThreadingHTTPServer):
    """A test server that takes a client's reset or early close as the normal end of a connection
    (the fetch under test gives up on slow or huge answers on purpose), not as an error to print."""

    def handle_error(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        import sys

        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
            return
        super().handle_error(request, client_address)


class LocalFhir:
    def __init__(self, resources: list[dict[str, Any]]):
        self.resources = resources
        self.requests: list[tuple[str, str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:   # noqa: N802
                outer.handle(self)

        self.httpd = QuietServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.root = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def base(self, mode: str = "fhir") -> str:
        return f"{self.root}/{mode}"

    def __enter__(self) -> "LocalFhir":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    # -------------------------------------------------------------------------------- answers

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        parts = urllib.parse.urlsplit(h.path)
        segments = [s for s in parts.path.split("/") if s]
        mode = segments[0] if segments else ""
        auth = h.headers.get("Authorization", "")
        self.requests.append((mode, h.path, auth))
        query = urllib.parse.parse_qs(parts.query)
        if mode == "forbidden":
            return self.send(h, 403, {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "forbidden"}]})
        if mode == "gone":
            return self.send(h, 404, {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-found"}]})
        if mode == "broken":
            return self.send(h, 500, {"resourceType": "OperationOutcome", "issue": [{"severity": "fatal", "code": "exception"}]})
        if mode == "nomeds" and segments[1:2] in (["MedicationRequest"], ["MedicationStatement"]):
            return self.send(h, 403, {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "forbidden"}]})
        if mode == "fhir" and auth != f"Bearer {TOKEN}":
            return self.send(h, 401, {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "login"}]})
        if mode == "html":
            return self.send(h, 200, b"<html><body>Please log in</body></html>", "text/html")
        if mode == "notjson":
            return self.send(h, 200, b"{not json", "application/fhir+json")
        if mode == "redirect":
            h.send_response(302)
            h.send_header("Location", f"{self.root}/fhir/{'/'.join(segments[1:])}?{parts.query}")
            h.send_header("Content-Length", "0")
            h.end_headers()
            return None
        if mode == "huge":
            entry = [{"resource": {"resourceType": "Observation", "id": f"o{i}", "status": "final",
                                   "note": [{"text": "x" * 1000}]}} for i in range(3000)]
            return self.send(h, 200, {"resourceType": "Bundle", "type": "searchset", "entry": entry})
        if mode == "slow":
            time.sleep(SLOW_S)
        body = self.answer(mode, segments[1:], query)
        if body is None:
            return self.send(h, 404, {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-found"}]})
        if mode == "drip":
            data = json.dumps(body).encode()
            h.send_response(200)
            h.send_header("Content-Type", "application/fhir+json")
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            try:
                for i in range(len(data)):
                    h.wfile.write(data[i:i + 1])
                    h.wfile.flush()
                    time.sleep(0.02)
            except OSError:
                pass
            return None
        return self.send(h, 200, body)

    def answer(self, mode: str, path: list[str], query: dict[str, list[str]]) -> Any:
        if len(path) == 2:   # a read: Type/id
            return next((r for r in self.resources if r["resourceType"] == path[0] and r.get("id") == path[1]), None)
        if len(path) != 1:
            return None
        patient = (query.get("patient") or [""])[0]
        found = [r for r in self.resources if r["resourceType"] == path[0] and _subject_of(r) == patient]
        if "status" in query:
            found = [r for r in found if r.get("status") in query["status"][0].split(",")]
        if path[0] == "MedicationRequest":   # the Medications they reference, as a server's _include would
            wanted = {r["medicationReference"]["reference"] for r in found if "medicationReference" in r}
            found += [r for r in self.resources if r["resourceType"] == "Medication" and f"Medication/{r['id']}" in wanted]
        page = int((query.get("_page") or ["0"])[0])
        bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": len(found)}
        if mode in ("paged", "offsite"):
            bundle["entry"] = [{"resource": r} for r in found[page:page + 1]]
            if page + 1 < len(found):
                host = self.root if mode == "paged" else "http://fhir.elsewhere.example"
                bundle["link"] = [{"relation": "next", "url": f"{host}/{mode}/{path[0]}?patient={patient}&_page={page + 1}"}]
        else:
            bundle["entry"] = [{"fullUrl": f"{self.root}/{mode}/{r['resourceType']}/{r['id']}", "resource": r} for r in found]
        return bundle

    @staticmethod
    def send(h: BaseHTTPRequestHandler, status: int, body: Any, ctype: str = "application/fhir+json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        try:
            h.send_response(status)
            h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)
        except OSError:
            pass

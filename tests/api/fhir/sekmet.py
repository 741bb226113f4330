"""A real FHIR R4 server for the tests and the benchmark: ``sekmet-fhir`` (pinned in the ``test`` extra).

:class:`Sekmet` starts ``sekmet serve -c settings.yaml`` in a temporary folder, on 127.0.0.1 and a free
port, with SQLite, static bearer tokens and the simulator off (it would otherwise answer orders on its
own), waits for ``/metadata``, and seeds patients through the FHIR API (``PUT <base>/<Type>/<id>``).
It stops the process it started (by its pid) on exit.

Patients seeded by :meth:`Sekmet.seed_mscc_patient`: prostate cancer with bone metastases (Conditions),
new bilateral leg weakness (Observation, SNOMED 26544005 present, both legs), corrected calcium
(LOINC 29265-6) in mmol/L or mg/dL, an active dexamethasone MedicationRequest.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Optional

HERE = Path(__file__).parent
TOKEN = "sekmet-test-token-6f1d2c9a"
START_S = 30.0


def sekmet_command() -> Optional[str]:
    """The ``sekmet`` script of this Python's environment (or on PATH); None when not installed."""
    beside = Path(sys.executable).parent / "sekmet"
    return str(beside) if beside.exists() else shutil.which("sekmet")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _load(name: str) -> dict[str, Any]:
    return json.loads((HERE / f"{name}.json").read_text(encoding="utf-8"))


class Sekmet:
    def __init__(self, tokens: tuple[str, ...] = (TOKEN,)):
        self.tokens = tokens
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}/fhir"
        self.dir = Path(tempfile.mkdtemp(prefix="sekmet-"))
        self.process: Optional[subprocess.Popen] = None

    def __enter__(self) -> "Sekmet":
        command = sekmet_command()
        if command is None:
            raise RuntimeError("sekmet-fhir is not installed (pip install -e '.[test]')")
        settings = {
            "base_url": self.base, "host": "127.0.0.1", "port": self.port,
            "data_dir": str(self.dir / "data"), "db_path": str(self.dir / "data" / "sekmet.db"),
            "own_private_key_path": str(self.dir / "keys" / "sekmet_private.pem"),
            "simulator": {"enabled": False},
            "server_auth": {"types": ["bearer"], "tokens": list(self.tokens)},
            "log_inbound": False,
        }
        (self.dir / "data").mkdir()
        (self.dir / "keys").mkdir()
        (self.dir / "settings.yaml").write_text(json.dumps(settings), encoding="utf-8")   # JSON is YAML
        env = {k: v for k, v in os.environ.items() if not k.startswith("SEKMET_")}
        self.log = open(self.dir / "serve.log", "wb")
        self.process = subprocess.Popen([command, "serve", "-c", str(self.dir / "settings.yaml")], cwd=self.dir,
                                        stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + START_S
        while True:
            if self.process.poll() is not None:
                self.__exit__()
                raise RuntimeError(f"sekmet serve stopped: {(self.dir / 'serve.log').read_text()[-2000:]}")
            try:
                if self.request("GET", "metadata")[0] == 200:
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"sekmet serve did not answer within {START_S} s")
            time.sleep(0.1)

    def __exit__(self, *exc: Any) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)   # its own session: uvicorn and nothing else
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        if getattr(self, "log", None):
            self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def request(self, method: str, path: str, body: Any = None, token: Optional[str] = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.base}/{path}", data=data, method=method, headers={
            "Authorization": f"Bearer {token or self.tokens[0]}", "Accept": "application/fhir+json",
            "Content-Type": "application/fhir+json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode("utf-8", "replace")

    def put(self, resource: dict[str, Any]) -> dict[str, Any]:
        status, answer = self.request("PUT", f"{resource['resourceType']}/{resource['id']}", resource)
        if status not in (200, 201):
            raise RuntimeError(f"sekmet refused {resource['resourceType']}/{resource['id']}: {status} {answer}")
        return answer

    def seed_mscc_patient(self, patient_id: str = "mscc-1", calcium: str = "mmol") -> list[dict[str, Any]]:
        """The issue's patient under ``patient_id``; corrected calcium 3.6 mmol/L, or 14.4 mg/dL (= 3.59 mmol/L)."""
        names = ["patient", "condition-prostate-cancer", "condition-bone-metastases", "observation-weakness",
                 "observation-calcium-mgdl" if calcium == "mgdl" else "observation-calcium-mmol",
                 "medicationrequest-dexamethasone"]
        seeded = []
        for name in names:
            resource = copy.deepcopy(_load(name))
            if resource["resourceType"] == "Patient":
                resource["id"] = patient_id
            else:
                resource["id"] = f"{resource['id']}-{patient_id}"
                resource["subject"] = {"reference": f"Patient/{patient_id}"}
            seeded.append(self.put(resource))
        return seeded

"""Benchmark of the CDS Hooks call against a real local FHIR server (sekmet-fhir, issue 16).

    .venv/bin/python benchmarks/fhir_fetch_bench.py [--calls 200] [--warmup 10]

Starts sekmet-fhir (the test extra) on 127.0.0.1 and a free port, seeds the issue's patient through its
FHIR API (tests/api/fhir/sekmet.py), then times ``POST /cds-services/mscc-triage`` through the Flask
test client (one thread, no network between EHR and service):

- fetch on miss: no prefetch; the service fetches Patient, Conditions, Observations, MedicationRequests
  and MedicationStatements from sekmet, concurrently, within its budget;
- full prefetch: the same record sent as prefetch (taken from sekmet once); nothing is fetched.

Prints p50, p99 and max in milliseconds. It is a script that prints figures, not a test: this machine
is shared and timings are noisy.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("sekmet_fixture", ROOT / "tests" / "api" / "fhir" / "sekmet.py")
sekmet = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sekmet)

SERVICE = "/cds-services/mscc-triage"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> int:
    from mscc_triage_api import create_app

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()

    with sekmet.Sekmet() as fhir, tempfile.TemporaryDirectory() as tmp:
        fhir.seed_mscc_patient("mscc-1")
        app = create_app({"TESTING": True, "CDS_STORE_PATH": str(Path(tmp) / "cds.sqlite3"),
                          "CDS_ALLOW_UNAUTHENTICATED": True, "FHIR_SERVERS": [fhir.base]})
        client = app.test_client()

        def body(prefetch=None) -> dict:
            b = {"hook": "patient-view", "hookInstance": str(uuid.uuid4()),
                 "context": {"userId": "Practitioner/1", "patientId": "mscc-1"}, "fhirServer": fhir.base,
                 "fhirAuthorization": {"access_token": sekmet.TOKEN, "token_type": "Bearer", "expires_in": 300,
                                       "scope": "patient/*.read", "subject": "mscc-triage"}}
            if prefetch is not None:
                b["prefetch"] = prefetch
            return b

        def get(query: str) -> dict:
            status, answer = fhir.request("GET", query)
            assert status == 200, answer
            return answer

        full = {"patient": get("Patient/mscc-1"), "conditions": get("Condition?patient=mscc-1"),
                "observations": get("Observation?patient=mscc-1"),
                "medicationRequests": get("MedicationRequest?patient=mscc-1&status=active"),
                "medicationStatements": get("MedicationStatement?patient=mscc-1&status=active")}
        print(f"sekmet-fhir at {fhir.base}; {args.calls} calls each after {args.warmup} warm-up calls")
        for name, prefetch in (("fetch on miss (no prefetch)", None), ("full prefetch", full)):
            took, failed = [], 0
            for i in range(args.warmup + args.calls):
                started = time.perf_counter()
                response = client.post(SERVICE, json=body(prefetch))
                elapsed = (time.perf_counter() - started) * 1000
                if response.status_code != 200 or response.get_json()["cards"][0]["indicator"] != "critical":
                    failed += 1
                if i >= args.warmup:
                    took.append(elapsed)
            print(f"{name:30s} p50 {pct(took, 0.50):7.1f} ms   p99 {pct(took, 0.99):7.1f} ms   "
                  f"max {max(took):7.1f} ms   not a critical card: {failed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

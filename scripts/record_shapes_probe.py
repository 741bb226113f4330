"""Probe (issue 19): every value of a good CDS Hooks prefetch replaced by a value of a wrong shape.

Each mutated request is posted to an app built in process; any answer that is not 200 or a 4xx
problem (a 500, say) is printed with the place and the value. Exit 1 when one is found.

    .venv/bin/python scripts/record_shapes_probe.py
"""

from __future__ import annotations

import copy
import json
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parents[1]
FHIR = ROOT / "tests" / "api" / "fhir"
ODD: list[Any] = [5, -1.5, "x", "", [], {}, None, True, [5], ["x"], {"a": 1}, 10 ** 400, "\ud800",
                  "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00", "0001-01-01", "9999-12-31",
                  [{"resourceType": "Bundle"}], {"resourceType": 5}, {"coding": {"code": 1}}]
KEYS = {"Patient": "patient", "Condition": "conditions", "Observation": "observations",
        "MedicationRequest": "medicationRequests", "MedicationStatement": "medicationStatements",
        "Procedure": "procedures", "Medication": "medicationRequests"}


def good_prefetch() -> dict[str, Any]:
    prefetch: dict[str, Any] = {}
    for path in sorted(FHIR.glob("*.json")) + sorted((FHIR / "v22").glob("*.json")):
        resource = json.loads(path.read_text(encoding="utf-8"))
        kind = resource.get("resourceType")
        if kind == "Patient":
            prefetch["patient"] = resource
            continue
        key = KEYS.get(kind)
        if key:
            bundle = prefetch.setdefault(key, {"resourceType": "Bundle", "type": "searchset", "entry": []})
            bundle["entry"].append({"resource": resource})
    return prefetch


def places(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(node, dict):
        for key, value in node.items():
            yield from places(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from places(value, (*path, index))


def replaced(root: Any, path: tuple[Any, ...], value: Any) -> Any:
    out = copy.deepcopy(root)
    node = out
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return out


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from mscc_triage_api import create_app

    folder = tempfile.mkdtemp(prefix="mscc-probe-")
    app = create_app({"TESTING": True, "CDS_STORE_PATH": f"{folder}/cds.sqlite3", "CDS_ALLOW_UNAUTHENTICATED": True})
    client = app.test_client()
    prefetch = good_prefetch()
    patient_id = prefetch["patient"]["id"]
    bad = 0
    tried = 0
    for path in places(prefetch):
        if not path:
            continue
        for value in ODD:
            tried += 1
            body = {"hook": "patient-view", "hookInstance": str(uuid.uuid4()),
                    "context": {"userId": "Practitioner/1", "patientId": patient_id},
                    "prefetch": replaced(prefetch, path, value)}
            response = client.post("/cds-services/mscc-triage", data=json.dumps(body),
                                   content_type="application/json")
            if response.status_code != 200 and not 400 <= response.status_code < 500:
                bad += 1
                print(response.status_code, "/".join(map(str, path)), repr(value)[:40])
    print(f"{tried} requests, {bad} not answered 200 or 4xx")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

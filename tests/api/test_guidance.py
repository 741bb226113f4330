"""Issue 20: a result as a FHIR R4 GuidanceResponse, valid for fhir.resources (R4B), with the draft
orders in a contained RequestGroup; checked over every vignette's case."""

from __future__ import annotations

from pathlib import Path

from fhir.resources.R4B.guidanceresponse import GuidanceResponse

from mscc_triage_api.guidance import guidance_response
from triage._vignettes import load_suite

ROOT = Path(__file__).resolve().parents[2]


def test_every_vignette_s_result_is_a_valid_guidance_response(ruleset):
    checked = 0
    for _, vignette in load_suite([str(ROOT / "tests" / "vignettes")]):
        if vignette.expect.error:
            continue
        result = ruleset.evaluate(vignette.case)
        resource = guidance_response(result, ruleset, "https://mscc.example/", patient_id="p1", request_id="r1")
        GuidanceResponse.model_validate(resource)      # raises on anything invalid in FHIR R4
        checked += 1
    assert checked > 400


def test_the_guidance_holds_the_urgency_the_ruleset_and_the_orders(ruleset):
    result = ruleset.evaluate({"patient": {"cancer": {"history": "current", "primary": "breast"}},
                               "presentation": {"weakness": {"present": True, "limbs": "legs"}}})
    resource = guidance_response(result, ruleset, "https://mscc.example/", patient_id="p1")
    assert resource["moduleUri"].endswith(f"#mscc-{result.ruleset.version}-{result.ruleset.sha256}")
    assert resource["reasonCode"][0]["coding"][0]["code"] == "emergency"
    contained = {r["id"]: r for r in resource["contained"]}
    urgency = next(p for p in contained["explanation"]["parameter"] if p["name"] == "urgency")
    assert urgency["valueCode"] == "emergency"
    orders = contained["orders"]
    assert orders["resourceType"] == "RequestGroup" and orders["intent"] == "proposal"
    drugs = [r for r in resource["contained"] if r["resourceType"] == "MedicationRequest"]
    assert any("Dexamethasone" in r["medicationCodeableConcept"]["text"] for r in drugs)
    assert all(r["status"] == "draft" for r in drugs)


def test_the_api_answers_fhir_when_asked(tmp_path):
    from mscc_triage_api import create_app

    app = create_app({"TESTING": True, "RECORD_PATH": str(tmp_path / "r.sqlite3"),
                      "CDS_STORE_PATH": str(tmp_path / "cds.sqlite3")})
    client = app.test_client()
    case = {"patient": {"cancer": {"history": "current"}}, "presentation": {"weakness": {"present": True}}}
    answer = client.post("/v1/triage", json=case, headers={"Accept": "application/fhir+json"})
    assert answer.status_code == 200 and answer.mimetype == "application/fhir+json"
    resource = GuidanceResponse.model_validate(answer.get_json())
    assert resource.requestIdentifier.value == answer.headers["X-Request-Id"]
    plain = client.post("/v1/triage", json=case)
    assert plain.mimetype == "application/json" and plain.get_json()["urgency"] == "emergency"

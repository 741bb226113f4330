"""Case-format 2.2 fields from FHIR R4 (issue 21), with the real-looking files of tests/api/fhir/v22/ (kept
in a folder of their own so that the local FHIR server of test_fhir_cds.py does not serve them):

- anticoagulant: a therapeutic anticoagulant sets it; a heparin (prophylactic dose possible) or one
  antiplatelet leaves it unknown with a note; two different antiplatelets (dual therapy) set it;
- platelets: 10*3/uL, 10*9/L, /nL, 10^9/L read as is; any other unit refused with a reason;
- recent neuraxial procedure: a sure code, completed or in-progress, within 7 days;
- corticosteroids: started more than 14 days ago is long-term, within them this episode, undated neither;
- the fields no code states safely are listed as unmapped with a reason; Procedure is prefetched and
  checked against context.patientId like the rest.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path

import pytest
import yaml

from mscc_triage_api.fhir.map import CODEMAP_PATH, CodeMap, CodeMapError, case_from_record, default_codemap
from mscc_triage_api.fhir.record import TEMPLATES, discovery_prefetch, read_prefetch

V22 = Path(__file__).with_name("fhir") / "v22"
NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.timezone.utc)
UCUM = "http://unitsofmeasure.org"
CODEMAP = yaml.safe_load(CODEMAP_PATH.read_text())


def res(name: str) -> dict:
    return json.loads((V22 / f"{name}.json").read_text())


def case_of(*resources: dict, now: dt.datetime = NOW) -> tuple[dict, list[str]]:
    record, _ = read_prefetch({"r": {"resourceType": "Bundle", "entry": [{"resource": r} for r in resources]}})
    case, mapped = case_from_record(record, default_codemap(), now)
    return case, [str(m) for m in mapped]   # the machine lines (the card words them: test_card_words.py)


def treatments(*resources: dict) -> dict:
    return case_of(*resources)[0].get("patient", {}).get("treatments", {})


# ------------------------------------------------------------------------------------ anticoagulant

def test_a_therapeutic_anticoagulant_sets_anticoagulant():
    case, mapped = case_of(res("medicationrequest-apixaban"))
    assert case["patient"]["treatments"] == {"anticoagulant": True}
    assert any(m.startswith("patient.treatments.anticoagulant = true (MedicationRequest apixaban") for m in mapped)


@pytest.mark.parametrize("system, code", [("http://www.whocc.no/atc", "B01AA03"),   # warfarin, by the VKA prefix
                                          ("http://www.nlm.nih.gov/research/umls/rxnorm", "11289"),
                                          ("http://snomed.info/sct", "372756006"),
                                          ("http://www.whocc.no/atc", "B01AE07"),   # dabigatran
                                          ("http://www.whocc.no/atc", "B01AF01")])  # rivaroxaban
def test_other_anticoagulant_codes(system, code):
    request = dict(res("medicationrequest-apixaban"), medicationCodeableConcept={"coding": [{"system": system, "code": code}]})
    assert treatments(request) == {"anticoagulant": True}


def test_a_prophylactic_heparin_leaves_anticoagulant_unknown_and_says_why():
    case, mapped = case_of(res("medicationstatement-enoxaparin-prophylaxis"))
    assert "patient" not in case   # unknown, never false
    assert any(m.startswith("patient.treatments.anticoagulant left unknown (MedicationStatement Heparin group")
               and "prophylactic or therapeutic dose" in m for m in mapped)
    # with a therapeutic anticoagulant beside it, the field is true and no "left unknown" line is shown
    case, mapped = case_of(res("medicationstatement-enoxaparin-prophylaxis"), res("medicationrequest-apixaban"))
    assert case["patient"]["treatments"]["anticoagulant"] is True
    assert not any("left unknown" in m for m in mapped)


@pytest.mark.parametrize("resource", [
    dict(res("medicationrequest-apixaban"), status="stopped"),
    dict(res("medicationrequest-apixaban"), medicationCodeableConcept={"coding": [
        {"system": "http://www.whocc.no/atc", "code": "B01AC07", "display": "dipyridamole"}]}),
    dict(res("medicationrequest-apixaban"), medicationCodeableConcept={"text": "apixaban 5 mg"}),   # text only
])
def test_what_is_not_surely_an_active_anticoagulant_sets_nothing(resource):
    assert "patient" not in case_of(resource)[0]


def test_dual_antiplatelet_therapy_needs_two_different_drugs():
    aspirin, clopidogrel = res("medicationrequest-aspirin"), res("medicationrequest-clopidogrel")
    case, mapped = case_of(aspirin)
    assert "patient" not in case
    assert any("one antiplatelet only" in m for m in mapped)
    second_aspirin = dict(aspirin, id="medreq-aspirin-2", medicationCodeableConcept={"coding": [
        {"system": "http://snomed.info/sct", "code": "387458008", "display": "Aspirin (substance)"}]})
    assert "patient" not in case_of(aspirin, second_aspirin)[0]   # the same drug twice is not dual therapy
    case, mapped = case_of(aspirin, clopidogrel)
    assert case["patient"]["treatments"] == {"anticoagulant": True}
    assert any(m.startswith("patient.treatments.anticoagulant = true (dual antiplatelet therapy: ") for m in mapped)
    assert "patient" not in case_of(aspirin, dict(clopidogrel, status="completed"))[0]


# ------------------------------------------------------------------------------------ platelets

@pytest.mark.parametrize("unit, ucum", [("10*3/uL", True), ("10*9/L", True), ("/nL", True), ("10^9/L", False),
                                        ("10*3/ul", False)])
def test_platelets_in_equal_units(unit, ucum):
    obs = res("observation-platelets")
    obs["valueQuantity"] = {"value": 42, "unit": unit, **({"system": UCUM, "code": unit} if ucum else {})}
    case, mapped = case_of(obs)
    assert case["labs"] == {"platelets_10e9_l": 42}
    assert any(m.startswith("labs.platelets_10e9_l = 42 (Observation 777-3") for m in mapped)


def test_platelets_by_the_other_loinc_code():
    obs = res("observation-platelets")
    obs["code"]["coding"][0].update(code="26515-7", display="Platelets [#/volume] in Blood")
    assert case_of(obs)[0]["labs"] == {"platelets_10e9_l": 42}


@pytest.mark.parametrize("quantity, why", [
    ({"value": 42000, "unit": "/uL", "system": UCUM, "code": "/uL"}, "unit '/uL' not converted"),
    ({"value": 42000, "unit": "cells/mm3"}, "unit 'cells/mm3' not converted"),
    ({"value": 42, "unit": "g/L", "system": UCUM, "code": "g/L"}, "unit 'g/L' not converted"),
    ({"value": 42, "unit": "10*3/uL", "system": UCUM, "code": "10*3/uL", "comparator": "<"}, "no usable value"),
    ({"value": 4200, "unit": "10*9/L", "system": UCUM, "code": "10*9/L"}, "4200 outside the case's limits"),
    ({"value": 1e9, "unit": "10*9/L", "system": UCUM, "code": "10*9/L"}, "1000000000 outside the case's limits"),
    ({"value": -0.0000001, "unit": "10*9/L", "system": UCUM, "code": "10*9/L"}, "-0.0000001 outside the case's limits"),
])
def test_platelets_in_other_units_are_refused_with_a_reason(quantity, why):
    obs = dict(res("observation-platelets"), valueQuantity=quantity)
    case, mapped = case_of(obs)
    assert "labs" not in case
    assert f"labs.platelets_10e9_l left unknown (Observation 777-3: {why})" in mapped


def test_a_refused_platelet_count_does_not_hide_a_good_one():
    bad = dict(res("observation-platelets"), id="obs-plt-2", valueQuantity={"value": 90000, "unit": "cells/mm3"})
    case, mapped = case_of(bad, res("observation-platelets"))
    assert case["labs"] == {"platelets_10e9_l": 42}
    assert not any("left unknown" in m for m in mapped)


# ------------------------------------------------------------------------------------ neuraxial procedure

def test_a_lumbar_puncture_two_days_ago_is_a_recent_neuraxial_procedure():
    case, mapped = case_of(res("procedure-lumbar-puncture"))
    assert case["presentation"] == {"recent_neuraxial_procedure": True}
    assert any(m.startswith("presentation.recent_neuraxial_procedure = true (Procedure Lumbar puncture") for m in mapped)


@pytest.mark.parametrize("change, expected", [
    ({"performedDateTime": "2026-11-21T12:00:00Z"}, True),      # exactly 7 days
    ({"performedDateTime": "2026-11-21T11:59:00Z"}, None),      # 7 days and a minute
    ({"performedDateTime": "2026-11-21"}, True),                # a date: 7 calendar days
    ({"performedDateTime": "2026-11-20"}, None),
    ({"performedDateTime": "2026-11-29T08:00:00Z"}, True),      # after now: as now (a clock ahead; it only raises)
    ({"performedDateTime": "2026-11-28T12:05:00Z"}, True),      # audit: 5 minutes ahead dropped the haematoma path
    ({"performedDateTime": "2026-11"}, None),                   # a month cannot be placed
    ({"status": "not-done"}, None),
    ({"status": "preparation"}, None),
    ({"status": "entered-in-error"}, None),
    ({"status": "in-progress"}, True),
])
def test_the_seven_day_window_and_the_status(change, expected):
    procedure = dict(res("procedure-lumbar-puncture"), **change)
    assert case_of(procedure)[0].get("presentation", {}).get("recent_neuraxial_procedure") is expected


def test_performed_period():
    base = {k: v for k, v in res("procedure-lumbar-puncture").items() if k != "performedDateTime"}
    old = {"start": "2026-11-15T09:00:00Z"}
    catheter = dict(base, status="in-progress", performedPeriod=old)   # still in place: now
    assert case_of(catheter)[0]["presentation"]["recent_neuraxial_procedure"] is True
    assert "presentation" not in case_of(dict(base, performedPeriod=old))[0]   # completed 13 days ago
    ended = dict(base, performedPeriod={**old, "end": "2026-11-25T09:00:00Z"})
    assert case_of(ended)[0]["presentation"]["recent_neuraxial_procedure"] is True
    assert "presentation" not in case_of(dict(base, performedString="last week"))[0]


def test_a_procedure_that_is_not_surely_neuraxial_sets_nothing():
    procedure = res("procedure-lumbar-puncture")
    procedure["code"] = {"coding": [{"system": "http://snomed.info/sct", "code": "86273004", "display": "Biopsy"}]}
    assert "presentation" not in case_of(procedure)[0]
    procedure["code"] = {"text": "Lumbar puncture"}   # text only: no code
    assert "presentation" not in case_of(procedure)[0]


# ------------------------------------------------------------------------------------ corticosteroids

def test_a_corticosteroid_started_long_ago_is_long_term():
    case, mapped = case_of(res("medicationstatement-prednisolone-long-term"))
    assert case["patient"]["treatments"] == {"long_term_corticosteroids": True}
    assert any("started 263 days ago, more than 14: long-term" in m for m in mapped)


def test_a_corticosteroid_started_within_the_episode_is_this_episode():
    dex = dict(res("medicationrequest-dexamethasone-undated"), authoredOn="2026-11-27T22:00:00Z")
    assert treatments(dex) == {"corticosteroids": True}
    assert treatments(dict(dex, authoredOn="2026-11-14")) == {"corticosteroids": True}   # 14 days: still this episode
    assert treatments(dict(dex, authoredOn="2026-11-13")) == {"long_term_corticosteroids": True}   # 15 days


def test_both_a_long_term_steroid_and_dexamethasone_for_this_episode():
    dex = dict(res("medicationrequest-dexamethasone-undated"), authoredOn="2026-11-28")
    assert treatments(dex, res("medicationstatement-prednisolone-long-term")) == {
        "corticosteroids": True, "long_term_corticosteroids": True}


@pytest.mark.parametrize("change, why", [
    ({}, "no start date"),
    ({"authoredOn": "2026-12-05"}, "in the future"),
    ({"authoredOn": "2026-11-25", "priorPrescription": {"reference": "MedicationRequest/older"}}, "a renewal"),
])
def test_a_corticosteroid_that_cannot_be_placed_leaves_both_unknown(change, why):
    case, mapped = case_of(dict(res("medicationrequest-dexamethasone-undated"), **change))
    assert "patient" not in case
    assert any(m.startswith("patient.treatments.corticosteroids left unknown") and why in m for m in mapped)


# ------------------------------------------------------------------------------------ the map itself

def test_the_fields_no_code_states_safely_are_listed_with_a_reason():
    codemap = default_codemap()
    for path in ("presentation.hypocalcaemia_symptoms", "presentation.hypercalcaemia_symptoms",
                 "assessment.mri_contraindicated", "presentation.focal_vertebral_pain.region"):
        assert len(codemap.unmapped[path]) > 40


def test_every_code_has_a_display():
    entries = [c for g in CODEMAP["medications"] for c in g["codes"]] + CODEMAP["antiplatelets"]["codes"] \
        + CODEMAP["procedures"]["codes"] + CODEMAP["labs"]
    assert all(str(e.get("display", "")).strip() for e in entries)


@pytest.mark.parametrize("change, words", [
    (lambda m: m["antiplatelets"].update(field="patient.treatments.antiplatelet"), "not a tristate field"),
    (lambda m: m["procedures"].update(field="presentation.recent_procedure"), "not a tristate field"),
    (lambda m: m["procedures"]["codes"].append({"system": "cpt", "code": "62270"}), "unknown system families"),
    (lambda m: m["corticosteroid_start"].update(long_term_field="patient.treatments.steroids"), "not a tristate field"),
    (lambda m: m["unmapped"].append({"field": "presentation.tetany", "reason": "x"}), "not a field of the case"),
])
def test_a_broken_v22_section_is_refused_by_name(change, words):
    data = copy.deepcopy(CODEMAP)
    change(data)
    with pytest.raises(CodeMapError, match=words):
        CodeMap(data)


def test_procedures_are_prefetched_and_checked_against_the_patient():
    assert discovery_prefetch()["procedures"] == "Procedure?patient={{context.patientId}}"
    assert TEMPLATES["procedures"].required is False
    other = dict(res("procedure-lumbar-puncture"), subject={"reference": "Patient/someone-else"})
    record, covered = read_prefetch({"procedures": {"resourceType": "Bundle", "entry": [{"resource": other}]}}, "mscc-1")
    assert record.of("Procedure") == [] and "procedures" in covered
    assert record.set_aside == [("prefetch.procedures", "Procedure", "subject is not context.patientId")]

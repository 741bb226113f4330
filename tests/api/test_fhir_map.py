"""The map, units and card rooms alone, with the real FHIR R4 files of tests/api/fhir/ (no HTTP, no Flask app).

- labs in both unit systems give the same case value; eGFR, total calcium, comparators, unknown units and
  out-of-range values stay unknown; the latest result wins;
- a temperature of 38 °C or more (°F converted) within 24 hours sets infection_suspected, never false;
- medications by ATC, RxNorm ingredient, a contained or a referenced Medication; stopped ones ignored;
- every code of the medication and lab map maps; a broken map is refused by name;
- every case field is mapped by the code map or listed under its `unmapped` with a reason;
- suggestions never hold what the result does not (every vignette of tests/vignettes).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path

import pytest
import yaml

import triage
from triage._vignettes import load_suite
from mscc_triage_api.cds import cards
from mscc_triage_api.fhir import units as fhir_units
from mscc_triage_api.fhir.map import (
    CODEMAP_PATH, NOT_FINDINGS, CodeMap, CodeMapError, case_from_record, default_codemap,
)
from mscc_triage_api.fhir.record import Record, read_prefetch

FHIR = Path(__file__).with_name("fhir")
NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.timezone.utc)
UCUM = "http://unitsofmeasure.org"
CODEMAP = yaml.safe_load(CODEMAP_PATH.read_text())
SYSTEMS = {family: urls[0] for family, urls in CODEMAP["systems"].items()}


def res(name: str) -> dict:
    return json.loads((FHIR / f"{name}.json").read_text())


def case_of(*resources: dict, now: dt.datetime = NOW) -> tuple[dict, list[str]]:
    record, _ = read_prefetch({"r": {"resourceType": "Bundle", "entry": [{"resource": r} for r in resources]}})
    case, mapped = case_from_record(record, default_codemap(), now)
    return case, [str(m) for m in mapped]   # the machine lines (the card words them: test_card_words.py)


def quantity_obs(code: str, value, unit: str, when: str = "2026-11-28T08:00:00Z", **extra) -> dict:
    obs = copy.deepcopy(res("observation-calcium-mmol"))
    obs["code"]["coding"][0]["code"] = code
    obs["valueQuantity"] = {"value": value, "unit": unit, "system": UCUM, "code": unit, **extra}
    obs["effectiveDateTime"] = when
    return obs


def test_calcium_in_both_unit_systems():
    assert case_of(res("observation-calcium-mmol"))[0]["labs"]["corrected_calcium_mmol_l"] == 3.6
    assert case_of(res("observation-calcium-mgdl"))[0]["labs"]["corrected_calcium_mmol_l"] == pytest.approx(14.4 * 0.2495, abs=1e-3)
    both = case_of(res("observation-calcium-mgdl"), res("observation-calcium-mmol"))   # the latest wins
    assert both[0]["labs"]["corrected_calcium_mmol_l"] == 3.6
    assert "labs.corrected_calcium_mmol_l = 3.6 (Observation 29265-6: 3.6 mmol/L)" in both[1]


def test_vitamin_d_and_creatinine_clearance():
    labs = case_of(res("observation-vitamin-d-ngml"), res("observation-creatinine-clearance"))[0]["labs"]
    assert labs == {"vitamin_d_nmol_l": pytest.approx(18 * 2.496, abs=1e-3), "creatinine_clearance_ml_min": 48}
    assert case_of(quantity_obs("62292-8", 50, "nmol/L"))[0]["labs"]["vitamin_d_nmol_l"] == 50


@pytest.mark.parametrize("obs", [
    res("observation-egfr"),                                           # mL/min/1.73 m2 is not a clearance
    quantity_obs("17861-6", 10.1, "mg/dL"),                            # total calcium: not mapped
    quantity_obs("29265-6", 3.1, "mmol/L", comparator=">"),            # a comparator is not a value
    quantity_obs("29265-6", 3.1, "mEq/L"),                             # a unit we do not convert
    quantity_obs("29265-6", 31, "mg/dL"),                              # 7.7 mmol/L: outside the case's limits
    quantity_obs("35591-7", "48", "mL/min"),                           # a string is not a number
    dict(quantity_obs("29265-6", 3.1, "mmol/L"), status="entered-in-error"),
])
def test_what_cannot_be_converted_safely_stays_unknown(obs):
    assert "labs" not in case_of(obs)[0]


def test_units_convert_in_one_place():
    assert fhir_units.convert({"value": 10, "unit": "mg/dl"}, "calcium_mmol_l") == 2.495   # unit text, any case
    assert fhir_units.convert({"value": 101.3, "system": UCUM, "code": "[degF]"}, "temperature_celsius") == 38.5
    assert fhir_units.convert({"value": float("nan"), "code": "mmol/L", "system": UCUM}, "calcium_mmol_l") is None
    assert fhir_units.convert({"value": True, "code": "mmol/L", "system": UCUM}, "calcium_mmol_l") is None


def test_fever_within_24_hours_sets_infection_suspected_and_never_clears_it():
    temp = res("observation-temperature-f")   # 101.3 °F = 38.5 °C at 06:00 on the 28th
    case, mapped = case_of(temp)
    assert case["presentation"]["infection_suspected"] is True and any("38.5 °C" in m for m in mapped)
    assert "presentation" not in case_of(temp, now=NOW + dt.timedelta(days=1))[0]   # 30 hours later: too old
    normal = quantity_obs("8310-5", 37.2, "Cel")
    assert "presentation" not in case_of(normal)[0]   # a normal temperature sets nothing (not false)
    # Audit: a fever that may lie in the window counts (it only raises): a day without a time that the
    # window reaches, a time minutes ahead of ours (the EHR's clock), or only when it was issued.
    for shape in ({"effectiveDateTime": "2026-11-28"}, {"effectiveDateTime": "2026-11-27"},
                  {"effectiveDateTime": "2026-11-28T12:10:00Z"}):
        assert case_of(dict(temp, **shape))[0]["presentation"]["infection_suspected"] is True, shape
    undated = {k: v for k, v in temp.items() if k not in ("effectiveDateTime", "issued")}
    assert case_of(dict(undated, issued="2026-11-28T09:00:00Z"))[0]["presentation"]["infection_suspected"] is True
    for shape in ({"effectiveDateTime": "2026-11-25"}, {"effectiveDateTime": "2026-11-26T11:00:00Z"},
                  {"issued": "2026-11-26T11:00:00Z"}):
        assert "presentation" not in case_of(dict(undated, **shape))[0], shape   # past the window
    assert "presentation" not in case_of(undated)[0]   # undated: not placed in the window


@pytest.mark.parametrize("unit", ["degC", "Celsius", "°C", "℃", "deg C"])
def test_a_fever_in_celsius_by_the_unit_text_alone_counts(unit):
    obs = quantity_obs("8310-5", 39.5, "Cel")
    obs["valueQuantity"] = {"value": 39.5, "unit": unit}
    assert case_of(obs)[0]["presentation"]["infection_suspected"] is True


def test_a_recent_temperature_that_cannot_be_read_is_said_not_dropped():
    obs = quantity_obs("8310-5", 39.5, "Cel")
    obs["valueQuantity"] = {"value": 39.5, "unit": "degrees"}
    case, mapped = case_of(obs)
    assert "presentation" not in case   # unknown, never false
    assert "presentation.infection_suspected left unknown (Observation 8310-5: unit 'degrees' not converted)" in mapped


def test_medications_by_atc_rxnorm_contained_and_referenced():
    case, mapped = case_of(res("medicationrequest-dexamethasone"), res("medicationrequest-pembrolizumab"),
                           res("medication-pembrolizumab"), res("medicationstatement-denosumab"),
                           res("medicationstatement-alendronate-stopped"))
    assert case["patient"]["treatments"] == {"corticosteroids": True, "checkpoint_inhibitor": True,
                                             "bone_modifying_agent": "denosumab"}
    assert any("MedicationStatement denosumab (rxnorm 993449)" in m for m in mapped)


def test_a_stopped_medication_sets_nothing_and_absence_is_not_false():
    assert "patient" not in case_of(res("medicationstatement-alendronate-stopped"))[0]
    active = dict(res("medicationstatement-alendronate-stopped"), status="active")
    assert case_of(active)[0]["patient"]["treatments"] == {"bone_modifying_agent": "bisphosphonate"}


def _coding(family: str, code: str) -> dict:
    return {"coding": [{"system": SYSTEMS[family], "code": code + ("02" if family == "atc" and len(code) == 5 else "")}]}


@pytest.mark.parametrize("group, entry", [(g, e) for g in CODEMAP["medications"] for e in g["codes"]],
                         ids=lambda x: x.get("code", x.get("field")) if isinstance(x, dict) else str(x))
def test_every_medication_code_maps(group, entry):
    request = {"resourceType": "MedicationRequest", "id": "m", "status": "active", "intent": "order",
               "medicationCodeableConcept": _coding(entry["system"], str(entry["code"])),
               "subject": {"reference": "Patient/p"}, "authoredOn": "2026-11-27"}
    case, mapped = case_of(request)
    if "leave_unknown" in group:   # a heparin: never sets the field, says why on the card
        assert "patient" not in case
        assert any(m.startswith(f"{group['field']} left unknown") for m in mapped)
        return
    node = case
    for part in group["field"].split("."):
        node = node[part]
    assert node == group["value"]


@pytest.mark.parametrize("entry", CODEMAP["labs"], ids=lambda e: e["code"])
def test_every_lab_code_maps(entry):
    unit = {"calcium_mmol_l": "mmol/L", "vitamin_d_nmol_l": "nmol/L", "clearance_ml_min": "mL/min",
            "platelets_10e9_l": "10*9/L"}[entry["unit"]]
    case = case_of(quantity_obs(entry["code"], 2.5, unit))[0]
    assert case["labs"][entry["field"].split(".")[1]] == 2.5


@pytest.mark.parametrize("change, words", [
    (lambda m: m["medications"][0].update(field="patient.treatments.steroids"), "not a tristate field"),
    (lambda m: m["medications"][2].update(value="romosozumab"), "taking 'romosozumab'"),
    (lambda m: m["labs"][0].update(unit="calcium_mg"), "unknown unit kind"),
    (lambda m: m["labs"][0].update(field="labs.nope"), "not a number field"),
    (lambda m: m["medications"][0]["codes"].append({"system": "ndc", "code": "1"}), "unknown system families"),
])
def test_a_broken_code_map_is_refused_by_name(change, words):
    data = copy.deepcopy(CODEMAP)
    change(data)
    with pytest.raises(CodeMapError, match=words):
        CodeMap(data)


def test_bundles_and_single_resources_under_any_key_are_read_by_type():
    record, covered = read_prefetch({"condition": res("condition-prostate-cancer"), "labs": {
        "resourceType": "Bundle", "entry": [{"resource": res("observation-calcium-mmol")}, {"resource": 5}, "x"]},
        "junk": [1, 2], "patient": None})
    assert [r["id"] for r in record.of("Condition")] == ["cond-prostate"]
    assert [r["id"] for r in record.of("Observation")] == ["obs-ca-mmol"]
    assert covered == {"patient", "conditions", "observations"}


SUITE = load_suite(sorted((Path(__file__).parents[1] / "vignettes").glob("*.yaml")))


def test_suggestions_hold_only_what_the_result_holds_over_every_vignette():
    rs = triage.load_ruleset()
    checked = 0
    for _, vignette in SUITE:
        try:
            result = rs.evaluate(vignette.case)
        except triage.CaseValidationError:
            continue
        ordered = {a.id for a in result.actions if cards.orderable(a.id, rs)}
        suggestions = cards.suggestions_for(result, "p1", rs)
        texts = [a["resource"].get("code", a["resource"].get("medicationCodeableConcept"))["text"]
                 for s in suggestions for a in s["actions"]]
        assert sorted(texts) == sorted(cards.ENGLISH.ordered(a, rs) for a in ordered)
        recommended = [s for s in suggestions if s["isRecommended"]]
        assert len(recommended) == len([a for a in ordered if a in rs.scan_orders])   # the scan, and only it,
        assert suggestions[:len(recommended)] == recommended                          # recommended, first
        has_dex = any(t.startswith("Dexamethasone") for t in texts)
        assert has_dex == ("dexamethasone_16mg" in result.action_ids())
        checked += 1
    assert checked > 50


def test_the_card_lists_where_the_record_came_from():
    result = triage.load_ruleset().evaluate({"patient": {"cancer": {"history": "current"}}})
    record = Record(origin={"patient": "sent", "observations": "fetched from the FHIR server"},
                    unavailable={"medicationRequests": "the FHIR server answered 403 (the access token was refused)"})
    card = cards.card_for(result, triage.load_ruleset(), [], "https://triage.example.org/", record, "p1")
    assert "**Record**: patient: sent; observations: fetched from the FHIR server; medicationRequests: not available" \
        in card["detail"]
    assert card["overrideReasons"] == cards.OVERRIDE_REASONS


# ------------------------------------------------------------------ every case field: mapped or unmapped

def mapped_fields(codemap: CodeMap) -> set[str]:
    """The case fields the loaded code map can set (every section of api/fhir/codemap.yaml)."""
    out = {path for *_, path in codemap.condition_findings} | set(codemap.observations.values())
    out |= {path for _, _, path, _, _ in codemap.medications} | {path for path, _ in codemap.labs.values()}
    if codemap.cancer:               # conditions.cancer: clinicalStatus gives the history, the code the primary
        out |= {"patient.cancer.history", "patient.cancer.primary"}
    for section in (codemap.antiplatelets, codemap.fever, codemap.procedures):
        if section:
            out.add(section[0])
    if codemap.corticosteroid_start:
        out |= set(codemap.corticosteroid_start[:2])
    return out


def neither_mapped_nor_unmapped(codemap: CodeMap) -> list[str]:
    return sorted(set(triage.FIELDS) - mapped_fields(codemap) - set(codemap.unmapped) - NOT_FINDINGS)


# Fields that api/fhir/codemap.yaml neither maps nor lists under `unmapped`: none any more (the last 38 were
# given their reasons under `unmapped`). The set may only shrink, so it stays empty: a NEW field of the case
# must be mapped or listed with its reason (docs/extending.md, "Add a finding" step 5), never added here.
NOT_YET_LISTED: frozenset[str] = frozenset()


def test_every_case_field_is_mapped_or_listed_as_unmapped_with_a_reason():
    codemap = default_codemap()
    assert NOT_FINDINGS == {"patient.age_years"}     # the only field from the Patient resource, not a code
    assert neither_mapped_nor_unmapped(codemap) == sorted(NOT_YET_LISTED), \
        "a case field is neither mapped in api/fhir/codemap.yaml nor listed under `unmapped` with a reason: " \
        "map it or list it there (NOT_YET_LISTED is empty and may only shrink: do not add the field to it)"
    assert all(reason.strip() for reason in codemap.unmapped.values())


def test_a_field_whose_unmapped_entry_is_deleted_is_named():
    data = yaml.safe_load(CODEMAP_PATH.read_text(encoding="utf-8"))
    for entry in data["unmapped"]:
        if entry["field"] in mapped_fields(default_codemap()):
            continue                 # listed AND mapped (long-term steroids, with a start date only)
        trimmed = copy.deepcopy(data)
        trimmed["unmapped"] = [e for e in data["unmapped"] if e["field"] != entry["field"]]
        assert neither_mapped_nor_unmapped(CodeMap(trimmed)) == sorted(NOT_YET_LISTED | {entry["field"]})


def test_two_values_of_a_lab_at_the_same_time_leave_it_unknown_and_say_why():
    """Audit of 5 December: calcium 2.4 and 3.7 at the same time showed 2.4 and hid the 3.7."""
    for order in ((2.4, 3.7), (3.7, 2.4)):
        case, lines = case_of(*[quantity_obs("29265-6", v, "mmol/L") for v in order])
        assert "corrected_calcium_mmol_l" not in case.get("labs", {}), case
        assert "labs.corrected_calcium_mmol_l left unknown (2.4 / 3.7 recorded at the same time)" in lines
    # the same value twice is one value; a later time settles it; an earlier one does not
    assert case_of(*[quantity_obs("29265-6", 3.7, "mmol/L")] * 2)[0]["labs"]["corrected_calcium_mmol_l"] == 3.7
    later = quantity_obs("29265-6", 2.5, "mmol/L", when="2026-11-28T09:00:00Z")
    earlier = quantity_obs("29265-6", 2.5, "mmol/L", when="2026-11-28T07:00:00Z")
    pair = [quantity_obs("29265-6", v, "mmol/L") for v in (2.4, 3.7)]
    assert case_of(*pair, later)[0]["labs"]["corrected_calcium_mmol_l"] == 2.5
    assert case_of(later, *pair)[0]["labs"]["corrected_calcium_mmol_l"] == 2.5
    assert "corrected_calcium_mmol_l" not in case_of(earlier, *pair)[0].get("labs", {})



def test_a_unit_text_and_code_that_disagree_leave_the_lab_unknown_and_say_why():
    """Audit of 5 December: 3.6 with unit "mg/dL" and code "mmol/L" was read as 3.6 mmol/L (the code won)."""
    obs = quantity_obs("29265-6", 3.6, "mmol/L")
    obs["valueQuantity"]["unit"] = "mg/dL"
    case, lines = case_of(obs)
    assert "corrected_calcium_mmol_l" not in case.get("labs", {})
    assert "labs.corrected_calcium_mmol_l left unknown (Observation 29265-6: unit 'mg/dL' and UCUM code 'mmol/L' disagree)" in lines
    agree = quantity_obs("29265-6", 3.6, "mmol/L")
    agree["valueQuantity"]["unit"] = "mmol/l"            # the same unit, written otherwise
    assert case_of(agree)[0]["labs"]["corrected_calcium_mmol_l"] == 3.6
    words = quantity_obs("29265-6", 3.6, "mmol/L")
    words["valueQuantity"]["unit"] = "millimoles per litre"   # a text no table names: the code decides
    assert case_of(words)[0]["labs"]["corrected_calcium_mmol_l"] == 3.6


def test_a_lab_taken_on_a_day_without_a_time_is_ordered_by_its_day():
    """Audit: a calcium of 3.7 dated today without a time lost to 2.4 from 2019 (an undated value)."""
    old = quantity_obs("29265-6", 2.4, "mmol/L", when="2019-01-01T08:00:00Z")
    today = quantity_obs("29265-6", 3.7, "mmol/L", when="2026-11-28")
    for order in ((old, today), (today, old)):
        assert case_of(*order)[0]["labs"]["corrected_calcium_mmol_l"] == 3.7
    same_day = quantity_obs("29265-6", 2.4, "mmol/L", when="2026-11-28T08:00:00Z")
    case, mapped = case_of(today, same_day)   # which came first that day cannot be told: neither is taken
    assert "labs" not in case and any("2.4 / 3.7 recorded at the same time" in m for m in mapped)


@pytest.mark.parametrize("newest", [
    {"value": 7.6, "unit": "mEq/L", "system": UCUM, "code": "meq/L"},   # a unit not converted
    {"value": 3.9, "unit": "mmol/L", "system": UCUM, "code": "mmol/L", "comparator": ">"},
    {"value": 99, "unit": "mmol/L", "system": UCUM, "code": "mmol/L"},   # outside the case's limits
])
def test_an_older_lab_never_stands_in_for_a_newer_one_that_cannot_be_read(newest):
    """Audit: the newest calcium could not be read, so the one of 30 days before was used, and not said."""
    older = quantity_obs("29265-6", 2.4, "mmol/L", when="2026-10-29T08:00:00Z")
    unread = quantity_obs("29265-6", 1, "mmol/L", when="2026-11-28T10:00:00Z")
    unread["valueQuantity"] = newest
    for order in ((older, unread), (unread, older)):
        case, mapped = case_of(*order)
        assert "labs" not in case, case   # unknown: the triage asks for it, never a stale normal value
        assert any(m.startswith("labs.corrected_calcium_mmol_l left unknown (Observation 29265-6") for m in mapped)
    newer = quantity_obs("29265-6", 2.5, "mmol/L", when="2026-11-28T11:00:00Z")   # a readable one after it: taken
    assert case_of(older, unread, newer)[0]["labs"]["corrected_calcium_mmol_l"] == 2.5


def cancer(code: str, clinical: str = "active", verification: str = "confirmed", system: str = "icd10") -> dict:
    condition = copy.deepcopy(res("condition-prostate-cancer"))
    condition["id"] = f"cond-{code}-{clinical}-{verification}"
    condition["code"] = {"coding": [{"system": SYSTEMS[system], "code": code}]}
    condition["clinicalStatus"]["coding"][0]["code"] = clinical
    condition["verificationStatus"]["coding"][0]["code"] = verification
    return condition


@pytest.mark.parametrize("others, history, primary", [
    ([cancer("C50"), cancer("C83", verification="provisional")], "suspected", "lymphoma"),
    ([cancer("C61"), cancer("C85", clinical="remission")], "past", "lymphoma"),
    ([cancer("C61"), cancer("C83.3")], "current", "lymphoma"),   # two current: the haematological one
    ([cancer("C61"), cancer("C34")], "current", "prostate"),     # two current solid: the code map's order
    ([cancer("C50"), cancer("C61", clinical="inactive")], "current", "breast"),
])
def test_several_cancers_give_one_history_and_primary_whatever_their_order(others, history, primary):
    """Audit: a provisional lymphoma beside an active breast cancer was dropped, and dexamethasone
    offered before its biopsy; with two active cancers, the primary depended on the Bundle's order."""
    for order in (others, others[::-1]):
        case, mapped = case_of(*order)
        assert case["patient"]["cancer"] == {"history": history, "primary": primary}, order
        assert any(m.startswith(f"several cancers: taken {history}, {primary}") for m in mapped)
    weakness = {"presentation": {"focal_vertebral_pain": {"present": True}, "weakness": {"present": True}}}
    result = triage.evaluate({**case, **weakness})
    if primary == "lymphoma" and history != "current":
        assert "dexamethasone_16mg" not in result.action_ids()   # haemato-oncology first
        assert "dexamethasone_16mg" in result.withheld_ids()


@pytest.mark.parametrize("code", ["C79.51", "C7951", "c79.5"])
def test_icd10_codes_match_with_or_without_their_dot(code):
    metastases = cancer(code)
    assert case_of(metastases)[0]["patient"]["cancer"].get("bone_metastases") is True, code
    assert case_of(cancer("C900"))[0]["patient"]["cancer"]["primary"] == "myeloma"


@pytest.mark.parametrize("system, yes, no", [("snomed", "373066001", "373067005"), ("hl7yesno", "Y", "N")])
def test_yes_and_no_answers_set_a_finding(system, yes, no):
    """Audit: a weakness answered 'Yes' (SNOMED CT, or HL7 v2 Y) was read as nothing."""
    weakness = copy.deepcopy(res("observation-weakness"))
    weakness.pop("valueBoolean", None)
    weakness["valueCodeableConcept"] = {"coding": [{"system": SYSTEMS[system], "code": yes}]}
    assert case_of(weakness)[0]["presentation"]["weakness"]["present"] is True
    weakness["valueCodeableConcept"]["coding"][0]["code"] = no
    weakness["effectiveDateTime"] = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert case_of(weakness)[0]["presentation"]["weakness"]["present"] is False   # final and made now

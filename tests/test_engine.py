"""The engine: isolation between evaluations, determinism, threads, and durable-rules' traps."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import durable_rules_engine as dre
import pytest
import yaml

import triage
from triage import _engine



def emergency_case() -> dict:
    return {"patient": {"cancer": {"history": "current", "primary": "lung"}},
            "presentation": {"weakness": {"present": True, "limbs": "legs"}}}


def varied_cases() -> list[dict]:
    """Distinct valid cases of every urgency (built here, so the test stands without ../shared)."""
    cases = [
        {},
        emergency_case(),
        {"patient": {"cancer": {"history": "current"}}, "presentation": {"focal_vertebral_pain": {"present": True}}},
        {"patient": {"cancer": {"history": "none"}}, "presentation": {"paraesthesia": {"present": True}}},
        {"patient": {"cancer": {"history": "current", "bone_metastases": True},
                     "treatments": {"bone_modifying_agent": "denosumab"}},
         "labs": {"corrected_calcium_mmol_l": 3.6, "creatinine_clearance_ml_min": 20}},
        {"patient": {"cancer": {"history": "current", "primary": "kidney"}},
         "presentation": {"weakness": {"present": True, "progressive": True}, "non_ambulatory_hours": 50},
         "assessment": {"escc_grade": "3", "life_expectancy_months": 12}},
        {"assessment": {"sins": {"total": 13}}, "patient": {"cancer": {"history": "past"}}},
        {"patient": {"cancer": {"history": "suspected", "primary": "lymphoma"}},
         "presentation": {"sphincter_disturbance": {"post_void_residual_ml": 300}}},
    ]
    for i, case in enumerate(cases):
        case["case_id"] = f"case-{i}"
    return cases


def test_same_case_gives_byte_identical_json(ruleset):
    for case in varied_cases():
        first = ruleset.evaluate(case).to_json()
        assert ruleset.evaluate(case).to_json() == first
        assert triage.load_ruleset(ruleset.path).evaluate(case).to_json() == first


def test_result_holds_no_time_or_random_value(ruleset):
    text = ruleset.evaluate(emergency_case()).to_json()
    assert "sid" not in json.loads(text)
    assert json.loads(text)["ruleset"]["sha256"] == ruleset.sha256


def test_two_thousand_evaluations_leave_no_engine_state(ruleset):
    cases = varied_cases()
    reference = {c["case_id"]: ruleset.evaluate(c).to_json() for c in cases}
    first_sid = next(_engine._SIDS)
    for i in range(2000):
        case = cases[i % len(cases)]
        assert ruleset.evaluate(case).to_json() == reference[case["case_id"]]
    last_sid = next(_engine._SIDS)
    engines = [ruleset._full, *ruleset._what_if.values()]
    handles = [e._handle for e in engines if e._handle is not None]
    assert handles
    for sid in range(first_sid, last_sid + 1):
        for handle in handles:
            with pytest.raises(dre.error, match="309"):  # 309: no such session
                dre.get_state(handle, str(sid))


def test_eight_threads_never_mix_results(ruleset):
    cases = varied_cases()
    reference = {c["case_id"]: ruleset.evaluate(c).to_json() for c in cases}
    errors: list[str] = []
    barrier = threading.Barrier(8)

    def worker(offset: int) -> None:
        barrier.wait()
        for i in range(300):
            case = cases[(i + offset) % len(cases)]
            got = ruleset.evaluate(case).to_json()
            if got != reference[case["case_id"]]:
                errors.append(f"thread {offset}: {case['case_id']} gave another result")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_a_batch_whose_last_fact_matches_nothing_still_reports_the_others(ruleset):
    """durable answers 'not handled' for such a batch although the other facts fired (drained anyway)."""
    engine = ruleset._what_if["routine"]
    from triage._triage import _field_parts, _flatten, _nest
    from triage._case import normalised_dict, validate_case

    flat = _flatten(normalised_dict(validate_case({})))
    raising = dict(flat, **{"presentation.weakness.present": "yes"})
    nothing = dict(flat, **{"patient.cancer.history": "none"})
    fields = _field_parts(engine.program)
    fired = engine.run([_nest(raising, fields), _nest(nothing, fields)])
    assert {u.rule.id for u in fired[0]} >= {"mscc.suspected"}
    assert fired[1] == []


def test_unknowns_are_the_what_if_of_the_rules(ruleset):
    result = ruleset.evaluate({})
    assert [(u.field, u.could_raise_to) for u in result.unknowns] == [
        ("presentation.focal_vertebral_pain.present", "urgent"),
        ("presentation.weakness.present", "emergency"),
        ("presentation.paraesthesia.present", "emergency"),
        ("presentation.sphincter_disturbance.present", "emergency"),
        ("presentation.sciatica.present", "emergency"),
        ("presentation.gait_difficulty", "emergency"),
    ]


def test_sub_findings_count_only_when_their_group_is_present(ruleset):
    case = {"patient": {"cancer": {"history": "none"}},
            "presentation": {"sphincter_disturbance": {"present": False}, "weakness": {"present": False},
                             "gait_difficulty": False, "paraesthesia": {"present": True},
                             "sciatica": {"present": True}}}
    fields = [u.field for u in ruleset.evaluate(case).unknowns]
    # no cancer: only the cord signs among the sub-findings of a present group raise urgency (M3),
    # and bilateral sciatica is a cauda equina red flag (M2, any history)
    assert fields == ["presentation.paraesthesia.sensory_level", "presentation.paraesthesia.saddle_anaesthesia",
                      "presentation.sciatica.bilateral"]


def test_no_unknowns_once_emergency(ruleset):
    assert ruleset.evaluate(emergency_case()).unknowns == []


def test_urgency_never_lowered_by_an_unknown(ruleset):
    known_absent = {"patient": {"cancer": {"history": "current"}},
                    "presentation": {"focal_vertebral_pain": {"present": True}, "weakness": {"present": False},
                                     "paraesthesia": {"present": False}, "sphincter_disturbance": {"present": False},
                                     "sciatica": {"present": False}, "gait_difficulty": False}}
    unknown = {"patient": {"cancer": {"history": "current"}},
               "presentation": {"focal_vertebral_pain": {"present": True}}}
    assert ruleset.evaluate(known_absent).urgency == ruleset.evaluate(unknown).urgency == "urgent"
    assert ruleset.evaluate(unknown).unknowns and not ruleset.evaluate(known_absent).unknowns


def test_removal_wins_whichever_rule_added_the_action(ruleset):
    case = emergency_case()
    assert "cementoplasty_assessment" in ruleset.evaluate(case).action_ids()
    case["assessment"] = {"escc_grade": "2"}
    result = ruleset.evaluate(case)
    assert "cementoplasty_assessment" not in result.action_ids()
    assert "not_for_cementoplasty_alone" in result.flag_ids()


def test_actions_are_ordered_by_timing_and_because_names_every_rule(ruleset):
    result = ruleset.evaluate({"patient": {"cancer": {"history": "current"}},
                               "presentation": {"weakness": {"present": True, "limbs": "legs", "bilateral": True}}})
    order = ["immediately", "within_4h", "within_24h", "within_1_week", "routine"]
    ranks = [order.index(a.timing) for a in result.actions]
    assert ranks == sorted(ranks)
    surgical = next(a for a in result.actions if a.id == "urgent_spinal_surgical_opinion")
    assert surgical.because == ["mscc.suspected", "mscc.cauda_equina"]
    assert "GIRFT" in surgical.source and "NG234" in surgical.source
    assert len(result.headline) <= 140


def _write_wide_ruleset(folder: Path, n: int) -> None:
    """A ruleset of n rules that all match the same case: more than durable's 64 per fact."""
    (folder / "ruleset.yaml").write_text(yaml.safe_dump({
        "name": "wide", "version": "0.0.1", "vocabulary": "vocabulary.yaml", "concepts": "concepts.yaml",
        "rule_files": ["wide.yaml"], "disclaimer": "test",
        "headlines": {"emergency": "e", "urgent": "u", "routine": "r"}}))
    (folder / "vocabulary.yaml").write_text(yaml.safe_dump({
        "actions": [{"id": "a0", "label": "A", "timing": "routine"}],
        "flags": [{"id": f"f{i}", "label": f"F{i}", "severity": "info"} for i in range(n)]}))
    (folder / "concepts.yaml").write_text(yaml.safe_dump({"concepts": [
        {"id": "adult", "meaning": "adult", "when": {"field": "patient.age_years", "ge": 18}}]}))
    (folder / "wide.yaml").write_text(yaml.safe_dump({"rules": [
        {"id": f"wide.r{i}", "version": 1, "title": f"R{i}", "rationale": "r", "source": "test",
         "when": {"concept": "adult"}, "flags": [f"f{i}"]} for i in range(n)]}))


def test_more_rules_matching_one_case_than_durable_allows_per_fact(tmp_path):
    _write_wide_ruleset(tmp_path, 100)
    wide = triage.load_ruleset(tmp_path)
    assert len(wide.program.stages[0]) >= 3  # chunked
    result = wide.evaluate({"patient": {"age_years": 40}})
    assert len(result.flags) == 100
    assert len(result.fired_rules) == 100
    assert wide.evaluate({"patient": {"age_years": 10}}).flags == []



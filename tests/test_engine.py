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
         "presentation": {"weakness": {"present": True, "progressive": True}, "complete_paraplegia_hours": 50},
         "assessment": {"escc_grade": "3", "life_expectancy_months": 12}},
        {"patient": {"cancer": {"history": "current", "primary": "breast"}},
         "presentation": {"weakness": {"present": True}, "infection_suspected": True},
         "assessment": {"mri_performed": True, "mri_compression": False, "new_findings_since_mri": True},
         "labs": {"corrected_calcium_mmol_l": 1.85}},
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
    engines = [ruleset._full]
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
    from triage._triage import _flatten
    from triage._case import normalised_dict, validate_case

    from triage._compile import compile_program
    from triage._engine import CompiledEngine

    flat = _flatten(normalised_dict(validate_case({})))
    raising = dict(flat, **{"presentation.weakness.present": '"yes"'})
    nothing = dict(flat, **{"patient.cancer.history": '"none"'})
    # a program of the units that read the case alone (no other unit's outcome) and that the weakness
    # fires but the empty case does not: the second fact of the batch matches none of its rules
    terms = ruleset.compiled.unit_terms
    alone = [u for u in ruleset.compiled.units
             if terms[u.name] and not any(key.startswith("o.") for term in terms[u.name] for key, _, _ in term)]
    full_runs = ruleset._full.run([raising, nothing])
    fired_names = [{u.name for u in run} for run in full_runs]
    chosen = [u for u in alone if u.name in fired_names[0] and u.name not in fired_names[1]]
    assert chosen
    engine = CompiledEngine("quirk-test", compile_program(chosen, {u.name: terms[u.name] for u in chosen}))
    try:
        fired = engine.run([raising, nothing])
    finally:
        engine.close()
    assert {u.name for u in fired[0]} == {u.name for u in chosen}
    assert fired[1] == []


def test_unknowns_are_the_what_if_of_the_rules(ruleset):
    # clinical-rules 2.2, the example of "Unknowns": the empty case lists six, each leading to emergency
    # (a group is tried with each of its sub-findings: band-like pain is a deficit); sexual function
    # and fever alone raise nothing.
    result = ruleset.evaluate({})
    assert [(u.field, u.could_raise_to) for u in result.unknowns] == [
        ("presentation.focal_vertebral_pain.present", "emergency"),
        ("presentation.weakness.present", "emergency"),
        ("presentation.paraesthesia.present", "emergency"),
        ("presentation.sphincter_disturbance.present", "emergency"),
        ("presentation.sciatica.present", "emergency"),
        ("presentation.gait_difficulty", "emergency"),
    ]
    by_field = {u.field: u for u in result.unknowns}
    assert by_field["presentation.focal_vertebral_pain.present"].would_add_actions == ["mri_whole_spine_within_24h"]
    assert by_field["presentation.weakness.present"].would_add_flags == ["cauda_equina_red_flags",
                                                                        "rapidly_progressive_deficit"]
    assert set(by_field["presentation.weakness.present"].would_add_actions) == {
        "mri_whole_spine_within_24h", "mri_whole_spine_within_4h"}
    assert by_field["presentation.gait_difficulty"].would_add_actions == ["mri_whole_spine_within_24h"]


def test_sub_findings_count_only_when_their_group_is_present(ruleset):
    case = {"patient": {"cancer": {"history": "none"}},
            "presentation": {"sphincter_disturbance": {"present": False}, "weakness": {"present": False},
                             "gait_difficulty": False, "paraesthesia": {"present": True},
                             "sciatica": {"present": True}, "focal_vertebral_pain": {"present": False}}}
    fields = [u.field for u in ruleset.evaluate(case).unknowns]
    # no cancer: only the cord signs among the sub-findings of a present group raise urgency (M3),
    # bilateral sciatica is a cauda equina red flag (M2, any history), and so is a sexual change with
    # sciatica; fever with sciatica is a suspected spinal infection (M32, spec 2.2); the sub-findings
    # of the absent groups are not asked
    assert fields == ["presentation.paraesthesia.sensory_level", "presentation.paraesthesia.saddle_anaesthesia",
                      "presentation.paraesthesia.bilateral_legs", "presentation.sciatica.bilateral",
                      "presentation.sexual_dysfunction", "presentation.infection_suspected"]


def test_unknowns_at_emergency_list_the_critical_flags_they_would_add(ruleset):
    case = emergency_case()
    case["presentation"]["paraesthesia"] = {"present": True}
    result = ruleset.evaluate(case)
    assert result.urgency == "emergency"
    by_field = {u.field: u for u in result.unknowns}
    saddle = by_field["presentation.paraesthesia.saddle_anaesthesia"]
    assert saddle.could_raise_to == "emergency" and saddle.would_add_flags == ["cauda_equina_red_flags"]
    assert by_field["presentation.weakness.progressive"].would_add_flags == ["rapidly_progressive_deficit"]
    # once every critical flag a finding could add is there, nothing is left to ask about it
    flagged = emergency_case()
    flagged["presentation"]["weakness"].update(progressive=True, bilateral=True)
    assert "presentation.weakness.progressive" not in [u.field for u in ruleset.evaluate(flagged).unknowns]


def test_a_clear_mri_asks_whether_anything_began_since(ruleset):
    case = {"patient": {"cancer": {"history": "current", "primary": "breast"}},
            "presentation": {"weakness": {"present": True, "onset_hours": 120}},
            "assessment": {"mri_performed": True, "mri_compression": False}}
    result = ruleset.evaluate(case)
    assert result.urgency == "urgent"
    assert ("assessment.new_findings_since_mri", "emergency") in [(u.field, u.could_raise_to) for u in result.unknowns]
    case["assessment"]["new_findings_since_mri"] = False
    assert "assessment.new_findings_since_mri" not in [u.field for u in ruleset.evaluate(case).unknowns]


def test_urgency_never_lowered_by_an_unknown(ruleset):
    known_absent = {"patient": {"cancer": {"history": "current"}},
                    "presentation": {"focal_vertebral_pain": {"present": True, "band_like": False},
                                     "weakness": {"present": False},
                                     "paraesthesia": {"present": False}, "sphincter_disturbance": {"present": False},
                                     "sciatica": {"present": False}, "gait_difficulty": False,
                                     "sexual_dysfunction": False, "infection_suspected": False}}
    unknown = {"patient": {"cancer": {"history": "current"}},
               "presentation": {"focal_vertebral_pain": {"present": True}}}
    assert ruleset.evaluate(known_absent).urgency == ruleset.evaluate(unknown).urgency == "urgent"
    assert ruleset.evaluate(unknown).unknowns and not ruleset.evaluate(known_absent).unknowns


def test_removal_wins_whichever_rule_added_the_action(ruleset):
    case = {"patient": {"cancer": {"history": "current", "primary": "breast"}},
            "presentation": {"focal_vertebral_pain": {"present": True}},
            "assessment": {"mri_performed": True, "mri_compression": False, "vertebral_fracture": True}}
    assert "cementoplasty_assessment" in ruleset.evaluate(case).action_ids()
    case["assessment"]["sins"] = {"total": 13}
    result = ruleset.evaluate(case)
    assert "cementoplasty_assessment" not in result.action_ids()
    assert "not_for_cementoplasty_alone" in result.flag_ids()


def test_one_mri_at_the_earliest_time_asked(ruleset):
    case = {"patient": {"cancer": {"history": "current", "primary": "prostate"}},
            "presentation": {"weakness": {"present": True, "limbs": "legs", "bilateral": True}}}
    result = ruleset.evaluate(case)
    mri = [a for a in result.action_ids() if a.startswith("mri_")]
    assert mri == ["mri_whole_spine_within_4h"]
    assert "mscc.one_scan_within_4h" in [r.id for r in result.fired_rules]


def test_actions_are_ordered_by_timing_and_because_names_every_rule(ruleset):
    result = ruleset.evaluate({"patient": {"cancer": {"history": "current", "primary": "breast"}},
                               "presentation": {"weakness": {"present": True, "limbs": "legs", "bilateral": True}}})
    order = ["immediately", "within_4h", "within_24h", "within_48h", "within_1_week", "routine"]
    ranks = [order.index(a.timing) for a in result.actions]
    assert ranks == sorted(ranks)
    # spec 2.2: cauda equina red flags bring the spinal surgeon now, which withdraws the urgent opinion
    assert "urgent_spinal_surgical_opinion" not in result.action_ids()
    assert "mscc.one_surgical_opinion" in [r.id for r in result.fired_rules]
    surgical = next(a for a in result.actions if a.id == "spinal_surgical_opinion_now")
    assert surgical.because == ["mscc.cauda_equina"]
    bladder = next(a for a in result.actions if a.id == "bladder_scan")
    assert bladder.because == ["mscc.cauda_equina"]
    assert [a.id for a in result.actions].count("bladder_scan") == 1
    assert "GIRFT" in surgical.source and "NG234" in surgical.source
    # citations: national guidance first (NG234 before GIRFT), the seed document last
    parts = surgical.source.split("; ")
    assert parts.index("NICE NG234") < parts.index("GIRFT suspected cauda equina syndrome pathway (2023)")
    assert parts[-1] == "seed-003"
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
    from triage._compile import CHUNK_SIZE
    assert CHUNK_SIZE < 63   # durable walks at most 64 pending alpha nodes; each leads to a distinct rule
    assert len(wide.program.stages[0].chunks) == -(-100 // CHUNK_SIZE)   # chunked; a full chunk all matching
    result = wide.evaluate({"patient": {"age_years": 40}})
    assert len(result.flags) == 100
    assert len(result.fired_rules) == 100
    assert wide.evaluate({"patient": {"age_years": 10}}).flags == []



"""The rule language and engine features of spec 2.2: substitution (the CT route), headlines that name
only what the result holds, rules read on the case as sent, the unknowns' trials and their partial
evaluation, citations in order."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

import triage
from triage._case import FIELDS, normalised_dict, set_path, validate_case
from triage._random_cases import random_valid_cases
from triage._result import source_parts, source_rank
from triage._ruleset import expanded_rule_entries
from triage._triage import _flatten, what_if_trials
from triage._vignettes import load_suite

ROOT = Path(__file__).resolve().parents[1]
OWN = ROOT / "tests" / "vignettes"
PUBLIC = ROOT.parent / "shared" / "vignettes"

CAUDA_WITH_CANCER = {"patient": {"cancer": {"history": "current", "primary": "prostate"}},
                     "presentation": {"focal_vertebral_pain": {"present": True, "region": "lumbar"},
                                      "sphincter_disturbance": {"urinary_retention": True}}}


def _all_cases() -> list[dict]:
    folders = [str(OWN)] + ([str(PUBLIC)] if PUBLIC.is_dir() else [])
    return [v.case for _, v in load_suite(folders) if not v.expect.error]


# ------------------------------------------------------------------------------ substitution

def test_ct_replaces_every_mri_left_with_the_rules_that_asked_for_it(ruleset):
    mri = ruleset.evaluate(CAUDA_WITH_CANCER)
    scans = {a.id: a.because for a in mri.actions if a.id.startswith("mri_")}
    assert list(scans) == ["mri_whole_spine_within_4h"]         # the others withdrawn: one scan
    case = json.loads(json.dumps(CAUDA_WITH_CANCER))
    case["assessment"] = {"mri_contraindicated": True}
    ct = ruleset.evaluate(case)
    assert not [a for a in ct.action_ids() if a.startswith("mri_")]
    replaced = next(a for a in ct.actions if a.id == "ct_whole_spine_within_4h")
    assert replaced.because == scans["mri_whole_spine_within_4h"] and replaced.timing == "within_4h"
    assert "mri_contraindicated_ct_route" in ct.flag_ids()
    assert "mscc.ct_when_mri_contraindicated" in [r.id for r in ct.fired_rules]
    assert "CT" in ct.headline and "MRI" not in ct.headline
    assert ct.urgency == mri.urgency


def test_no_mri_to_replace_no_ct_route(ruleset):
    case = {"patient": {"cancer": {"history": "current", "primary": "breast"}},
            "assessment": {"mri_contraindicated": True}}
    result = ruleset.evaluate(case)
    assert "mri_contraindicated_ct_route" not in result.flag_ids()
    assert "mscc.ct_when_mri_contraindicated" not in [r.id for r in result.fired_rules]


def test_every_mri_timing_has_its_ct(ruleset):
    cases = {
        "ct_lumbosacral_within_4h": {"patient": {"age_years": 40, "cancer": {"history": "none"}},
                                     "presentation": {"sciatica": {"present": True, "bilateral": True}}},
        "ct_whole_spine_within_24h": {"patient": {"cancer": {"history": "current", "primary": "lung"}},
                                      "presentation": {"weakness": {"present": True, "limbs": "legs",
                                                                    "bilateral": False}}},
        "ct_whole_spine_within_1_week": {"patient": {"cancer": {"history": "current", "primary": "lung"}},
                                         "presentation": {"focal_vertebral_pain": {"present": True},
                                                          "weakness": {"present": False},
                                                          "paraesthesia": {"present": False},
                                                          "sphincter_disturbance": {"present": False},
                                                          "sciatica": {"present": False},
                                                          "gait_difficulty": False}},
    }
    for ct, case in cases.items():
        mri = ct.replace("ct_lumbosacral_within_4h", "mri_within_4h_cauda_equina").replace("ct_", "mri_")
        assert mri in ruleset.evaluate(case).action_ids(), ct
        case = json.loads(json.dumps(case))
        case.setdefault("assessment", {})["mri_contraindicated"] = True
        ids = ruleset.evaluate(case).action_ids()
        assert ct in ids and mri not in ids, ct


def _rules_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "rules"
    shutil.copytree(triage.default_ruleset().path, folder)
    return folder


def _add_rules(folder: Path, rules: list[dict]) -> None:
    path = folder / "mscc.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["rules"].extend(rules)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def _rule(rule_id: str, **fields) -> dict:
    return {"id": rule_id, "version": 1, "title": "t", "rationale": "r", "source": "test", **fields}


def test_a_swap_written_as_two_rules_is_refused_at_load(tmp_path):
    folder = _rules_copy(tmp_path)
    contraindicated = {"field": "assessment.mri_contraindicated", "is": True}
    _add_rules(folder, [
        _rule("mscc.ct_instead", when={"all": [contraindicated, {"action": "mri_whole_spine_within_4h"}]},
              actions=["ct_whole_spine_within_4h"]),
        _rule("mscc.no_mri", when=contraindicated, removes_actions=["mri_whole_spine_within_4h"], reason="no MRI"),
    ])
    with pytest.raises(triage.RulesetError) as info:
        triage.load_ruleset(folder)
    message = str(info.value)
    assert "which mscc.no_mri removes" in message          # the rule whose removal makes the read dead
    assert "two rules" in message and "replaces:" in message


def test_a_rule_that_reads_and_removes_the_same_action_is_told_about_replaces(tmp_path):
    folder = _rules_copy(tmp_path)
    _add_rules(folder, [_rule("mscc.swap_in_one", when={"action": "neurology_review"},
                              removes_actions=["neurology_review"], actions=["neurology_review_now"],
                              reason="sooner")])
    with pytest.raises(triage.RulesetError) as info:
        triage.load_ruleset(folder)
    assert "reads an outcome it produces itself" in str(info.value) and "replaces:" in str(info.value)


def test_two_rules_that_can_replace_the_same_action_in_one_case_are_refused(tmp_path):
    """Which swap wins must be written, not left to file order (an MRI route placed before the CT swap
    ordered an MRI for someone whose MRI is contraindicated)."""
    folder = _rules_copy(tmp_path)
    _add_rules(folder, [_rule("mscc.other_route", when={"field": "assessment.vertebral_fracture", "is": True},
                              replaces={"mri_whole_spine_within_24h": "mri_whole_spine_within_4h"}, reason="sooner")])
    with pytest.raises(triage.RulesetError) as info:
        triage.load_ruleset(folder)
    assert info.value.rule_id == "mscc.other_route"
    assert "which mscc.ct_when_mri_contraindicated also replaces" in info.value.reason
    guarded = _rules_copy(tmp_path / "guarded")
    # guarded against every shipped rule that replaces that MRI (the CT swap; a local route's too)
    # (each swap's findings, negated: its `{scan: any}` part reads the actions, which this rule changes)
    swaps = [[c for c in entry["when"].get("all", [entry["when"]]) if "field" in c]
             for _, entry in expanded_rule_entries(guarded)
             if "mri_whole_spine_within_24h" in (entry.get("replaces") or {})]
    assert swaps and all(swaps)
    _add_rules(guarded, [_rule("mscc.other_route", when={"all": [
        {"field": "assessment.vertebral_fracture", "is": True}, *({"not": {"all": found}} for found in swaps)]},
        replaces={"mri_whole_spine_within_24h": "mri_whole_spine_within_4h"}, reason="sooner")])
    assert triage.load_ruleset(guarded).data.rule("mscc.other_route")   # the guard says the CT wins


def test_replaces_names_vocabulary_ids(tmp_path):
    folder = _rules_copy(tmp_path)
    _add_rules(folder, [_rule("mscc.bad_swap", when={"field": "assessment.mri_contraindicated", "is": True},
                              replaces={"mri_whole_spine_within_4h": "ct_whole_spine_within_4"}, reason="CT")])
    with pytest.raises(triage.RulesetError) as info:
        triage.load_ruleset(folder)
    assert "ct_whole_spine_within_4h" in str(info.value)   # the "did you mean" hint


# ------------------------------------------------------------------------------ headlines

# Words of a headline and the actions that make them true.
_NAMED = {
    "MRI within 4 hours": {"mri_whole_spine_within_4h", "mri_within_4h_cauda_equina"},
    "CT within 4 hours": {"ct_whole_spine_within_4h", "ct_lumbosacral_within_4h"},
    "MRI within 24 hours": {"mri_whole_spine_within_24h"},
    "CT within 24 hours": {"ct_whole_spine_within_24h"},
    "spinal surgeon now": {"spinal_surgical_opinion_now"},
    "blood cultures now": {"blood_cultures_and_infection_markers"},
    "intravenous calcium now": {"iv_calcium_replacement"},
    "within 24 hours": None,  # checked through the more precise phrases above
}


def test_a_headline_never_names_an_action_the_result_lacks(ruleset):
    checked = 0
    for case in _all_cases():
        result = ruleset.evaluate(case)
        ids = set(result.action_ids())
        for words, actions in _NAMED.items():
            if actions and words in result.headline:
                assert ids & actions, (result.headline, sorted(ids))
                checked += 1
    assert checked > 50


def test_suspected_mscc_with_cauda_equina_names_both_and_the_scan(ruleset):
    result = ruleset.evaluate(CAUDA_WITH_CANCER)
    assert {"mscc.suspected", "mscc.cauda_equina"} <= {r.id for r in result.fired_rules}
    assert result.headline == "Suspected MSCC with cauda equina red flags: whole-spine MRI within 4 hours, act now"
    case = json.loads(json.dumps(CAUDA_WITH_CANCER))
    case["assessment"] = {"mri_performed": True, "mri_compression": True}   # compression shown: no new scan
    result = ruleset.evaluate(case)
    assert "MRI" not in result.headline and "cauda equina" in result.headline


# ------------------------------------------------------------------------------ as sent

def test_unable_to_walk_with_gait_not_recorded_is_flagged_as_assumed_new(ruleset):
    base = {"patient": {"cancer": {"history": "current", "primary": "breast"}}}
    sent = dict(base, presentation={"ambulatory_status": "non_ambulatory"})
    assert "gait_assumed_from_non_ambulatory_status" in ruleset.evaluate(sent).flag_ids()
    # the same normalised case, with gait recorded by the sender: not assumed
    recorded = dict(base, presentation={"ambulatory_status": "non_ambulatory", "gait_difficulty": True})
    assert "gait_assumed_from_non_ambulatory_status" not in ruleset.evaluate(recorded).flag_ids()
    # a recorded time since walking was lost says it is new: not assumed
    timed = dict(base, presentation={"ambulatory_status": "non_ambulatory", "non_ambulatory_hours": 30})
    assert "gait_assumed_from_non_ambulatory_status" not in ruleset.evaluate(timed).flag_ids()


# ------------------------------------------------------------------------------ unknowns

def test_what_if_trials_equal_a_renormalised_case(ruleset):
    """A trial written on the flat case is what normalising the changed case gives (case-format 2.2)."""
    compared = 0
    for case in random_valid_cases(seed=22, n=300, density=0.35):
        normalised = normalised_dict(validate_case(case))
        flat = _flatten(normalised)
        for _, trials in what_if_trials(flat):
            for trial in trials:
                variant = json.loads(json.dumps(normalised))
                for path, value in trial.items():
                    decoded = json.loads(value)
                    set_path(variant, path, {"yes": True, "no": False}.get(decoded, decoded))
                try:
                    again = _flatten(normalised_dict(validate_case(variant)))
                except triage.CaseValidationError as exc:  # a trial the format rejects must not be made
                    pytest.fail(f"trial {trial} on {case} is a contradiction: {exc}")
                assert again == dict(flat, **trial), trial
                compared += 1
    assert compared > 1000


def test_the_trials_run_with_the_case_answer_as_each_trial_run_alone(ruleset):
    """The case and its what-if trials share one run of the full program (the facts a trial does not
    change are written once); each trial's answer is the one a run of the changed case alone gives."""
    from triage._compile import urgency_of
    from triage._engine import final_actions
    from triage._triage import _unknown_items

    cases = (list(random_valid_cases(seed=7, n=150, density=0.3)) + list(random_valid_cases(seed=8, n=100, density=0.8))
             + _all_cases()[:150])
    compared = 0
    for case in cases:
        try:
            result = ruleset.evaluate(case)
        except triage.CaseValidationError:
            continue
        _, flat = ruleset._facts(validate_case(case))
        alone = ruleset._full.run([flat])[0]
        fired = [u for u in alone if u.rule is not None]
        worlds, owners = ruleset._trials(flat, ruleset._full_fields)
        runs = [ruleset._full.run([{**flat, **world}])[0] for world in worlds]     # each world alone
        flags = set().union(*[u.flags for u in fired])
        missing = frozenset(f for f in ruleset._critical if f not in flags)
        lacking = frozenset(a for a in ruleset._imaging if a not in final_actions(fired))
        assert result.unknowns == _unknown_items(
            ruleset._qualifying(owners, runs, urgency_of(fired), missing, lacking)), case
        compared += len(worlds)
    assert compared > 1000


def test_kept_answers_equal_fresh_ones(ruleset, monkeypatch):
    """What fired and the what-if's answers, kept by the case's fragments, give the result computed
    afresh, for the cases in another order; a result changed by its caller does not change the next one."""
    import random

    import triage._triage as engine_module
    cases = _all_cases() + list(random_valid_cases(seed=21, n=200, density=0.5))
    remembered = triage.load_ruleset(ruleset.path)
    first = [remembered.evaluate(case).model_dump() for case in cases]
    assert remembered._case_answers
    shuffled = list(range(len(cases)))
    random.Random(3).shuffle(shuffled)
    again = {i: remembered.evaluate(cases[i]) for i in shuffled}
    for result in again.values():
        for unknown in result.unknowns:
            unknown.would_add_flags.append("tampered")
        result.actions.clear()
        result.fired_rules.clear()
    monkeypatch.setattr(engine_module, "MAX_KEPT_ANSWERS", 0)
    fresh = triage.load_ruleset(ruleset.path)
    for i, case in enumerate(cases):
        expected = fresh.evaluate(case).model_dump()
        assert first[i] == expected, case
        assert remembered.evaluate(case).model_dump() == expected, case   # after the tampering
        assert remembered.evaluate_afresh(case).model_dump() == expected, case
    assert not fresh._case_answers


def test_never_asked_fields_are_never_unknowns(ruleset):
    never = {"presentation.recent_neuraxial_procedure", "patient.treatments.anticoagulant",
             "patient.treatments.long_term_corticosteroids", "labs.platelets_10e9_l",
             "assessment.mri_contraindicated"}
    for case in random_valid_cases(seed=3, n=200, density=0.2):
        assert not never & {u.field for u in ruleset.evaluate(case).unknowns}


def test_walking_is_not_tried_when_gait_is_recorded_normal(ruleset):
    case = {"patient": {"cancer": {"history": "current", "primary": "lung"}},
            "presentation": {"weakness": {"present": True, "limbs": "legs", "bilateral": False,
                                          "progressive": False, "onset_hours": 200},
                             "gait_difficulty": False}}
    fields = [u.field for u in ruleset.evaluate(case).unknowns]
    assert "presentation.ambulatory_status" not in fields
    case["presentation"]["gait_difficulty"] = None
    fields = [u.field for u in ruleset.evaluate(case).unknowns]
    assert "presentation.ambulatory_status" in fields


def test_calcium_symptoms_are_asked_only_past_their_threshold(ruleset):
    def asked(calcium: float) -> set[str]:
        case = {"patient": {"cancer": {"history": "current", "primary": "breast"}},
                "labs": {"corrected_calcium_mmol_l": calcium}}
        return {u.field for u in ruleset.evaluate(case).unknowns}
    assert "presentation.hypocalcaemia_symptoms" in asked(2.19)
    assert "presentation.hypocalcaemia_symptoms" not in asked(2.20)
    assert "presentation.hypercalcaemia_symptoms" in asked(2.90)
    assert "presentation.hypercalcaemia_symptoms" not in asked(2.89)


# ------------------------------------------------------------------------------ citations

def test_citations_put_national_guidance_first_and_the_seed_last(ruleset):
    seen = 0
    for case in _all_cases():
        for action in ruleset.evaluate(case).actions:
            ranks = [source_rank(part) for part in source_parts(action.source)]
            assert ranks == sorted(ranks), action.source
            cited = set(source_parts(action.source))   # every citation whole, as its rules wrote it
            assert cited == {part for r in action.because for part in source_parts(ruleset.data.rule(r).source)}
            seen += 1
    assert seen > 1000
    for rule in ruleset.data.rules:
        ranks = [source_rank(part) for part in source_parts(rule.source)]
        assert ranks == sorted(ranks), (rule.id, rule.source)
        assert "CG75" not in rule.source or "CG75 (2008, superseded by NG234)" in rule.source, rule.id


def test_a_citation_with_a_semicolon_in_brackets_stays_whole(ruleset):
    assert source_parts("NICE NG234 (scope; update); seed-003") == ["NICE NG234 (scope; update)", "seed-003"]
    from triage._result import _join_sources
    bracketed = [r for r in ruleset.data.rules if any(";" in part for part in source_parts(r.source))]
    assert bracketed, "no rule cites a source with a ';' in brackets: the check below checks nothing"
    for rule in bracketed:
        joined = _join_sources([rule.source])
        assert set(source_parts(joined)) == set(source_parts(rule.source)), (rule.id, joined)


def test_integer_fields_take_a_whole_float_and_null_objects_are_not_assessed(ruleset):
    assert validate_case({"patient": {"age_years": 67.0}}).patient.age_years == 67
    with pytest.raises(triage.CaseValidationError):
        validate_case({"patient": {"age_years": 67.5}})
    with pytest.raises(triage.CaseValidationError):
        validate_case({"patient": {"age_years": True}})
    assert ruleset.evaluate({"patient": None, "presentation": {"weakness": None}, "labs": None}).urgency == "routine"


def test_the_case_model_has_every_field_of_case_format_2_2():
    for path in ("patient.treatments.long_term_corticosteroids", "patient.treatments.anticoagulant",
                 "presentation.hypocalcaemia_symptoms", "presentation.hypercalcaemia_symptoms",
                 "presentation.recent_neuraxial_procedure", "assessment.mri_contraindicated",
                 "labs.platelets_10e9_l"):
        assert path in FIELDS
    assert "thoracolumbar" in FIELDS["presentation.focal_vertebral_pain.region"].values
    assert (FIELDS["labs.platelets_10e9_l"].minimum, FIELDS["labs.platelets_10e9_l"].maximum) == (0, 2000)


def test_a_possible_epidural_haematoma_is_named_in_the_headline_whenever_it_fires(ruleset):
    """H1 always fires with M1 or M3, which come first in ruleset order, so its own headline (stop the
    anticoagulants; dexamethasone is held) was never the one shown: a card's summary read "Suspected
    metastatic spinal cord compression: act now" for an anticoagulated patient with a deficit of hours."""
    anticoagulated = {"treatments": {"anticoagulant": True}}
    seen = {"with cancer": 0, "without cancer": 0, "with cauda equina": 0}
    for history in ("current", "none", "unknown"):
        for weakness in ({"present": True, "onset_hours": 3},
                         {"present": True, "onset_hours": 3, "bilateral": True, "limbs": "legs"}):
            for assessment in ({}, {"mri_contraindicated": True}, {"mri_compression": True}):
                case = {"patient": {"cancer": {"history": history}, **anticoagulated},
                        "presentation": {"weakness": weakness}, "assessment": assessment}
                result = ruleset.evaluate(case)
                fired = {r.id for r in result.fired_rules}
                assert "mscc.epidural_haematoma" in fired, case
                assert "possible epidural haematoma" in result.headline and "stop anticoagulants" in result.headline
                scans = [a for a in result.action_ids() if "within_4h" in a]
                assert ("within 4 hours" in result.headline) == bool(scans), (result.headline, scans)
                if "mscc.cauda_equina" in fired and "mscc.suspected" in fired:   # result-format: M1 with M2 names both
                    assert "cauda equina red flags" in result.headline
                    seen["with cauda equina"] += 1
                seen["without cancer" if history == "none" else "with cancer"] += 1
    assert all(seen.values()), seen
    for case in random_valid_cases(seed=61, n=3000, density=0.5):
        result = ruleset.evaluate(case)
        if any(r.id == "mscc.epidural_haematoma" for r in result.fired_rules):
            assert "possible epidural haematoma" in result.headline, result.headline


def test_the_unknowns_list_scans_and_flags_in_the_specifications_vocabulary_order():
    """clinical-rules 2.2, Vocabulary: would_add_actions follows the spec's vocabulary order (its main list,
    then the ids new in 2, 2.1, 2.2), as its own example for {} does: the 24-hour MRI before the 4-hour one
    (audit of 6 December: the engine followed rules/vocabulary.yaml, timing first)."""
    import triage

    result = triage.evaluate({})
    weakness = next(u for u in result.unknowns if u.field == "presentation.weakness.present")
    assert weakness.would_add_actions == ["mri_whole_spine_within_24h", "mri_whole_spine_within_4h"]
    assert weakness.would_add_flags == ["cauda_equina_red_flags", "rapidly_progressive_deficit"]
    ct = triage.evaluate({"patient": {"cancer": {"history": "current"}}, "assessment": {"mri_contraindicated": True}})
    assert any(len(u.would_add_actions) > 1 for u in ct.unknowns)
    for unknown in ct.unknowns:
        order = ["ct_whole_spine_within_4h", "ct_whole_spine_within_24h", "ct_lumbosacral_within_4h"]
        assert unknown.would_add_actions == [a for a in order if a in unknown.would_add_actions], unknown


def test_unknowns_order_names_only_the_vocabularys_ids(tmp_path):
    import shutil

    import pytest
    import triage

    folder = tmp_path / "rules"
    shutil.copytree(triage.load_ruleset().path, folder)
    vocabulary = folder / "vocabulary.yaml"
    text = vocabulary.read_text()
    vocabulary.write_text(text.replace("unknowns_order: [cauda_equina_red_flags,", "unknowns_order: [cauda_equina_red_flag,"))
    with pytest.raises(triage.RulesetError, match="cauda_equina_red_flag' is neither an action nor a flag"):
        triage.load_ruleset(folder)
    vocabulary.write_text(text.replace("unknowns_order: [cauda_equina_red_flags,", "unknowns_order: [tetraparesis, cauda_equina_red_flags,"))
    with pytest.raises(triage.RulesetError, match="'tetraparesis' is listed twice"):
        triage.load_ruleset(folder)


def test_an_emergency_headline_says_now_never_today():
    """clinical-rules, Urgency: an emergency is acted on now, and the headline is the CDS card's summary.
    Audit of 6 December: calcium 3.6 was 'treat today'; a fast deficit after a clear MRI said 'neurology
    review' where the action is neurology_review_now."""
    import triage

    breast = {"history": "current", "primary": "breast"}
    for calcium, symptoms, urgency, word in ((3.6, None, "emergency", "now"), (3.2, True, "emergency", "now"),
                                             (3.2, None, "urgent", "today"), (2.95, True, "urgent", "today")):
        case = {"patient": {"cancer": breast}, "labs": {"corrected_calcium_mmol_l": calcium},
                "presentation": {"hypercalcaemia_symptoms": symptoms}}
        result = triage.evaluate(case)
        assert (result.urgency, result.headline) == (
            urgency, f"Hypercalcaemia: treat {word} (rehydration, ECG, IV bisphosphonate)"), case
    clear = {"mri_performed": True, "mri_compression": False, "new_findings_since_mri": False}
    fast = triage.evaluate({"patient": {"cancer": breast}, "assessment": clear,
                            "presentation": {"weakness": {"present": True, "limbs": "legs", "progressive": True}}})
    assert fast.urgency == "emergency" and "neurology_review_now" in fast.action_ids()
    assert fast.headline == "MRI shows no compression but the deficit is progressing, recent or stops walking: neurology review now"
    slow = triage.evaluate({"patient": {"cancer": breast}, "assessment": clear, "presentation": {
        "weakness": {"present": True, "limbs": "legs", "progressive": False, "onset_hours": 72},
        "ambulatory_status": "independent"}})
    assert slow.urgency == "urgent" and "neurology_review" in slow.action_ids()
    assert slow.headline == "MRI shows no compression but there is a deficit: neurology review"


def test_cement_held_by_suspected_mscc_says_what_would_release_it():
    """Audit of 6 December: with a current MRI showing no compression but epidural tumour (Bilsky 1a) and a
    deficit, the hold asked for "a current MRI without compression", which the case already had. M1 holds
    cement until an MRI excludes compression AND epidural tumour, or there is no deficit."""
    import triage

    result = triage.evaluate({
        "patient": {"cancer": {"history": "current", "primary": "breast"}},
        "presentation": {"weakness": {"present": True}, "focal_vertebral_pain": {"present": True}},
        "assessment": {"escc_grade": "1a", "mri_compression": False, "vertebral_fracture": True}})
    held = [h for w in result.model_dump()["withheld"] if w["id"] == "cementoplasty_assessment" for h in w["held_by"]]
    assert [h["release"] for h in held] == ["A current MRI showing neither compression nor epidural tumour, or no deficit"]

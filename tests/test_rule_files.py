"""Rule files are data checked at load: a broken file fails with the file, the rule, the reason, a hint."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import triage
from triage import RulesetError
from triage.cli import main


def edit_rule(folder: Path, file: str, rule_id: str, change) -> None:
    path = folder / file
    data = yaml.safe_load(path.read_text())
    rule = next(r for r in data["rules"] if r["id"] == rule_id)
    change(rule)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def load_error(folder: Path) -> RulesetError:
    with pytest.raises(RulesetError) as info:
        triage.load_ruleset(folder)
    return info.value


@pytest.mark.parametrize("file, rule_id, change, reason, hint", [
    ("mscc.yaml", "mscc.analgesia", lambda r: r.update(when={"field": "presentation.focal_vertebral_pain.presnt", "is": True}),
     "not a field of the case model", "presentation.focal_vertebral_pain.present"),
    ("mscc.yaml", "mscc.analgesia", lambda r: r.update(when={"field": "presentation.gait_difficulty", "gt": 1}),
     "does not apply to presentation.gait_difficulty, a tristate field", None),
    ("mscc.yaml", "mscc.analgesia", lambda r: r.update(when={"field": "patient.cancer.history", "is": True}),
     "does not apply to patient.cancer.history, a enum field", None),
    ("mscc.yaml", "mscc.analgesia", lambda r: r.update(when={"field": "patient.cancer.history", "in": ["curent"]}),
     "'curent' is not a value of patient.cancer.history", "current"),
    ("mscc.yaml", "mscc.analgesia", lambda r: r.update(when={"field": "presentation.weakness.present", "is": "yes"}),
     "a tri-state test is true, false or unknown", None),
    ("bone_health.yaml", "bone.high_calcium", lambda r: r.update(when={"field": "labs.corrected_calcium_mmol_l", "gt": 26.0}),
     "outside the range of labs.corrected_calcium_mmol_l", None),
    # a duration has no upper bound, but a threshold the engine's limit could reach is refused
    ("mscc.yaml", "mscc.analgesia", lambda r: r.update(when={"field": "presentation.non_ambulatory_hours", "gt": 10**9}),
     "beyond what the engine compares", None),
    ("bone_health.yaml", "bone.high_calcium", lambda r: r.update(when={"field": "labs.corrected_calcium_mmol_l", "gt": "2.6"}),
     "must be a number", None),
    ("mscc.yaml", "mscc.analgesia", lambda r: r.update(actions=["analgesics"]),
     "'analgesics' is not in the vocabulary", "analgesia"),
    ("mscc.yaml", "mscc.paediatric", lambda r: r.update(flags=["paediatric_outside_adult_guidline"]),
     "is not in the vocabulary", "paediatric_outside_adult_guideline"),
    ("mscc.yaml", "mscc.analgesia", lambda r: r.update(when={"concept": "pains"}), "unknown concept 'pains'", "pain"),
    ("steroids.yaml", "steroids.diabetes", lambda r: r["when"]["all"].__setitem__(0, {"fired": "steroids.high_dose"}),
     "unknown rule 'steroids.high_dose'", None),
    ("mscc.yaml", "mscc.analgesia", lambda r: r.pop("source"), "source", None),
    ("mscc.yaml", "mscc.analgesia", lambda r: r.update(sorce="x"), "unknown key 'sorce'", "source"),
    # misspelt, so both unknown and missing: the unknown key is named, with its hint (it said "title: Field required")
    ("mscc.yaml", "mscc.analgesia", lambda r: r.update(titel=r.pop("title")), "unknown key 'titel'", "title"),
    ("mscc.yaml", "mscc.analgesia", lambda r: r.update(when={"anything": []}), "unknown condition 'anything'", None),
    ("mscc.yaml", "mscc.analgesia", lambda r: r.update(when={"all": []}), "must be a non-empty list", None),
    ("mscc.yaml", "mscc.suspected", lambda r: r.update(headline="x" * 141), "headline", None),
    ("mscc.yaml", "mscc.analgesia", lambda r: r.update(actions=[]), "produces nothing", None),
    ("mscc.yaml", "mscc.analgesia", lambda r: r.update(urgency="critical"), "urgency", None),
    ("mscc.yaml", "mscc.analgesia", lambda r: r.update(when={"action": "analgesia"}), "produces itself", None),
])
def test_broken_rule_fails_at_load_with_file_rule_reason_and_hint(rules_copy, file, rule_id, change, reason, hint):
    edit_rule(rules_copy, file, rule_id, change)
    error = load_error(rules_copy)
    assert error.file == file
    assert error.rule_id == rule_id
    assert reason in str(error)
    if hint:
        assert error.hint and hint in error.hint


def test_duplicate_rule_id(rules_copy):
    edit_rule(rules_copy, "bone_health.yaml", "bone.high_calcium", lambda r: r.update(id="mscc.analgesia"))
    error = load_error(rules_copy)
    assert error.file == "bone_health.yaml" and error.rule_id == "mscc.analgesia"
    assert "already used in mscc.yaml" in str(error)


def test_circular_fired_references(rules_copy):
    edit_rule(rules_copy, "mscc.yaml", "mscc.analgesia", lambda r: r.update(when={"fired": "mscc.bladder_scan"}))
    edit_rule(rules_copy, "mscc.yaml", "mscc.bladder_scan", lambda r: r.update(when={"fired": "mscc.analgesia"}))
    assert "circular reference" in str(load_error(rules_copy))


def test_circular_concepts(rules_copy):
    path = rules_copy / "concepts.yaml"
    data = yaml.safe_load(path.read_text())
    pain = next(c for c in data["concepts"] if c["id"] == "pain")
    pain["when"] = {"concept": "neuro_deficit"}
    nd = next(c for c in data["concepts"] if c["id"] == "neuro_deficit")
    nd["when"] = {"any": [{"concept": "pain"}]}
    path.write_text(yaml.safe_dump(data))
    error = load_error(rules_copy)
    assert error.file == "concepts.yaml" and "circular reference" in str(error)


def test_outcomes_depending_on_each_other_in_a_circle(rules_copy):
    edit_rule(rules_copy, "mscc.yaml", "mscc.analgesia", lambda r: r.update(when={"action": "bladder_scan"}))
    edit_rule(rules_copy, "mscc.yaml", "mscc.bladder_scan", lambda r: r.update(when={"action": "analgesia"}))
    assert "in a circle" in str(load_error(rules_copy))


def test_yaml_syntax_error_names_the_file(rules_copy):
    (rules_copy / "treatment.yaml").write_text("rules:\n  - id: [unclosed\n")
    error = load_error(rules_copy)
    assert error.file == "treatment.yaml" and "not valid YAML" in str(error)


def test_vocabulary_entry_without_timing(rules_copy):
    path = rules_copy / "vocabulary.yaml"
    data = yaml.safe_load(path.read_text())
    del data["actions"][0]["timing"]
    path.write_text(yaml.safe_dump(data))
    assert load_error(rules_copy).file == "vocabulary.yaml"


def test_missing_rule_file(rules_copy):
    (rules_copy / "steroids.yaml").unlink()
    error = load_error(rules_copy)
    assert error.file == "steroids.yaml" and "not found" in str(error)


def test_rules_check_cli_reports_a_broken_file_and_exits_3(rules_copy):
    edit_rule(rules_copy, "mscc.yaml", "mscc.analgesia", lambda r: r.update(actions=["analgesics"]))
    out = CliRunner().invoke(main, ["rules", "check", "--ruleset", str(rules_copy)])
    assert out.exit_code == 3
    assert "mscc.yaml, rule mscc.analgesia: actions[0]: 'analgesics' is not in the vocabulary" in out.output
    assert "did you mean 'analgesia'?" in out.output
    assert "Traceback" not in out.output


def test_rules_check_cli_on_the_project_rules():
    out = CliRunner().invoke(main, ["rules", "check"])
    assert out.exit_code == 0, out.output
    assert f"{len(triage.load_ruleset().data.rules)} rules in 4 files" in out.output
    assert out.output.rstrip().endswith("ok")


def test_every_rule_carries_id_version_title_rationale_source(ruleset):
    for rule in ruleset.data.rules:
        assert rule.id and rule.version and rule.title and rule.rationale and rule.source


def test_sha256_is_what_sha256sum_gives(ruleset, rules_copy):
    import hashlib

    lines = "".join(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}\n"
                    for p in sorted(rules_copy.iterdir(), key=lambda p: p.name.encode()) if p.is_file())
    assert hashlib.sha256(lines.encode()).hexdigest() == ruleset.sha256
    (rules_copy / "mscc.yaml").write_text((rules_copy / "mscc.yaml").read_text() + "\n# a comment\n")
    assert triage.load_ruleset(rules_copy).sha256 != ruleset.sha256


def test_the_vocabulary_holds_every_id_of_the_contract(ruleset):
    spec_actions = """contact_mscc_coordinator_immediately contact_mscc_coordinator_within_24h mri_whole_spine_within_24h
    mri_whole_spine_within_1_week mri_within_4h_cauda_equina dexamethasone_16mg gastroprotection_ppi
    capillary_glucose_monitoring urgent_spinal_surgical_opinion radiotherapy_referral cementoplasty_assessment
    spinal_precautions spinal_stability_assessment bladder_scan analgesia safety_net_advice
    urgent_haemato_oncology_discussion neurology_review review_steroids_mscc_excluded consider_bone_modifying_agent
    phosphocalcic_assessment dental_assessment_with_panoramic vitamin_d_assay annual_dental_review calcium_monitoring
    vitamin_d_supplement_100000iu_monthly""".split()
    spec_flags = {
        "critical": "cauda_equina_red_flags rapidly_progressive_deficit sins_unstable significant_hypercalcaemia",
        "warning": """radiological_compression_without_deficit paediatric_outside_adult_guideline
            no_known_cancer_consider_malignancy senior_review_before_steroids cancer_history_unknown
            haematological_malignancy_suspected_discuss_before_steroids diabetes_steroid_hyperglycaemia_risk
            consider_immune_related_myelitis possible_spinal_instability sins_potentially_unstable
            high_grade_epidural_compression hypercalcaemia_avoid_calcium_supplement
            zoledronate_not_recommended_crcl_below_30 denosumab_hypocalcaemia_risk_renal""",
        "info": """discuss_steroids_with_haematology_mdt already_on_corticosteroids
            checkpoint_inhibitor_do_not_withhold_steroids consider_decompression_then_radiotherapy
            radiosensitive_histology_radiotherapy_first not_for_cementoplasty_alone prolonged_paraplegia_over_48h
            prior_spinal_radiotherapy_discuss_reirradiation mscc_excluded_by_mri oligometastatic_consider_local_treatment
            palliative_radiotherapy_for_pain zoledronate_dose_reduction consider_daily_calcium_vitamin_d""",
    }
    assert set(spec_actions) <= set(ruleset.data.actions)
    for severity, ids in spec_flags.items():
        for flag in ids.split():
            assert ruleset.data.flags[flag].severity == severity
    new_actions = {  # versions 2 and 2.1, with the timings the contract gives them
        "mri_whole_spine_within_4h": "within_4h", "baseline_bloods": "within_24h",
        "establish_cancer_history": "immediately", "cancer_diagnostic_workup": "within_1_week",
        "iv_rehydration": "immediately", "stop_calcium_vitamin_d": "immediately", "ecg": "within_4h",
        "iv_bisphosphonate_for_hypercalcaemia": "within_24h", "senior_steroid_decision_now": "immediately",
        "hypercalcaemia_cause_workup": "within_24h", "iv_calcium_replacement": "immediately",
        "myeloma_screen_bloods": "within_1_week", "blood_cultures_and_infection_markers": "immediately"}
    for action, timing in new_actions.items():
        assert ruleset.data.actions[action].timing == timing, action
    new_flags = {"mri_predates_new_findings": "warning", "mri_result_not_recorded": "warning",
                 "hypocalcaemia_correct_before_bone_agent": "warning", "severe_hypocalcaemia": "critical",
                 "consider_spinal_infection": "warning"}
    for flag, severity in new_flags.items():
        assert ruleset.data.flags[flag].severity == severity, flag


def test_the_vocabulary_holds_every_id_of_spec_2_2_with_its_timing_or_severity(ruleset):
    actions_2_2 = {
        "neurology_review_now": "immediately", "immune_related_adverse_event_pathway_now": "immediately",
        "spinal_surgical_opinion_now": "immediately", "haemato_oncology_discussion_today": "within_24h",
        "anticoagulation_review_now": "immediately", "urgent_tissue_diagnosis_route": "within_24h",
        "paediatric_assessment_within_48h": "within_48h", "contact_paediatric_oncology_now": "immediately",
        "goals_of_care_discussion": "immediately", "ct_whole_spine_within_4h": "within_4h",
        "ct_whole_spine_within_24h": "within_24h", "ct_whole_spine_within_1_week": "within_1_week",
        "ct_lumbosacral_within_4h": "within_4h"}
    for action, timing in actions_2_2.items():
        assert ruleset.data.actions[action].timing == timing, action
    flags_2_2 = {"tetraparesis": "critical", "consider_epidural_haematoma": "warning",
                 "long_term_steroids_continue": "info", "gait_assumed_from_non_ambulatory_status": "warning",
                 "consider_ceiling_of_care": "info", "mri_contraindicated_ct_route": "info"}
    for flag, severity in flags_2_2.items():
        assert ruleset.data.flags[flag].severity == severity, flag
    # the imaging actions of the unknowns (result-format 2.2): the 4- and 24-hour scans, on every route
    # of the scans table (the MRI and the CT the contract names; a local route adds its own)
    imaging = {a.id for a in ruleset.data.actions.values() if a.imaging}
    assert imaging >= {"mri_whole_spine_within_4h", "mri_within_4h_cauda_equina", "mri_whole_spine_within_24h",
                       "ct_whole_spine_within_4h", "ct_lumbosacral_within_4h", "ct_whole_spine_within_24h"}
    assert imaging == {a for a in ruleset.data.scan_actions
                       if ruleset.data.actions[a].timing in ("within_4h", "within_24h")}
    labels = {a: ruleset.data.actions[a].label for a in ("spinal_precautions", "stop_calcium_vitamin_d")}
    assert "neck" in labels["spinal_precautions"] and "lithium" in labels["stop_calcium_vitamin_d"]
    assert "myeloma" not in ruleset.data.flags["haematological_malignancy_suspected_discuss_before_steroids"].label
    assert "next dose" in ruleset.data.flags["hypocalcaemia_correct_before_bone_agent"].label


def test_a_condition_with_too_many_alternatives_is_refused_at_load_with_a_hint(rules_copy):
    many = {"all": [{"any": [{"field": f"presentation.weakness.{f}", "is": True} for f in ("present", "bilateral",
                                                                                           "progressive")]},
                    {"any": [{"field": f"presentation.paraesthesia.{f}", "is": True}
                             for f in ("present", "sensory_level", "saddle_anaesthesia", "bilateral_legs")]},
                    {"any": [{"field": f"presentation.sphincter_disturbance.{f}", "is": True}
                             for f in ("present", "urinary_retention", "urinary_incontinence", "faecal_incontinence",
                                       "altered_urinary_sensation")]},
                    {"any": [{"field": "presentation.sciatica.present", "is": True},
                             {"field": "presentation.sciatica.bilateral", "is": True}]}]}   # 3 x 4 x 5 x 2 = 120
    edit_rule(rules_copy, "mscc.yaml", "mscc.analgesia", lambda r: r.update(when=many))
    error = load_error(rules_copy)
    assert "120 alternatives" in str(error) and "concept" in str(error) and "mscc.analgesia" in str(error)


def test_every_rule_that_removes_or_replaces_an_action_says_why(ruleset):
    """The result's `withheld` shows the reason; an older ruleset without one still loads (its title is
    shown instead), so that old records replay, but the project's rules always give one."""
    missing = [r.id for r in ruleset.data.rules
               if any(o.kind in ("remove", "replace") for o in r.outputs) and not r.reason]
    assert missing == []

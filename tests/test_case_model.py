"""The case model: strict types, bounds, unknown fields, normalisation and every contradiction."""

from __future__ import annotations

import copy

import pytest

import triage
from triage import CaseValidationError, parse_case


def problems_of(data: dict) -> list[triage.Problem]:
    with pytest.raises(CaseValidationError) as info:
        parse_case(data)
    return info.value.problems


def paths_of(data: dict) -> list[str]:
    return [p.path for p in problems_of(data)]


def test_empty_case_is_valid_and_history_defaults_to_unknown():
    case = parse_case({})
    assert case.patient.cancer.history == "unknown"
    assert case.patient.cancer.primary == "unknown"
    assert case.presentation.weakness.present is None


@pytest.mark.parametrize("data, path", [
    ({"presentation": {"weakness": {"present": "yes"}}}, "presentation.weakness.present"),
    ({"presentation": {"gait_difficulty": "true"}}, "presentation.gait_difficulty"),
    ({"presentation": {"gait_difficulty": 1}}, "presentation.gait_difficulty"),
    ({"patient": {"age_years": "67"}}, "patient.age_years"),
    ({"patient": {"age_years": 67.5}}, "patient.age_years"),
    ({"patient": {"age_years": True}}, "patient.age_years"),
    ({"labs": {"corrected_calcium_mmol_l": "3.1"}}, "labs.corrected_calcium_mmol_l"),
    ({"labs": {"corrected_calcium_mmol_l": True}}, "labs.corrected_calcium_mmol_l"),
    ({"labs": {"vitamin_d_nmol_l": float("nan")}}, "labs.vitamin_d_nmol_l"),
    ({"presentation": {"weakness": {"onset_hours": float("inf")}}}, "presentation.weakness.onset_hours"),
    ({"assessment": {"escc_grade": 3}}, "assessment.escc_grade"),
    ({"assessment": {"escc_grade": "4"}}, "assessment.escc_grade"),
    ({"patient": {"cancer": {"history": "active"}}}, "patient.cancer.history"),
    ({"patient": {"cancer": {"primary": "pancreas"}}}, "patient.cancer.primary"),
    ({"presentation": {"weakness": {"limbs": "both"}}}, "presentation.weakness.limbs"),
    ({"patient": {"treatments": {"bone_modifying_agent": "zoledronate"}}}, "patient.treatments.bone_modifying_agent"),
    ({"assessment": {"sins": {"total": "7"}}}, "assessment.sins.total"),
    ({"presentation": "weakness"}, "presentation"),
    ({"case_id": "x" * 65}, "case_id"),
    ({"case_id": 12}, "case_id"),
])
def test_wrong_types_and_values_are_rejected_with_their_path(data, path):
    assert paths_of(data) == [path]


@pytest.mark.parametrize("path, low, high", [
    ("patient.age_years", -1, 121),
    ("patient.cancer.metastasis_count", -1, None),
    ("patient.treatments.checkpoint_inhibitor_start_days_ago", -1, None),
    ("presentation.weakness.onset_hours", -0.1, None),
    ("presentation.non_ambulatory_hours", -0.1, None),
    ("presentation.sphincter_disturbance.post_void_residual_ml", -1, None),
    ("assessment.life_expectancy_months", -1, None),
    ("assessment.sins.total", -1, 19),
    ("labs.corrected_calcium_mmol_l", 0.49, 6.01),
    ("labs.vitamin_d_nmol_l", -0.1, 500.1),
    ("labs.creatinine_clearance_ml_min", -0.1, 250.1),
])
def test_numeric_bounds(path, low, high):
    def case_with(value):
        data: dict = {}
        node = data
        parts = path.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
        return data

    for bad in (low, high):
        if bad is None:
            continue
        problems = problems_of(case_with(bad))
        assert [p.path for p in problems] == [path]
        assert problems[0].code == "out_of_range"
        assert ("<=" in problems[0].reason) or (">=" in problems[0].reason)


def test_bound_values_themselves_are_accepted():
    parse_case({"patient": {"age_years": 0}, "labs": {"corrected_calcium_mmol_l": 0.5,
                                                      "creatinine_clearance_ml_min": 250}})
    parse_case({"patient": {"age_years": 120}, "labs": {"corrected_calcium_mmol_l": 6.0}})


@pytest.mark.parametrize("data, path, hint", [
    ({"presentation": {"weakness": {"progresive": True}}}, "presentation.weakness.progresive",
     "presentation.weakness.progressive"),
    ({"presentation": {"urinary_retention": True}}, "presentation.urinary_retention", None),
    ({"patient": {"cancer": {"histroy": "current"}}}, "patient.cancer.histroy", "patient.cancer.history"),
    ({"labs": {"calcium": 2.5}}, "labs.calcium", None),
    ({"symptoms": {}}, "symptoms", None),
])
def test_unknown_fields_are_rejected_never_ignored(data, path, hint):
    problems = problems_of(data)
    assert [p.path for p in problems] == [path]
    assert problems[0].code == "unknown_field"
    if hint:
        assert f"did you mean '{hint}'" in problems[0].reason


def test_every_problem_is_reported_not_only_the_first():
    assert sorted(paths_of({"patient": {"age_years": 200}, "presentation": {"weakness": {"present": "no"}}})) == \
        ["patient.age_years", "presentation.weakness.present"]


def test_a_non_object_case_is_rejected():
    for data in ([], "case", 3, None):
        problems = problems_of(data)  # type: ignore[arg-type]
        assert problems[0].path == ""


# ---------------------------------------------------------------- normalisation


@pytest.mark.parametrize("data, check", [
    ({"presentation": {"sphincter_disturbance": {"urinary_retention": True}}},
     lambda c: c.presentation.sphincter_disturbance.present is True),
    ({"presentation": {"paraesthesia": {"saddle_anaesthesia": True}}},
     lambda c: c.presentation.paraesthesia.present is True),
    ({"presentation": {"focal_vertebral_pain": {"mechanical": True}}},
     lambda c: c.presentation.focal_vertebral_pain.present is True),
    ({"presentation": {"sciatica": {"bilateral": True}}}, lambda c: c.presentation.sciatica.present is True),
    ({"presentation": {"weakness": {"progressive": True}}}, lambda c: c.presentation.weakness.present is True),
    ({"patient": {"cancer": {"spinal_metastases": True}}}, lambda c: c.patient.cancer.bone_metastases is True),
    ({"assessment": {"escc_grade": "2"}},
     lambda c: c.assessment.mri_compression is True and c.assessment.mri_performed is True),
    ({"assessment": {"escc_grade": "1b"}},
     lambda c: c.assessment.mri_compression is None and c.assessment.mri_performed is True),
    ({"assessment": {"mri_compression": False}}, lambda c: c.assessment.mri_performed is True),
    ({"presentation": {"sphincter_disturbance": {"post_void_residual_ml": 200}}},
     lambda c: c.presentation.sphincter_disturbance.urinary_retention is True
     and c.presentation.sphincter_disturbance.present is True),
    ({"presentation": {"non_ambulatory_hours": 0.5}}, lambda c: c.presentation.gait_difficulty is True),
    ({"patient": {"treatments": {"checkpoint_inhibitor_start_days_ago": 0}}},
     lambda c: c.patient.treatments.checkpoint_inhibitor is True),
])
def test_normalisation_implications(data, check):
    assert check(parse_case(data))


@pytest.mark.parametrize("data, check", [
    ({"presentation": {"sphincter_disturbance": {"post_void_residual_ml": 199}}},
     lambda c: c.presentation.sphincter_disturbance.urinary_retention is None
     and c.presentation.sphincter_disturbance.present is None),
    ({"presentation": {"non_ambulatory_hours": 0}}, lambda c: c.presentation.gait_difficulty is None),
    ({"presentation": {"weakness": {"progressive": False}}}, lambda c: c.presentation.weakness.present is None),
    ({"presentation": {"weakness": {"onset_hours": 3}}}, lambda c: c.presentation.weakness.present is None),
    ({"patient": {"cancer": {"spinal_metastases": False}}}, lambda c: c.patient.cancer.bone_metastases is None),
])
def test_what_implies_nothing(data, check):
    """False sub-findings, numbers below thresholds and non-tri-state fields imply nothing."""
    assert check(parse_case(data))


@pytest.mark.parametrize("data, paths", [
    ({"presentation": {"sphincter_disturbance": {"present": False, "urinary_retention": True}}},
     ["presentation.sphincter_disturbance.present", "presentation.sphincter_disturbance.urinary_retention"]),
    ({"presentation": {"paraesthesia": {"present": False, "saddle_anaesthesia": True}}},
     ["presentation.paraesthesia.present", "presentation.paraesthesia.saddle_anaesthesia"]),
    ({"presentation": {"weakness": {"present": False, "bilateral": True}}},
     ["presentation.weakness.present", "presentation.weakness.bilateral"]),
    ({"patient": {"cancer": {"bone_metastases": False, "spinal_metastases": True}}},
     ["patient.cancer.bone_metastases", "patient.cancer.spinal_metastases"]),
    ({"assessment": {"mri_performed": False, "mri_compression": True}},
     ["assessment.mri_performed", "assessment.mri_compression"]),
    ({"assessment": {"mri_performed": False, "mri_compression": False}},
     ["assessment.mri_performed", "assessment.mri_compression"]),
    ({"assessment": {"mri_performed": False, "escc_grade": "1a"}},
     ["assessment.mri_performed", "assessment.escc_grade"]),
    ({"assessment": {"mri_compression": False, "escc_grade": "3"}},
     ["assessment.mri_compression", "assessment.escc_grade"]),
    ({"presentation": {"sphincter_disturbance": {"urinary_retention": False, "post_void_residual_ml": 200}}},
     ["presentation.sphincter_disturbance.urinary_retention", "presentation.sphincter_disturbance.post_void_residual_ml"]),
    ({"presentation": {"sphincter_disturbance": {"present": False, "post_void_residual_ml": 450}}},
     ["presentation.sphincter_disturbance.present", "presentation.sphincter_disturbance.post_void_residual_ml"]),
    ({"presentation": {"gait_difficulty": False, "non_ambulatory_hours": 12}},
     ["presentation.gait_difficulty", "presentation.non_ambulatory_hours"]),
    ({"patient": {"treatments": {"checkpoint_inhibitor": False, "checkpoint_inhibitor_start_days_ago": 40}}},
     ["patient.treatments.checkpoint_inhibitor", "patient.treatments.checkpoint_inhibitor_start_days_ago"]),
    ({"presentation": {"ambulatory_status": "independent", "non_ambulatory_hours": 6}},
     ["presentation.ambulatory_status", "presentation.non_ambulatory_hours"]),
    ({"assessment": {"sins": {"total": 12, "location": "junctional", "pain": "mechanical", "bone_lesion": "lytic",
                              "alignment": "de_novo_deformity", "collapse": "under_50", "posterolateral": "unilateral"}}},
     ["assessment.sins.total", "13"]),
])
def test_every_contradiction_is_rejected_naming_both_fields(data, paths):
    problems = problems_of(data)
    text = " ".join(str(p) for p in problems)
    for path in paths:
        assert path in text
    assert any(p.code == "contradiction" for p in problems)


def test_some_sins_components_without_a_total_are_rejected():
    problems = problems_of({"assessment": {"sins": {"location": "mobile", "pain": "pain_free"}}})
    assert problems[0].path == "assessment.sins" and problems[0].code == "incomplete_sins"
    assert "bone_lesion" in problems[0].reason


def test_a_total_with_some_components_is_accepted_and_the_total_used():
    case = parse_case({"assessment": {"sins": {"total": 9, "location": "mobile"}}})
    assert case.assessment.sins.total == 9


def test_six_components_give_the_total():
    case = parse_case({"assessment": {"sins": {"location": "rigid", "pain": "pain_free", "bone_lesion": "blastic",
                                               "alignment": "normal", "collapse": "none", "posterolateral": "none"}}})
    assert case.assessment.sins.total == 0


def test_validation_does_not_change_the_callers_data():
    data = {"presentation": {"sphincter_disturbance": {"post_void_residual_ml": 300}}}
    before = copy.deepcopy(data)
    parse_case(data)
    assert data == before


def test_a_lone_surrogate_is_named_where_it_is():
    """Reviewer B (5 December): a key holding a lone surrogate (JSON "\\ud800") was reported at the object
    holding it, or at the empty path for the case itself, as "input should be a valid string"."""
    import json

    def problems(text: str) -> list[dict[str, str]]:
        with pytest.raises(triage.CaseValidationError) as caught:
            triage.validate_case(json.loads(text))
        return [p.as_dict() for p in caught.value.problems]

    top = problems('{"\\ud800": true}')
    assert [(p["path"], p["code"]) for p in top] == [("\\ud800", "unknown_field")]
    assert "lone surrogate" in top[0]["reason"]
    inner = problems('{"patient": {"age_years": 50, "x\\udfff": 1}}')
    assert [(p["path"], p["code"]) for p in inner] == [("patient.x\\udfff", "unknown_field")]
    value = problems('{"patient": {"cancer": {"history": "\\ud800"}}}')
    assert [(p["path"], p["code"]) for p in value] == [("patient.cancer.history", "string_unicode")]
    assert value[0]["reason"] == "must be valid Unicode text (it holds a lone surrogate)"


@pytest.mark.parametrize("case_id", ["has space", "dossier é-17", "", "x" * 64, "tab\there", "\u4e2d\u6587"])
def test_any_case_id_of_at_most_64_characters_is_echoed(case_id):
    """case-format 2.2 asks only "<= 64 chars" of case_id. This model used to refuse a space, an accent
    or an empty id (printable ASCII only): valid cases answered 422 (audit of 5 December)."""
    assert triage.evaluate({"case_id": case_id}).case_id == case_id


LARGE = {"patient.cancer.metastasis_count": 10**400, "patient.treatments.checkpoint_inhibitor_start_days_ago": 10**12,
         "presentation.weakness.onset_hours": 1e300, "presentation.sphincter_disturbance.post_void_residual_ml": 1e12,
         "presentation.non_ambulatory_hours": 1.7e308, "presentation.complete_paraplegia_hours": 5e9,
         "assessment.life_expectancy_months": 1e20}


def test_counts_and_durations_have_no_upper_bound_and_compare_as_themselves():
    """case-format 2.2 bounds counts and durations from below only (">= 0"). They used to be refused past
    1000, 36,500, 100,000, 5000 or 1200: valid cases answered 422. A number past the engine's limit reaches
    durable as the limit; every threshold lies within it, so the result is the one of a merely large number."""
    from triage._conditions import ENGINE_NUMBER_LIMIT

    def case(values: dict) -> dict:
        data: dict = {"patient": {"cancer": {"history": "current"}}, "presentation": {"weakness": {"present": True}},
                      "assessment": {"mri_performed": False}}
        for path, value in values.items():
            triage.set_path(data, path, value)
        return data

    huge = triage.evaluate(case(LARGE))
    merely_large = triage.evaluate(case({path: 5000 for path in LARGE}))
    assert huge.to_json() == merely_large.to_json()
    assert huge.urgency == "emergency"
    # and a rule cannot name a threshold the limit could reach
    assert all(abs(t) < ENGINE_NUMBER_LIMIT for t in _thresholds())


def _thresholds() -> list[float]:
    """Every number a rule file compares with (``gt``, ``ge``, ``lt``, ``le`` anywhere in rules/)."""
    import yaml

    found: list[float] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("gt", "ge", "lt", "le") and isinstance(value, (int, float)):
                    found.append(value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for path in sorted(triage.default_ruleset().path.glob("*.yaml")):
        walk(yaml.safe_load(path.read_text(encoding="utf-8")))
    assert len(found) > 10   # the ruleset compares numbers
    return found


def test_a_dict_subclass_cannot_hide_keys_from_the_validator():
    """In-process audit (5 December): the null-object rebuild read items(), pydantic the dict itself."""
    class View(dict):
        def items(self):  # type: ignore[override]
            return [(k, v) for k, v in super().items() if k != "patient"]

    with pytest.raises(CaseValidationError) as caught:
        triage.evaluate(View({"patient": {"age_years": 500}, "presentation": None}))
    assert [p.path for p in caught.value.problems] == ["patient.age_years"]


def test_a_case_object_made_without_validation_is_validated():
    from triage import Case

    with pytest.raises(CaseValidationError):
        triage.evaluate(Case.model_construct(patient={"age_years": "old"}))
    valid = triage.evaluate(Case.model_validate({"patient": {"age_years": 70}, "presentation": {"weakness": {"present": True}}}))
    assert valid.urgency == triage.evaluate({"patient": {"age_years": 70}, "presentation": {"weakness": {"present": True}}}).urgency

"""Every valid case gets a result: dense random cases, awkward numbers, durable-rules' parser."""

from __future__ import annotations

import json

import pytest

import triage
from triage._case import FIELDS, unknown_fields
from triage._random_cases import AWKWARD_NUMBERS, random_valid_cases
from triage._compile import number_text

NUMERIC = [path for path, spec in FIELDS.items() if spec.kind in ("number", "integer")]


@pytest.mark.parametrize("density", [0.5, 0.8, 0.95])
def test_dense_random_cases_always_get_a_full_result(ruleset, density):
    allowed = set(unknown_fields())
    for case in random_valid_cases(seed=int(density * 100), n=700, density=density):
        result = ruleset.evaluate(case)
        if result.urgency == "emergency":
            assert result.actions, json.dumps(case)
        assert {u.field for u in result.unknowns} <= allowed
        assert result.to_json() == ruleset.evaluate(case).to_json()


def test_the_case_of_issue_10_is_an_emergency(ruleset):
    case = {"presentation": {"paraesthesia": {"saddle_anaesthesia": True}, "sphincter_disturbance": {"present": True},
                             "sciatica": {"present": True}, "weakness": {"present": True}, "gait_difficulty": True},
            "patient": {"comorbidities": {"diabetes": True}, "treatments": {"checkpoint_inhibitor": True},
                        "cancer": {"history": "past"}}}
    result = ruleset.evaluate(case)
    assert result.urgency == "emergency"
    assert {"contact_mscc_coordinator_immediately", "mri_whole_spine_within_4h"} <= set(result.action_ids())
    assert {"cauda_equina_red_flags"} <= set(result.flag_ids())


@pytest.mark.parametrize("path", NUMERIC)
def test_every_numeric_field_takes_awkward_numbers(ruleset, path):
    spec = FIELDS[path]
    for value in AWKWARD_NUMBERS + (-1e-05, 1e16, 123456789012345678901234567890):
        if spec.kind == "integer":
            value = int(value) if abs(value) < 1e30 else value
        case: dict = {}
        node = case
        parts = path.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
        try:
            result = ruleset.evaluate(case)
        except triage.CaseValidationError as exc:
            assert exc.problems and exc.problems[0].path == path
        else:
            assert result.urgency in ("routine", "urgent", "emergency")


def test_a_tiny_decimal_compares_as_the_number_it_is(ruleset):
    base = {"patient": {"cancer": {"history": "current", "primary": "breast"}}}
    weak = dict(base, presentation={"weakness": {"present": True, "onset_hours": 1e-05}})
    assert "rapidly_progressive_deficit" in ruleset.evaluate(weak).flag_ids()  # 0.00001 h < 48 h
    walking_lost = dict(base, presentation={"non_ambulatory_hours": 1e-05})
    assert "rapidly_progressive_deficit" in ruleset.evaluate(walking_lost).flag_ids()


@pytest.mark.parametrize("value,text", [(1e-05, "0.00001"), (1e16, "10000000000000000.0"), (-0.0, "0.0"),
                                        (2.6, "2.6"), (3, "3"), (1.234e-20, "0.00000000000000000001234")])
def test_numbers_reach_durable_in_plain_decimal_form(value, text):
    assert number_text(value) == text

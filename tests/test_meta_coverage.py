"""The project's own vignette suite covers the ruleset: every rule fires, every id is produced.

A rule no vignette fires, or a vocabulary id no vignette produces, is untested clinical logic.
"""

from __future__ import annotations

import pytest

from triage._vignettes import replay


@pytest.fixture(scope="module")
def outcomes(ruleset, project_vignettes):
    assert any(project_vignettes.glob("*.yaml")), "tests/vignettes is empty"
    return replay([project_vignettes], ruleset)


def test_every_rule_is_fired_by_some_vignette(ruleset, outcomes):
    fired = {r.id for o in outcomes if o.result for r in o.result.fired_rules}
    assert sorted(r.id for r in ruleset.data.rules if r.id not in fired) == []


def test_every_action_and_flag_is_produced_by_some_vignette(ruleset, outcomes):
    produced = {i for o in outcomes if o.result for i in o.result.action_ids() + o.result.flag_ids()}
    missing = [i for i in [*ruleset.data.actions, *ruleset.data.flags] if i not in produced]
    assert missing == []


def test_every_urgency_and_rejection_is_exercised(outcomes):
    assert {o.result.urgency for o in outcomes if o.result} == {"emergency", "urgent", "routine"}
    assert any(o.vignette.expect.error for o in outcomes)


"""The scan, named once (vocabulary.yaml `scans`, triage/_scans.py): what a rule author writes and what it means.

A rule names a scan by its id; the table says which action each route is, the words a headline
uses and what holds every scan back. These tests pin the expansion (a rule written with scan words
means exactly the rule written out), the one-edit promise (a route or a timing changes in the table
and every rule follows) and the errors an author meets.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

import triage
from triage import RulesetError
from triage._ruleset import DEFAULT_RULES_DIR, expanded_rule_entries
from triage._scans import expand_rule, load_scan_table

HOLD = {"unless": {"concept": "mri_done"}, "reason": "A current MRI is recorded",
        "release": "New or worse findings since that MRI"}


def _rules_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "rules"
    shutil.copytree(DEFAULT_RULES_DIR, folder, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def _table():
    vocabulary = yaml.safe_load((DEFAULT_RULES_DIR / "vocabulary.yaml").read_text(encoding="utf-8"))
    return load_scan_table(vocabulary["scans"], "vocabulary.yaml")


def _edit_yaml(path: Path, change) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")


def _rule(**fields) -> dict:
    return {"id": "mscc.test_scan", "version": 1, "title": "t", "rationale": "r", "source": "test",
            "when": {"field": "assessment.vertebral_fracture", "is": True}, **fields}


def _add_rule(folder: Path, rule: dict) -> None:
    _edit_yaml(folder / "mscc.yaml", lambda data: data["rules"].append(rule))


def test_a_scan_among_the_actions_is_the_mri_held_by_the_table():
    out = expand_rule(_rule(actions=[{"scan": "whole_spine_within_24h", "when": {"concept": "pain"}}, "analgesia"]),
                      _table(), "mscc.yaml")
    assert out["actions"] == [{"id": "mri_whole_spine_within_24h", "when": {"concept": "pain"}, **HOLD}, "analgesia"]


def test_hold_false_leaves_the_scan_unheld():
    out = expand_rule(_rule(actions=[{"scan": "whole_spine_within_24h", "hold": False}]), _table(), "mscc.yaml")
    assert out["actions"] == [{"id": "mri_whole_spine_within_24h"}]


def test_a_scan_headline_is_one_variant_per_route_in_the_tables_order():
    table = _table()
    out = expand_rule(_rule(headline=[{"text": "Fracture: {scan}, now", "when": {"concept": "pain"},
                                       "scan": "lumbosacral_within_4h"}, {"text": "Fracture"}]),
                      table, "mscc.yaml")
    assert out["headline"] == [
        *({"text": f"Fracture: lumbosacral {word} within 4 hours, now", "when": {"concept": "pain"},
           "shows": [table.action("lumbosacral_within_4h", route)]} for route, word in
          ((r, spec.word) for r, spec in table.routes.items())),
        {"text": "Fracture"},
    ]
    assert out["headline"][0]["shows"] == ["mri_within_4h_cauda_equina"]   # the MRI first
    assert out["headline"][1]["text"] == "Fracture: lumbosacral CT within 4 hours, now"


def test_scan_conditions_removals_and_the_route_swap_are_written_out():
    out = expand_rule(_rule(when={"all": [{"scan": "whole_spine_within_4h"}, {"not": {"scan": "any"}}]},
                            removes_actions=[{"scan": "whole_spine_within_1_week"}, "bladder_scan"],
                            replaces={"scans": "ct"}), _table(), "mscc.yaml")
    assert out["when"] == {"all": [{"action": "mri_whole_spine_within_4h"}, {"not": {"any": [
        {"action": "mri_whole_spine_within_4h"}, {"action": "mri_within_4h_cauda_equina"},
        {"action": "mri_whole_spine_within_24h"}, {"action": "mri_whole_spine_within_1_week"}]}}]}
    assert out["removes_actions"] == ["mri_whole_spine_within_1_week", "bladder_scan"]
    assert out["replaces"] == {"mri_whole_spine_within_4h": "ct_whole_spine_within_4h",
                               "mri_within_4h_cauda_equina": "ct_lumbosacral_within_4h",
                               "mri_whole_spine_within_24h": "ct_whole_spine_within_24h",
                               "mri_whole_spine_within_1_week": "ct_whole_spine_within_1_week"}


def test_no_rule_of_the_shipped_ruleset_names_a_scan_action_by_hand():
    """Every MRI or CT a shipped rule asks for, tests, removes or swaps goes through the table (one edit)."""
    table = _table()
    scan_actions = table.actions()
    for file in ("mscc.yaml", "steroids.yaml", "treatment.yaml", "bone_health.yaml"):
        text = (DEFAULT_RULES_DIR / file).read_text(encoding="utf-8")
        named = sorted(a for a in scan_actions if a in text)
        assert not named, f"{file} names {named}: name the scan by its id (vocabulary.yaml, scans)"
    expanded = [entry for _, entry in expanded_rule_entries(DEFAULT_RULES_DIR)]
    assert any("mri_whole_spine_within_24h" in str(e.get("actions")) for e in expanded)   # and they do ask


def test_a_new_route_is_one_edit_of_the_table(tmp_path):
    """A third route (an open MRI, say) added to the table gives every scan headline a third variant and
    the route swap a new target: no rule is edited."""
    folder = _rules_copy(tmp_path)

    def add_route(vocabulary):
        for scan in vocabulary["scans"]["entries"]:
            vocabulary["actions"].append({"id": f"open_{scan['mri']}", "timing": "within_24h",
                                          "label": f"Open MRI instead of {scan['mri']}"})
            scan["open"] = f"open_{scan['mri']}"
        vocabulary["scans"]["routes"]["open"] = {"word": "open MRI", "order": "Open MRI of the {reach}"}
    _edit_yaml(folder / "vocabulary.yaml", add_route)
    before = triage.load_ruleset(DEFAULT_RULES_DIR).data.rule("mscc.cauda_equina").headlines
    after = triage.load_ruleset(folder).data.rule("mscc.cauda_equina").headlines
    # one more variant for each of its three scan variants (4-hour whole spine, with a possible
    # haematoma and without, and 4-hour lumbosacral), each given once per route
    assert len(after) == len(before) + 3
    assert "Cauda equina red flags: whole-spine open MRI within 4 hours, spinal surgeon now" in [h.text for h in after]


PAIN_WITH_CANCER = {"patient": {"cancer": {"history": "current", "primary": "lung"}},
                    "presentation": {"focal_vertebral_pain": {"present": True, "region": "thoracic", "band_like": False},
                                     "weakness": {"present": False}, "paraesthesia": {"present": False},
                                     "sphincter_disturbance": {"present": False}, "sciatica": {"present": False},
                                     "gait_difficulty": False}}


def test_a_timing_change_is_one_edit_of_the_table(tmp_path):
    """The week's scan made a 48-hour scan in the table alone: the rules that ask for it, the withdrawal
    that holds it for the 24-hour scan and the CT swap all follow."""
    folder = _rules_copy(tmp_path)

    def retime(vocabulary):
        for route in ("mri", "ct"):
            vocabulary["actions"].append({"id": f"{route}_whole_spine_within_48h", "timing": "within_48h",
                                          "label": f"Whole-spine {route.upper()} within 48 hours"})
        scan = next(s for s in vocabulary["scans"]["entries"] if s["id"] == "whole_spine_within_1_week")
        scan.update(mri="mri_whole_spine_within_48h", ct="ct_whole_spine_within_48h",
                    words="whole-spine {route} within 48 hours")
    _edit_yaml(folder / "vocabulary.yaml", retime)
    before = {a.id for a in triage.evaluate(PAIN_WITH_CANCER).actions}
    ruleset = triage.load_ruleset(folder)
    after = {a.id for a in triage.evaluate(PAIN_WITH_CANCER, ruleset=ruleset).actions}
    assert "mri_whole_spine_within_1_week" in before
    assert after == before - {"mri_whole_spine_within_1_week"} | {"mri_whole_spine_within_48h"}
    no_mri = {**PAIN_WITH_CANCER, "assessment": {"mri_contraindicated": True}}
    assert "ct_whole_spine_within_48h" in {a.id for a in triage.evaluate(no_mri, ruleset=ruleset).actions}
    unstable = {**PAIN_WITH_CANCER, "assessment": {"sins": {"total": 13}}}
    result = triage.evaluate(unstable, ruleset=ruleset)
    assert "mri_whole_spine_within_24h" in {a.id for a in result.actions}
    assert "mri_whole_spine_within_48h" in {w.id for w in result.withheld}   # one scan, the earliest


@pytest.mark.parametrize("rule, reason, hint", [
    (_rule(actions=[{"scan": "whole_spine_within_24"}]), "'whole_spine_within_24' is not a scan", "whole_spine_within_24h"),
    (_rule(actions=[{"scan": "whole_spine_within_24h", "unless": {"concept": "pain"}}]),
     "a scan takes only `when`", None),
    (_rule(actions=[{"scan": "whole_spine_within_24h", "hold": True}]), "only `hold: false`", None),
    (_rule(actions=["analgesia"], headline=[{"text": "Fracture: MRI", "scan": "whole_spine_within_24h"}]),
     "'{scan}'", None),
    (_rule(when={"scan": "anny"}, actions=["analgesia"]), "'anny' is not a scan", "any"),
    (_rule(when={"all": [{"scan": "any", "field": "x"}]}, actions=["analgesia"]), "stands alone", None),
    (_rule(when={"field": "assessment.mri_contraindicated", "is": True}, replaces={"scans": "mri"}, reason="r"),
     "'mri' is not a route a scan can be replaced by", None),
    (_rule(when={"field": "assessment.mri_contraindicated", "is": True}, removes_actions=[{"scan": "week"}], reason="r"),
     "'week' is not a scan", None),
])
def test_a_wrong_scan_word_is_refused_at_load_naming_the_rule(tmp_path, rule, reason, hint):
    folder = _rules_copy(tmp_path)
    _add_rule(folder, rule)
    with pytest.raises(RulesetError) as info:
        triage.load_ruleset(folder)
    assert info.value.file == "mscc.yaml" and info.value.rule_id == "mscc.test_scan"
    assert reason in info.value.reason, info.value.reason
    if hint:
        assert hint in (info.value.hint or ""), info.value.hint


@pytest.mark.parametrize("change, reason", [
    (lambda s: s["entries"][0].pop("ct"), "names no action for the route(s) ct"),
    (lambda s: s["entries"][0].update(ct="ct_whole_spine_within_4"), "'ct_whole_spine_within_4' is not an action"),
    (lambda s: s["entries"][0].update(words="whole-spine scan"), "'{route}'"),
    (lambda s: s["entries"].append(dict(s["entries"][0])), "listed twice"),
    (lambda s: s["entries"][0].update(id="any"), "cannot be called 'any'"),
    (lambda s: s["entries"][0].update(pet="x"), "'pet' is not a route"),
    (lambda s: s["entries"][0].pop("reach"), "entries.0.reach: Field required"),
    (lambda s: s["routes"]["ct"].update(order="CT of the spine"), "'{reach}'"),
    (lambda s: s["routes"].update(ct="CT"), "routes.ct"),
])
def test_a_broken_scans_table_is_refused_at_load(tmp_path, change, reason):
    folder = _rules_copy(tmp_path)
    _edit_yaml(folder / "vocabulary.yaml", lambda v: change(v["scans"]))
    with pytest.raises(RulesetError) as info:
        triage.load_ruleset(folder)
    assert info.value.file == "vocabulary.yaml" and reason in info.value.reason, info.value.reason

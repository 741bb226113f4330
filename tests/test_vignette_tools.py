"""Vignette suites: the pytest plugin, replay formats, coverage, ruleset diff, authoring commands."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from triage.cli import main

ROOT = Path(__file__).resolve().parents[1]
OWN = ROOT / "tests" / "vignettes"

WRONG = """
- id: W1
  title: "Right: suspected MSCC"
  case: {patient: {cancer: {history: current, primary: prostate}}, presentation: {weakness: {present: true}}}
  expect: {urgency: emergency, actions_include: [dexamethasone_16mg]}
- id: W2
  title: "Deliberately wrong"
  case: {patient: {cancer: {history: current, primary: prostate}}, presentation: {weakness: {present: true}}}
  expect: {urgency: emergency, actions_include: [mri_whole_spine_within_1_week], flags_include: [cauda_equina_red_flags]}
- id: W3
  title: "Rejected case"
  case: {patient: {age_years: 300}}
  expect: {error: true}
"""


def run(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    folder = tmp_path / "vignettes"
    folder.mkdir()
    (folder / "suite.yaml").write_text(WRONG)
    return folder


# ------------------------------------------------------------------------ pytest plugin

def test_plugin_runs_the_projects_own_suite(pytester):
    result = pytester.runpytest_subprocess(str(OWN), "-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) >= 140 and "failed" not in outcomes


def test_plugin_failure_lists_every_mismatch(pytester, suite):
    result = pytester.runpytest_subprocess(str(suite), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines([
        "*vignette W2: Deliberately wrong*",
        "*W2: expected action mri_whole_spine_within_1_week, missing*",
        "*W2: expected flag cauda_equina_red_flags, missing*",
    ])


def test_plugin_k_x_and_junitxml(pytester, suite, tmp_path):
    result = pytester.runpytest_subprocess(str(suite), "-p", "no:cacheprovider", "-k", "W1 or W3")
    result.assert_outcomes(passed=2, deselected=1)
    result = pytester.runpytest_subprocess(str(suite), "-p", "no:cacheprovider", "-x", "-k", "W2 or W3")
    result.assert_outcomes(failed=1)
    report = tmp_path / "junit.xml"
    pytester.runpytest_subprocess(str(suite), "-p", "no:cacheprovider", f"--junitxml={report}")
    root = ET.parse(report).getroot()
    suite_el = root if root.tag == "testsuite" else root.find("testsuite")
    assert suite_el.get("tests") == "3" and suite_el.get("failures") == "1"


def test_plugin_ruleset_option(pytester, suite, rules_copy):
    for name in ("steroids.yaml", "treatment.yaml"):
        path = rules_copy / name
        data = yaml.safe_load(path.read_text())
        data["rules"] = [r for r in data["rules"] if r["id"] != "steroids.high_dose_dexamethasone"]
        # the rules that named it now name mscc.suspected
        data = json.loads(json.dumps(data).replace("steroids.high_dose_dexamethasone", "mscc.suspected"))
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    result = pytester.runpytest_subprocess(str(suite), "-p", "no:cacheprovider", "--ruleset", str(rules_copy), "-k", "W1")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*W1: expected action dexamethasone_16mg, missing*"])


def test_plugin_ignores_yaml_outside_vignette_folders(pytester):
    pytester.makefile(".yaml", config="- id: X\n  expect: {urgency: routine}\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == 5  # nothing collected


def test_plugin_reports_a_broken_file_as_a_collection_error(pytester, tmp_path):
    folder = tmp_path / "vignettes"
    folder.mkdir()
    (folder / "bad.yaml").write_text("- id: B1\n  case: {}\n  expect: {urgncy: routine}\n")
    result = pytester.runpytest_subprocess(str(folder), "-p", "no:cacheprovider")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*bad.yaml*", "*urgncy*"])


# ------------------------------------------------------------------------ replay formats

def test_replay_junit_validates_and_counts(suite):
    out = run("replay", str(suite), "--format", "junit")
    assert out.exit_code == 1
    root = ET.fromstring(out.output.split("?>", 1)[1])
    tsuite = root.find("testsuite")
    assert tsuite.get("tests") == "3" and tsuite.get("failures") == "1"
    failing = [c for c in tsuite.findall("testcase") if c.find("failure") is not None]
    assert [c.get("name") for c in failing] == ["W2"]
    assert "mri_whole_spine_within_1_week, missing" in failing[0].find("failure").text


def test_replay_json(suite):
    out = run("replay", str(suite), "--format", "json")
    body = json.loads(out.output)
    assert body["passed"] == 2 and body["failed"] == 1
    assert [v["id"] for v in body["vignettes"] if not v["passed"]] == ["W2"]


# ------------------------------------------------------------------------ coverage

def test_coverage_reports_unfired_rules_and_unchecked_ids(suite):
    out = run("replay", str(suite), "--coverage", "-q")
    assert "rules fired" in out.output
    assert "rule never fired: bone.hypercalcaemia" in out.output
    assert "id never checked by an expectation: significant_hypercalcaemia" in out.output
    out = run("replay", str(suite / "suite.yaml"), "--fail-on-uncovered", "-q")
    assert out.exit_code == 1


def test_the_projects_suite_covers_every_rule():
    out = run("replay", str(OWN), "--coverage", "--fail-on-uncovered", "-q")
    assert out.exit_code == 0, out.output
    assert "rule never fired" not in out.output and "id never produced" not in out.output


# ------------------------------------------------------------------------ diff

def test_diff_lists_exactly_the_vignettes_that_change_and_marks_urgency_down(rules_copy, tmp_path):
    path = rules_copy / "bone_health.yaml"
    path.write_text(path.read_text().replace("corrected_calcium_mmol_l, ge: 3.5}", "corrected_calcium_mmol_l, ge: 3.6}"))
    suite = tmp_path / "calcium.yaml"
    suite.write_text("\n".join(
        f"- id: K{i}\n  title: calcium {value}\n  case: {{labs: {{corrected_calcium_mmol_l: {value}}}}}\n"
        f"  expect: {{urgency: {urgency}}}"
        for i, (value, urgency) in enumerate([(3.49, "urgent"), (3.5, "emergency"), (3.0, "urgent"),
                                             (4.1, "emergency")])))
    out = run("diff", str(ROOT / "rules"), str(rules_copy), str(suite))
    assert out.exit_code == 1
    lines = [line for line in out.output.splitlines() if line and not line.startswith(("old:", "    "))]
    # only the 3.5 mmol/L vignette moves: 3.49 and 3.0 stay urgent; 4.1 stays an emergency
    assert lines[0].startswith("!! URGENCY DOWN emergency -> urgent  K1")
    assert lines[1] == "1 vignettes changed, 1 in urgency, 1 down"


def test_diff_of_identical_rulesets_is_empty(rules_copy):
    out = run("diff", str(ROOT / "rules"), str(rules_copy), str(OWN))
    assert out.exit_code == 0 and out.output.strip().endswith("0 vignettes changed, 0 in urgency, 0 down")


# ------------------------------------------------------------------------ authoring

def test_vignette_new_records_todays_answer(tmp_path):
    case = tmp_path / "case.json"
    case.write_text(json.dumps({"patient": {"cancer": {"history": "current"}},
                                "presentation": {"focal_vertebral_pain": {"present": True}}}))
    out = run("vignette", "new", str(case), "--id", "H1", "--title", "Pain only", "-o", str(tmp_path / "vignettes.yaml"))
    assert out.exit_code == 0
    written = yaml.safe_load((tmp_path / "vignettes.yaml").read_text())
    assert written[0]["id"] == "H1" and written[0]["expect"]["urgency"] == "urgent"
    assert "contact_mscc_coordinator_within_24h" in written[0]["expect"]["actions_include"]
    assert run("replay", str(tmp_path / "vignettes.yaml")).exit_code == 0


def test_vignette_check_finds_unknown_keys_ids_and_duplicates(tmp_path):
    (tmp_path / "a.yaml").write_text("- id: A1\n  case: {}\n  expect: {urgency: routine, actions_include: [analgesics]}\n"
                                     "- id: A1\n  case: {}\n  expect: {urgency: routine}\n")
    (tmp_path / "b.yaml").write_text("- id: B1\n  case: {}\n  expect: {urgency: routine}\n  note: x\n")
    out = run("vignette", "check", str(tmp_path))
    assert out.exit_code == 2
    assert "A1: actions: 'analgesics' is not a known action; did you mean analgesia?" in out.output
    assert "A1: duplicate vignette id" in out.output
    assert "b.yaml" in out.output and "note" in out.output
    assert run("vignette", "check", str(OWN)).output.strip() == "ok"


# ------------------------------------------------------------------------ a hospital's own suite

def test_replay_reads_the_suites_vignette_ruleset_from_pyproject(tmp_path, rules_copy, monkeypatch):
    """A hospital's repository: its own ruleset named once in pyproject.toml, used by the CLI as by pytest."""
    monkeypatch.delenv("MSCC_TRIAGE_RULES", raising=False)
    repo = tmp_path / "hospital"
    (repo / "vignettes").mkdir(parents=True)
    rules_copy.rename(repo / "local-rules")
    path = repo / "local-rules" / "bone_health.yaml"
    path.write_text(path.read_text().replace("corrected_calcium_mmol_l, ge: 3.5}", "corrected_calcium_mmol_l, ge: 3.6}"))
    (repo / "pyproject.toml").write_text('[tool.pytest.ini_options]\nvignette_ruleset = "local-rules"\n')
    (repo / "vignettes" / "calcium.yaml").write_text(
        "- id: L1\n  title: calcium 3.55\n  case: {labs: {corrected_calcium_mmol_l: 3.55}}\n  expect: {urgency: urgent}\n")
    out = run("replay", str(repo / "vignettes"))
    assert out.exit_code == 0, out.output  # urgent under the local rule; an emergency under the shipped one
    assert "1 passed, 0 failed" in out.output
    assert run("replay", str(repo / "vignettes"), "--ruleset", str(ROOT / "rules")).exit_code == 1


def test_vocabulary_lists_every_action_and_flag(ruleset):
    out = run("vocabulary")
    assert out.exit_code == 0
    for item in [*ruleset.data.actions, *ruleset.data.flags]:
        assert f"  {item} " in out.output
    body = json.loads(run("vocabulary", "--format", "json").output)
    assert {a["id"] for a in body["actions"]} == set(ruleset.data.actions)


@pytest.mark.parametrize("typo,hint", [("dexamethasone_16", "dexamethasone_16mg"), ("mri_spine_24h", None),
                                       ("bladderscan", "bladder_scan")])
def test_did_you_mean_only_suggests_close_names(tmp_path, typo, hint):
    (tmp_path / "s.yaml").write_text(f"- id: T\n  case: {{}}\n  expect: {{urgency: routine, actions_exclude: [{typo}]}}\n")
    out = run("vignette", "check", str(tmp_path / "s.yaml"))
    assert out.exit_code == 2
    assert (f"did you mean {hint}?" in out.output) if hint else ("did you mean" not in out.output)

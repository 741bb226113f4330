"""The triage command line: evaluate, replay, rules; exit codes and messages a person understands."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

import triage
from triage.cli import main

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str, stdin: str | None = None):
    return CliRunner().invoke(main, list(args), input=stdin)


def test_evaluate_empty_case_is_routine_with_six_unknowns():
    out = run("evaluate", "-", stdin="{}")
    assert out.exit_code == 0, out.output
    result = json.loads(out.output)
    assert result["urgency"] == "routine"
    assert [u["field"] for u in result["unknowns"]] == [
        "presentation.focal_vertebral_pain.present", "presentation.weakness.present",
        "presentation.paraesthesia.present", "presentation.sphincter_disturbance.present",
        "presentation.sciatica.present", "presentation.gait_difficulty"]


def test_evaluate_json_and_yaml_files_agree(tmp_path):
    case = {"case_id": "c1", "patient": {"cancer": {"history": "current", "primary": "breast"}},
            "presentation": {"sphincter_disturbance": {"urinary_retention": True}}}
    (tmp_path / "c.json").write_text(json.dumps(case))
    (tmp_path / "c.yaml").write_text("case_id: c1\npatient: {cancer: {history: current, primary: breast}}\n"
                                     "presentation:\n  sphincter_disturbance: {urinary_retention: true}\n")
    a = run("evaluate", str(tmp_path / "c.json"), "--compact")
    b = run("evaluate", str(tmp_path / "c.yaml"), "--compact")
    assert a.exit_code == b.exit_code == 0
    assert a.output == b.output
    assert json.loads(a.output)["urgency"] == "emergency"
    assert json.loads(a.output)["case_id"] == "c1"


@pytest.mark.parametrize("text, expected", [
    ('{"presentation": {"weakness": {"present": "yes"}}}', "presentation.weakness.present: must be true, false or null"),
    ('{"patient": {"age_years": 121}}', "patient.age_years: must be <= 120"),
    ('{"presentation": {"weakness": {"progresive": true}}}', "did you mean 'presentation.weakness.progressive'?"),
    ('{"presentation": {"sphincter_disturbance": {"present": false, "urinary_retention": true}}}',
     "presentation.sphincter_disturbance.present: is false, but presentation.sphincter_disturbance.urinary_retention is true"),
    ("[1, 2]", "a case must be a JSON object"),
    ("{unclosed: [", "neither JSON nor YAML"),
])
def test_evaluate_invalid_case_exits_2_naming_the_field(text, expected):
    out = run("evaluate", "-", stdin=text)
    assert out.exit_code == 2
    assert "error: invalid case" in out.output
    assert expected in out.output
    assert "Traceback" not in out.output


def test_replay_reports_every_mismatch_and_exits_1(tmp_path):
    (tmp_path / "suite.yaml").write_text("""
- id: T1
  title: right
  case: {patient: {cancer: {history: current, primary: prostate}}, presentation: {weakness: {present: true}}}
  expect: {urgency: emergency, actions_include: [dexamethasone_16mg]}
- id: T2
  title: deliberately wrong
  case: {patient: {cancer: {history: current, primary: prostate}}, presentation: {weakness: {present: true}}}
  expect: {urgency: urgent, actions_include: [mri_whole_spine_within_1_week], flags_exclude: [no_such_flag]}
- id: T3
  title: must be rejected
  case: {patient: {age_years: 200}}
  expect: {error: true}
""")
    out = run("replay", str(tmp_path))
    assert out.exit_code == 1
    assert "PASS T1" in out.output and "PASS T3" in out.output and "FAIL T2" in out.output
    assert "T2: expected urgency urgent, got emergency" in out.output
    assert "T2: expected action mri_whole_spine_within_1_week, missing" in out.output
    assert "T2: flags: 'no_such_flag' is not a known flag" in out.output
    assert out.output.rstrip().endswith("2 passed, 1 failed")


def test_replay_rejects_a_malformed_vignette_file(tmp_path):
    (tmp_path / "bad.yaml").write_text("- id: X\n  case: {}\n  expect: {urgency: routine}\n  expected: {}\n")
    out = run("replay", str(tmp_path / "bad.yaml"))
    assert out.exit_code == 2
    assert "invalid vignette file" in out.output and "expected" in out.output


def test_rules_list_shows_every_rule_with_its_source():
    out = run("rules", "list")
    assert out.exit_code == 0
    assert out.output.count("\n") == len(triage.load_ruleset().data.rules)
    assert "mscc.suspected" in out.output and "NICE NG234" in out.output


def test_the_installed_console_script_runs():
    exe = ROOT / ".venv" / "bin" / "triage"
    command = [str(exe)] if exe.exists() else ["triage"]
    done = subprocess.run(command + ["evaluate", "-"], input="{}", capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["urgency"] == "routine"

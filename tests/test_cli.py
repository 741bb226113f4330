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


EMERGENCY = ('{"patient": {"cancer": {"history": "current", "primary": "prostate"}}, "presentation": '
             '{"weakness": {"present": true, "limbs": "legs", "bilateral": true, "progressive": true}}')


@pytest.mark.parametrize("name, text, key", [
    ("dup.json", EMERGENCY + ', "presentation": {}}', "presentation"),
    ("dup.yaml", "patient: {cancer: {history: current}}\npresentation: {weakness: {present: true}}\npresentation: {}\n",
     "presentation"),
    ("inner.json", '{"presentation": {"weakness": {"present": true, "present": false}}}', "present"),
])
def test_a_key_given_twice_is_refused_never_the_last_copy(tmp_path, name, text, key):
    """Audit of 5 December: the last copy won without a word, so this emergency came out routine
    (exit 0); POST /v1/triage refused the same body."""
    (tmp_path / name).write_text(text)
    out = run("evaluate", str(tmp_path / name))
    assert out.exit_code == 2 and f"'{key}' appears twice" in out.output and "Traceback" not in out.output
    assert '"urgency"' not in out.output


def test_unreadable_bytes_deep_nesting_and_an_empty_file_exit_2_naming_the_file(tmp_path):
    cases = {"bytes.json": b"\xff\xfe{}", "deep.json": b"[" * 5000 + b"]" * 5000, "deep.yaml": b"- " * 3000 + b"x",
             "empty.json": b"  \n"}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        out = run("evaluate", str(tmp_path / name))
        assert out.exit_code == 2 and name in out.output and "Traceback" not in out.output, (name, out.output)
    out = CliRunner().invoke(main, ["evaluate", "-"], input=b"\xff")
    assert out.exit_code == 2 and "not UTF-8" in out.output, out.output
    out = run("evaluate", "-", stdin="\ufeff{}")   # a byte-order mark is not an error
    assert out.exit_code == 0 and json.loads(out.output)["urgency"] == "routine"


def test_a_vignette_file_with_a_key_given_twice_is_named(tmp_path):
    """Audit of 5 December: a second 'actions_exclude: []' silently dropped the first, and the vignette
    passed though its exclusion should fail; our own core_unknowns.yaml had one too."""
    (tmp_path / "v.yaml").write_text(
        "- id: DUP-1\n  case: {patient: {cancer: {history: current}}, presentation: {weakness: {present: true}}}\n"
        "  expect:\n    urgency: emergency\n    actions_exclude: [contact_mscc_coordinator_immediately]\n"
        "    actions_exclude: []\n")
    (tmp_path / "v.json").write_text('[{"id": "DUP-2", "case": {}, "expect": {"urgency": "routine", '
                                     '"flags_exclude": ["x"], "flags_exclude": []}}]')
    for name, key in (("v.yaml", "actions_exclude"), ("v.json", "flags_exclude")):
        out = run("vignette", "check", str(tmp_path / name))   # the linter refuses the file
        assert out.exit_code == 2 and f"'{key}' appears twice" in out.output, out.output
        # replay refuses it too (second audit of 5 December: reading the last copy, with a warning, still
        # passed a result the first copy forbade; a replay is a safety gate)
        out = run("replay", str(tmp_path / name))
        assert out.exit_code == 2 and str(tmp_path / name) in out.output and f"'{key}' appears twice" in out.output
        assert "passed" not in out.output and "Traceback" not in out.output


def test_vignette_new_into_a_missing_folder_exits_2(tmp_path):
    (tmp_path / "c.json").write_text("{}")
    out = run("vignette", "new", str(tmp_path / "c.json"), "-o", str(tmp_path / "nowhere" / "v.yaml"))
    assert out.exit_code == 2 and "cannot be written" in out.output and "Traceback" not in out.output


@pytest.mark.parametrize("value", ['"true"', "0", '"off"', "1"])
def test_a_vignette_error_flag_is_a_boolean_never_a_string_or_a_number(tmp_path, value):
    """Audit of 5 December: 'error: "true"', 'error: 0' and 'error: "off"' were read as booleans."""
    (tmp_path / "v.yaml").write_text(f"- id: E-1\n  case: {{patient: {{age_years: 130}}}}\n  expect:\n    error: {value}\n")
    out = run("vignette", "check", str(tmp_path / "v.yaml"))
    assert out.exit_code == 2 and "error" in out.output and "bool" in out.output.lower(), out.output


def test_vignette_new_never_overwrites_a_file_without_force(tmp_path):
    (tmp_path / "c.json").write_text("{}")
    target = tmp_path / "v.yaml"
    target.write_text("# corrected by hand\n")
    out = run("vignette", "new", str(tmp_path / "c.json"), "-o", str(target))
    assert out.exit_code == 2 and "--force" in out.output and target.read_text() == "# corrected by hand\n"
    out = run("vignette", "new", str(tmp_path / "c.json"), "-o", str(target), "--force")
    assert out.exit_code == 0 and "NEW-1" in target.read_text()


ANTICOAGULATED_WEAKNESS = ("patient: {cancer: {history: current}, treatments: {anticoagulant: true}}\n"
                           "presentation: {weakness: {present: true, onset_hours: %s}}\n")


@pytest.mark.parametrize("written", ["1:30", "0:45", "1_5", "0x2", "0o1", "1:30.5"])
def test_a_yaml_number_yaml_1_1_would_misread_is_refused_by_name(tmp_path, written):
    """Audit of 6 December: YAML 1.1 read 'onset_hours: 1:30' as 90 hours (base 60), so an anticoagulated
    patient's weakness of an hour and a half lost the 4-hour scan; '0x2', '0o1', '1_5' were numbers too."""
    path = tmp_path / "case.yaml"
    path.write_text(ANTICOAGULATED_WEAKNESS % written)
    out = run("evaluate", str(path))
    assert out.exit_code == 2 and "presentation.weakness.onset_hours" in out.output, out.output


@pytest.mark.parametrize("written, hours", [("024", 24), ("023", 23), ("1.5", 1.5), ("+2", 2), (".5", 0.5),
                                            ("2.5e1", 25.0), ("1e1", 10.0)])
def test_yaml_numbers_are_read_as_yaml_1_2_reads_them(tmp_path, written, hours):
    path = tmp_path / "case.yaml"
    path.write_text(ANTICOAGULATED_WEAKNESS % written)
    """'024' is 24 hours (YAML 1.1: octal 20, inside the haematoma's 24 hours); '2.5e1' is 25."""
    result = json.loads(run("evaluate", str(path)).output)
    haematoma = "mri_whole_spine_within_4h" in {a["id"] for a in result["actions"]}
    assert haematoma == (hours < 24), result["actions"]


def test_a_json_file_that_is_not_json_is_refused_never_read_as_yaml(tmp_path):
    """'"onset_hours":1:30' in a .json file was read by the YAML fallback as 90 hours."""
    path = tmp_path / "case.json"
    path.write_text('{"presentation": {"weakness": {"present": true, "onset_hours": 1:30}}}')
    out = run("evaluate", str(path))
    assert out.exit_code == 2 and "is not JSON" in out.output and "case.json" in out.output, out.output

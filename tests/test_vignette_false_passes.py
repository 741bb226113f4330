"""A vignette replay must never pass without checking what its author wrote (outside audit, 5 December 2026).

Each test below is a way a hospital's suite passed when it should have failed, by the command line
(``triage replay``), by the pytest plugin, or both; each now fails, or is refused with the reason.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from triage.cli import main

ROOT = Path(__file__).resolve().parents[1]
# Suspected MSCC: dexamethasone is given, so this expectation is wrong and must fail.
WRONG = ("- id: {id}\n  title: wrong on purpose\n"
         "  case: {{patient: {{cancer: {{history: current, primary: prostate}}}}, presentation: {{weakness: {{present: true}}}}}}\n"
         "  expect: {{urgency: emergency, actions_exclude: [dexamethasone_16mg]}}\n")
RIGHT = ("- id: {id}\n  title: right\n"
         "  case: {{patient: {{cancer: {{history: current, primary: prostate}}}}, presentation: {{weakness: {{present: true}}}}}}\n"
         "  expect: {{urgency: emergency, actions_include: [dexamethasone_16mg]}}\n")


def run(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.mark.parametrize("name", ["hospital.YAML", "hospital.Yml", "hospital.JSON"])
def test_a_suffix_in_capitals_is_a_vignette_file_not_skipped(tmp_path, pytester, name):
    folder = tmp_path / "vignettes"
    folder.mkdir()
    (folder / "good.yaml").write_text(RIGHT.format(id="G1"))
    if name.endswith("JSON"):
        (folder / name).write_text('[{"id": "W1", "case": {"patient": {"cancer": {"history": "current", "primary": '
                                   '"prostate"}}, "presentation": {"weakness": {"present": true}}}, "expect": '
                                   '{"urgency": "emergency", "actions_exclude": ["dexamethasone_16mg"]}}]')
    else:
        (folder / name).write_text(WRONG.format(id="W1"))
    out = run("replay", str(folder))
    assert out.exit_code == 1 and "FAIL W1" in out.output and "1 passed, 1 failed" in out.output, out.output
    assert run("vignette", "check", str(folder)).exit_code == 0   # a well-formed file: read, not skipped
    result = pytester.runpytest_subprocess(str(folder), "-p", "no:cacheprovider")
    assert result.ret == 1
    result.assert_outcomes(passed=1, failed=1)


def test_a_vignettes_folder_in_capitals_is_collected_by_pytest(pytester):
    folder = pytester.path / "Vignettes"
    folder.mkdir()
    (folder / "suite.yaml").write_text(WRONG.format(id="W1"))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)


@pytest.mark.parametrize("content, says", [(None, "no vignette found"), ("[]\n", "no vignette found"),
                                           ("# nothing yet\n", "holds a list of vignettes")])
def test_a_replay_that_finds_no_vignette_is_not_a_pass(tmp_path, content, says):
    folder = tmp_path / "vignettes"
    folder.mkdir()
    if content is not None:
        (folder / "suite.yaml").write_text(content)
    out = run("replay", str(folder))
    assert out.exit_code == 2 and says in out.output and "passed" not in out.output, out.output
    out = run("vignette", "check", str(folder))
    assert out.exit_code == 2 and says in out.output, out.output


def test_error_true_takes_no_other_expectation(tmp_path):
    """It used to pass without checking the actions, flags and SINS category written beside it."""
    path = tmp_path / "v.yaml"
    path.write_text("- id: E1\n  case: {patient: {age_years: 300}}\n"
                    "  expect: {error: true, actions_include: [dexamethasone_16mg], sins_category: unstable}\n")
    for command in (("replay",), ("vignette", "check")):
        out = run(*command, str(path))
        assert out.exit_code == 2 and "takes no other expectation" in out.output, out.output
        assert "actions_include" in out.output and "sins_category" in out.output
    path.write_text("- id: E1\n  case: {patient: {age_years: 300}}\n  expect: {error: true, actions_include: []}\n")
    assert run("replay", str(path)).exit_code == 0   # an empty list checks nothing and asks nothing


def test_a_vignette_without_a_case_is_refused_never_the_empty_case(tmp_path):
    path = tmp_path / "v.yaml"
    path.write_text("- id: C1\n  title: the case was lost in a merge\n  expect: {urgency: routine}\n")
    out = run("replay", str(path))
    assert out.exit_code == 2 and "case" in out.output and "Field required" in out.output, out.output
    path.write_text("- id: C1\n  title: nothing known\n  case: {}\n  expect: {urgency: routine}\n")
    assert run("replay", str(path)).exit_code == 0   # the empty case, when written, is a case


def test_a_key_given_twice_refuses_the_file_in_pytest_too(pytester):
    """The second actions_exclude dropped the first, which the result breaks: it passed with a warning."""
    folder = pytester.path / "vignettes"
    folder.mkdir()
    (folder / "suite.yaml").write_text(
        "- id: D1\n  case: {patient: {cancer: {history: current, primary: prostate}}, "
        "presentation: {weakness: {present: true}}}\n"
        "  expect:\n    urgency: emergency\n    actions_exclude: [dexamethasone_16mg]\n"
        "    actions_exclude: [mri_whole_spine_within_1_week]\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == 2   # a collection error: nothing passes
    result.stdout.fnmatch_lines(["*suite.yaml*", "*'actions_exclude' appears twice*"])
    assert "Traceback" not in result.stdout.str() and "_vignettes.py" not in result.stdout.str()
    out = run("replay", str(folder))
    assert out.exit_code == 2 and "'actions_exclude' appears twice" in out.output


def test_pytest_names_a_broken_file_and_a_broken_ruleset_in_one_line_each(pytester, rules_copy):
    folder = pytester.path / "vignettes"
    folder.mkdir()
    (folder / "a.yaml").write_text("- id: B1\n  case: {}\n  expect: {urgncy: routine}\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == 2 and "urgncy" in result.stdout.str()
    assert "pytest_plugin.py" not in result.stdout.str() and "raise VignetteFormatError" not in result.stdout.str()
    (folder / "a.yaml").write_text(RIGHT.format(id="R1") + RIGHT.format(id="R2"))
    rules = rules_copy / "mscc.yaml"
    rules.write_text(rules.read_text() + "\n  - this is not a rule\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--ruleset", str(rules_copy))
    assert result.ret == 2
    output = result.stdout.str()
    assert "mscc.yaml" in output and output.count("a.yaml") <= 3, output   # one error, not one per vignette
    assert "CallInfo" not in output and "Traceback" not in output, output[:3000]


def test_an_id_given_in_two_files_is_refused_by_both_routes(tmp_path, pytester):
    folder = pytester.path / "vignettes"
    folder.mkdir()
    (folder / "a.yaml").write_text(RIGHT.format(id="D1"))
    (folder / "b.yaml").write_text(RIGHT.format(id="D1"))
    out = run("replay", str(folder))
    assert out.exit_code == 2 and "duplicate vignette id" in out.output
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == 2
    result.stdout.fnmatch_lines(["*D1: duplicate vignette id (also in*a.yaml)*"])


@pytest.mark.parametrize("written, read", [("NO", "NO"), ("010", "010"), ("1:30", "1:30"), ("2026-12-05", "2026-12-05"),
                                           ("true", "true"), ("8", "8")])
def test_an_id_is_read_as_written(tmp_path, written, read):
    """YAML 1.1 read 'NO' as false (reported as 0), '010' as 8 and '1:30' as 90, and refused a date."""
    path = tmp_path / "v.yaml"
    path.write_text(WRONG.format(id=written) + RIGHT.format(id="8" if written == "010" else "X"))
    out = run("replay", str(path))
    assert out.exit_code == 1 and f"FAIL {read} " in out.output, out.output


def test_a_title_is_read_as_written_and_an_empty_title_is_empty(tmp_path):
    path = tmp_path / "v.yaml"
    path.write_text("- id: T1\n  title: 2026\n  case: {}\n  expect: {urgency: routine}\n"
                    "- id: T2\n  title:\n  case: {}\n  expect: {urgency: routine}\n")
    out = run("replay", str(path))
    assert out.exit_code == 0 and "PASS T1  2026" in out.output, out.output


@pytest.mark.parametrize("bad", ['""', "1.5", "[a]"])
def test_an_empty_or_odd_id_is_refused(tmp_path, bad):
    path = tmp_path / "v.json"
    path.write_text(f'[{{"id": {bad}, "case": {{}}, "expect": {{"urgency": "routine"}}}}]')
    out = run("replay", str(path))
    assert out.exit_code == 2 and "id" in out.output, out.output


def test_json_true_is_not_the_id_1(tmp_path):
    path = tmp_path / "v.json"
    path.write_text('[{"id": true, "case": {}, "expect": {"urgency": "routine"}}]')
    assert run("replay", str(path)).exit_code == 2


WEAK_CALCIUM = "- id: L1\n  title: calcium 3.55\n  case: {labs: {corrected_calcium_mmol_l: 3.55}}\n  expect: {urgency: urgent}\n"


def _hospital(tmp_path: Path, rules_copy: Path, config: str, text: str) -> Path:
    """A hospital's repository whose local ruleset makes calcium 3.55 urgent (the shipped one: an emergency)."""
    repo = tmp_path / "hospital"
    (repo / "vignettes").mkdir(parents=True)
    rules_copy.rename(repo / "local-rules")
    path = repo / "local-rules" / "bone_health.yaml"
    path.write_text(path.read_text().replace("corrected_calcium_mmol_l, ge: 3.5}", "corrected_calcium_mmol_l, ge: 3.6}"))
    (repo / config).write_text(text)
    (repo / "vignettes" / "calcium.yaml").write_text(WEAK_CALCIUM)
    return repo


@pytest.mark.parametrize("config, text", [
    ("pytest.ini", "[pytest]\nvignette_ruleset = local-rules\n"),
    ("tox.ini", "[pytest]\nvignette_ruleset = local-rules\n"),
    ("setup.cfg", "[tool:pytest]\nvignette_ruleset = local-rules\n"),
    ("pyproject.toml", '[tool.pytest.ini_options]\nvignette_ruleset = "local-rules"\n'),
])
def test_the_command_line_reads_the_suites_ruleset_from_any_pytest_configuration(tmp_path, rules_copy, monkeypatch,
                                                                                   config, text):
    monkeypatch.delenv("MSCC_TRIAGE_RULES", raising=False)
    repo = _hospital(tmp_path, rules_copy, config, text)
    out = run("replay", str(repo / "vignettes"))
    assert out.exit_code == 0 and "1 passed, 0 failed" in out.output, out.output
    assert str(repo / "local-rules") in out.output   # the folder used is printed, not only its hash


def test_the_suites_ruleset_comes_before_the_environments_in_both_routes(tmp_path, rules_copy, monkeypatch, pytester):
    """A server's MSCC_TRIAGE_RULES used to replace, for the command line only, the ruleset the suite names."""
    repo = _hospital(tmp_path, rules_copy, "pyproject.toml", '[tool.pytest.ini_options]\nvignette_ruleset = "local-rules"\n')
    monkeypatch.setenv("MSCC_TRIAGE_RULES", str(ROOT / "rules"))
    out = run("replay", str(repo / "vignettes"))
    assert out.exit_code == 0 and "1 passed, 0 failed" in out.output, out.output
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--rootdir={repo}", "-c",
                                           str(repo / "pyproject.toml"), str(repo / "vignettes"))
    result.assert_outcomes(passed=1)

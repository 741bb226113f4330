"""The README works as written (house style 8; issue 23): every ```python block is executed, the
examples give the urgency their names say, and no user-facing text names a stale format version or a
file a clone lacks. Every shell command of the README is run in a fresh clone by tests/test_install.py
(or listed there with the reason it is not)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BIN = Path(sys.executable).parent


def test_python_examples_in_the_readme_run(capsys, tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "the README should show the Python API"
    monkeypatch.chdir(tmp_path)          # an example that writes a file writes it here
    for block in blocks:
        exec(compile(block, str(README), "exec"), {})
    out = capsys.readouterr().out
    assert "emergency" in out
    assert "['contact_mscc_coordinator_immediately', 'spinal_surgical_opinion_now', 'dexamethasone_16mg']" in out


@pytest.mark.parametrize("name, urgency", [("emergency.json", "emergency"), ("urgent.json", "urgent"),
                                           ("routine.json", "routine"), ("cauda_equina.yaml", "emergency")])
def test_the_examples_give_the_urgency_their_names_say(name, urgency):
    done = subprocess.run([str(BIN / "triage"), "evaluate", f"examples/{name}"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["urgency"] == urgency
    if name == "cauda_equina.yaml":
        assert "cauda_equina_red_flags" in [f["id"] for f in result["flags"]]


def test_the_invalid_example_is_refused_with_its_field():
    done = subprocess.run([str(BIN / "triage"), "evaluate", "examples/invalid.json"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "presentation.weakness.present" in done.stderr and "Traceback" not in done.stderr


def test_a_missing_folder_is_called_missing():
    done = subprocess.run([str(BIN / "triage"), "replay", "no-such-folder/vignettes"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "no such file or folder: no-such-folder/vignettes" in done.stderr
    assert "invalid vignette file" not in done.stderr


# What a user reads: the package, the service, its templates, the docs and the README.
_USER_FACING = [*ROOT.glob("triage/*.py"), *ROOT.glob("api/**/*.py"), *ROOT.glob("api/templates/*.html"),
                *ROOT.glob("docs/*.md"), ROOT / "README.md", ROOT / "rules" / "form.yaml"]
_STALE = re.compile(r"case-format (v1|v2|2\.1)\b|result-format (v1|v2|2)\b(?!\.)|case format (v1|2\.1)\b")


def test_no_user_facing_text_names_a_stale_format_version():
    found = []
    for path in _USER_FACING:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if _STALE.search(line) and "changed" not in line.lower() and "changes from" not in line.lower():
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "\n".join(found)


def test_nothing_points_at_a_file_a_clone_lacks():
    outside = re.compile(r"HOUSE_STYLE|spec/clinical-rules\.md|spec/case-format\.md|shared/spec")
    files = _USER_FACING + [*ROOT.glob("tests/vignettes/*.yaml"), *ROOT.glob("benchmarks/*.py")]
    found = [f"{p.relative_to(ROOT)}: {m.group(0)}" for p in files for m in outside.finditer(p.read_text(encoding="utf-8"))]
    assert not found, found


def test_the_ruleset_figures_in_the_readme_are_the_ruleset_s(ruleset):
    """Issue 22: the README's figures of the ruleset were checked by nothing; now a rule added fails here."""
    text = " ".join(README.read_text(encoding="utf-8").split())
    data, program = ruleset.data, ruleset.program
    assert f"The ruleset** is version {data.version}" in text
    figures = re.search(r"(\d+) rules, (\d+) concepts, (\d+) actions, (\d+) flags", text)
    assert figures, "the README states the ruleset's figures"
    assert tuple(map(int, figures.groups())) == (len(data.rules), len(data.concepts), len(data.actions),
                                                 len(data.flags))
    stages = re.search(r"the \S+ ruleset: (\d+) stages, (\d+) facts per evaluation", text)
    assert stages and tuple(map(int, stages.groups())) == (len(program.stages), program.n_chunks)

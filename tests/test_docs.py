"""The format documents in docs/ stay true to the code (they ship with the package's source, the spec does not).

- docs/case-format.md documents every leaf field of the case model, with its choices and bounds, and every
  normalisation implication; its examples are valid cases; the errors it quotes are the real ones.
- docs/result-format.md documents every key of a result; its example is a real result of its case.
- docs/vignette-format.md documents every key a vignette and its ``expect`` accept; its example file
  passes ``triage vignette check`` and ``triage replay``.
- Every JSON, YAML and TOML block of the three documents parses.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

import triage
from triage._case import FIELDS, GROUPS, Case, _implications, unknown_fields
from triage._result import ActionItem, FiredRule, FlagItem, Result, RulesetRef, SinsScore, Unknown
from triage._vignettes import Expect, Vignette

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
RULES = ROOT / "rules"
CASE_DOC = DOCS / "case-format.md"
RESULT_DOC = DOCS / "result-format.md"
VIGNETTE_DOC = DOCS / "vignette-format.md"
ALL_DOCS = [CASE_DOC, RESULT_DOC, VIGNETTE_DOC]


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _blocks(path: Path, language: str) -> list[str]:
    """The fenced code blocks of one language, in document order (an indented block is dedented)."""
    found = re.findall(rf"^( *)```{language}\n(.*?)^\1```", _text(path), re.S | re.M)
    return [textwrap.dedent(block) if indent else block for indent, block in found]


def _section(path: Path, heading: str) -> str:
    """The text from a ``## heading`` to the next heading of the same level."""
    text = _text(path)
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"{path.name} has no section '## {heading}'"
    return match.group(1)


def _table_rows(text: str) -> dict[str, str]:
    """Markdown table rows keyed by the backticked name in their first cell: {name: whole row}."""
    rows: dict[str, str] = {}
    for line in text.splitlines():
        match = re.match(r"^\|\s*`([^`]+)`\s*\|", line)
        if match:
            rows.setdefault(match.group(1), line)
    return rows


def _number(value: float) -> str:
    return f"{value:g}"


def _mentions_number(row: str, value: float) -> bool:
    """The row holds the number as a whole token (6 matches "6" or "6.0", never "60" or "0.6")."""
    return re.search(rf"(?<![\d.]){re.escape(_number(value))}(?:\.0)?(?![\d.])", row) is not None


def _leaf_paths(data: dict[str, Any], prefix: str = "") -> set[str]:
    paths: set[str] = set()
    for key, value in data.items():
        if isinstance(value, dict):
            paths |= _leaf_paths(value, f"{prefix}{key}.")
        else:
            paths.add(f"{prefix}{key}")
    return paths


def _triage_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "triage", *args], input=stdin, capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


# ---------------------------------------------------------------------------------------- every block parses

@pytest.mark.parametrize("doc", ALL_DOCS, ids=lambda p: p.name)
def test_every_json_yaml_and_toml_block_parses(doc: Path) -> None:
    for block in _blocks(doc, "json"):
        json.loads(block)
    for block in _blocks(doc, "yaml"):
        yaml.safe_load(block)
    for block in _blocks(doc, "toml"):
        tomllib.loads(block)


def test_the_documents_have_the_examples_the_tests_read() -> None:
    assert _blocks(CASE_DOC, "json") and _blocks(CASE_DOC, "yaml")
    assert len(_blocks(RESULT_DOC, "json")) >= 2
    assert _blocks(VIGNETTE_DOC, "yaml") and _blocks(VIGNETTE_DOC, "toml")


# ---------------------------------------------------------------------------------------- case-format.md

def test_every_case_field_has_a_row_in_the_field_tables() -> None:
    rows = _table_rows(_section(CASE_DOC, "Fields"))
    missing = [path for path in ["case_id", *FIELDS] if path not in rows]
    assert not missing, f"fields of the case model missing from docs/case-format.md: {missing}"
    unknown = [name for name in rows if name not in FIELDS and name != "case_id"]
    assert not unknown, f"docs/case-format.md documents fields the case model does not have: {unknown}"


def test_every_choice_and_bound_is_in_its_field_row() -> None:
    rows = _table_rows(_section(CASE_DOC, "Fields"))
    problems = []
    for path, spec in FIELDS.items():
        row = rows[path]
        if spec.kind == "tristate" and "tri-state" not in row:
            problems.append(f"{path}: not described as tri-state")
        if spec.kind == "enum":
            problems += [f"{path}: choice {v!r} not listed" for v in spec.values if f"`{v}`" not in row
                         and f'`"{v}"`' not in row]
        if spec.kind in ("integer", "number"):
            if spec.kind not in row:
                problems.append(f"{path}: not described as {spec.kind}")
            problems += [f"{path}: bound {_number(b)} not given" for b in (spec.minimum, spec.maximum)
                         if b is not None and not _mentions_number(row, b)]
    assert not problems, "\n".join(problems)


def test_the_numeric_bounds_table_matches_the_model() -> None:
    rows = _table_rows(_section(CASE_DOC, "Numeric bounds, in one place"))
    numeric = {p: s for p, s in FIELDS.items() if s.kind in ("integer", "number")}
    assert set(rows) == set(numeric)
    for path, spec in numeric.items():
        cells = [c.strip() for c in rows[path].strip("|").split("|")]
        assert cells[1] == spec.kind, path
        assert float(cells[2]) == spec.minimum, path
        assert (cells[3] == "none" if spec.maximum is None else float(cells[3]) == spec.maximum), path


def _every_implication() -> list[Any]:
    """A normalised-shape case in which the source of every implication holds at once."""
    d = Case().model_dump()
    pres = d["presentation"]
    for group in GROUPS:
        for name in pres[group]:
            if name != "present" and FIELDS[f"presentation.{group}.{name}"].kind == "tristate":
                pres[group][name] = True
    pres["sphincter_disturbance"]["post_void_residual_ml"] = 300
    pres["non_ambulatory_hours"] = 1
    pres["complete_paraplegia_hours"] = 1
    pres["ambulatory_status"] = "non_ambulatory"
    d["patient"]["cancer"]["spinal_metastases"] = True
    d["patient"]["cancer"]["bone_metastases"] = True
    d["patient"]["treatments"]["checkpoint_inhibitor_start_days_ago"] = 10
    d["assessment"].update(escc_grade="2", mri_compression=True, new_findings_since_mri=True)
    return _implications(d)


def test_every_normalisation_implication_is_documented() -> None:
    section = _section(CASE_DOC, "Normalisation")
    implications = _every_implication()
    assert len(implications) > 10
    problems = []
    for imp in implications:
        parts = imp.source.split(".")
        group_sub_finding = len(parts) == 3 and parts[1] in GROUPS and parts[2] != "present"
        if group_sub_finding:
            if "sub-finding" not in section:
                problems.append("the sub-finding -> present implication is not described")
        elif f"`{imp.source}`" not in section:
            problems.append(f"source {imp.source} is not in the Normalisation section")
        if not group_sub_finding and f"`{imp.target}`" not in section:
            problems.append(f"target {imp.target} (implied by {imp.source}) is not in the Normalisation section")
        for value in (imp.value, *imp.conflicts):
            shown = "true" if value is True else "false" if value is False else str(value)
            if f"`{shown}`" not in section:
                problems.append(f"value {shown} of {imp.source} -> {imp.target} is not in the Normalisation section")
    assert not problems, "\n".join(problems)


def test_the_case_documents_strictness() -> None:
    text = _text(CASE_DOC)
    assert "did you mean" in text
    assert "strict" in text.lower()
    assert '"yes"' in text


def test_the_complete_case_example_is_valid_and_complete() -> None:
    example = json.loads(_blocks(CASE_DOC, "json")[0])
    assert _leaf_paths(example) == {"case_id", *FIELDS}, "the complete example should show every field"
    result = triage.evaluate(example)  # raises CaseValidationError if the example is not a valid case
    assert result.urgency == "emergency"  # as the text under the example says


def test_the_yaml_case_example_gives_the_same_result() -> None:
    full = triage.evaluate(json.loads(_blocks(CASE_DOC, "json")[0]))
    short = triage.evaluate(yaml.safe_load(_blocks(CASE_DOC, "yaml")[0]))
    assert short.to_json() == full.to_json()


def test_the_quoted_case_errors_are_real() -> None:
    quoted = [b for b in _blocks(CASE_DOC, "text") if b.startswith("$ echo '")]
    assert len(quoted) >= 2
    for block in quoted:
        command, *expected = block.rstrip("\n").split("\n")
        match = re.fullmatch(r"\$ echo '(.*)' \| triage evaluate -", command)
        assert match, command
        run = _triage_cli("evaluate", "--ruleset", str(RULES), "-", stdin=match.group(1))
        assert run.returncode == 2, run.stderr
        assert run.stderr.rstrip("\n").split("\n") == expected


# ---------------------------------------------------------------------------------------- result-format.md

def test_every_result_key_is_documented() -> None:
    rows = _table_rows(_section(RESULT_DOC, "Keys"))
    assert list(rows)[: len(Result.model_fields)] == list(Result.model_fields), \
        "the key table of docs/result-format.md should list every key of a Result, in order"


@pytest.mark.parametrize("model", [ActionItem, FlagItem, Unknown, FiredRule, RulesetRef, SinsScore],
                         ids=lambda m: m.__name__)
def test_every_nested_result_key_is_documented(model: type) -> None:
    text = _text(RESULT_DOC)
    missing = [key for key in model.model_fields if f"`{key}`" not in text]
    assert not missing, f"{model.__name__} keys missing from docs/result-format.md: {missing}"


def test_unknowns_are_explained() -> None:
    section = _section(RESULT_DOC, "Keys")
    for words in ("could_raise_to", "would_add_flags", "critical flag"):
        assert words in section
    for heading in ("Determinism", "Auditing: `fired_rules` and `ruleset.sha256`"):
        _section(RESULT_DOC, heading)


def test_the_result_example_is_a_real_result_of_its_case() -> None:
    case_block, result_block = _blocks(RESULT_DOC, "json")[:2]
    case = json.loads(case_block)
    documented = Result.model_validate(json.loads(result_block))
    assert list(json.loads(result_block)) == list(Result.model_fields)
    now = triage.load_ruleset(RULES).evaluate(case)
    assert documented.case_id == case["case_id"] == now.case_id
    assert documented.urgency == now.urgency
    # The text under the example reads these unknowns; the labels and sources may be reworded later.
    assert [(u.field, u.could_raise_to, u.would_add_flags) for u in documented.unknowns] == \
        [(u.field, u.could_raise_to, u.would_add_flags) for u in now.unknowns]


def test_the_result_example_is_byte_identical_when_run_twice() -> None:
    case = json.loads(_blocks(RESULT_DOC, "json")[0])
    ruleset = triage.load_ruleset(RULES)
    assert ruleset.evaluate(case).to_json(indent=2) == ruleset.evaluate(case).to_json(indent=2)


# ---------------------------------------------------------------------------------------- vignette-format.md

def test_every_vignette_and_expect_key_is_documented() -> None:
    rows = _table_rows(_section(VIGNETTE_DOC, "The file"))
    missing = [key for key in [*Vignette.model_fields, *Expect.model_fields] if key not in rows]
    assert not missing, f"vignette keys missing from docs/vignette-format.md: {missing}"
    unknown = [key for key in rows if key not in Vignette.model_fields and key not in Expect.model_fields]
    assert not unknown, f"docs/vignette-format.md documents keys the loader refuses: {unknown}"


def test_the_vignette_doc_names_the_tools() -> None:
    text = _text(VIGNETTE_DOC)
    for words in ("triage replay", "triage vignette check", "triage vocabulary", "vignette_ruleset",
                  "vignette_dirs", "pytest"):
        assert words in text, words


def _vignette_example() -> str:
    lists = [b for b in _blocks(VIGNETTE_DOC, "yaml") if isinstance(yaml.safe_load(b), list)]
    assert lists, "docs/vignette-format.md should show a vignette file"
    return lists[0]


def test_the_vignette_example_passes_check_and_replay(tmp_path: Path) -> None:
    example = tmp_path / "ward.yaml"
    example.write_text(_vignette_example(), encoding="utf-8")
    check = _triage_cli("vignette", "check", "--ruleset", str(RULES), str(example))
    assert check.returncode == 0 and check.stdout.strip() == "ok", check.stdout + check.stderr
    replay = _triage_cli("replay", "--ruleset", str(RULES), str(example))
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert re.search(r"^\d+ passed, 0 failed$", replay.stdout, re.M), replay.stdout


def test_the_vignette_example_uses_every_expectation() -> None:
    used = {key for v in yaml.safe_load(_vignette_example()) for key in v["expect"]}
    assert used == set(Expect.model_fields)


def test_the_fields_an_unknown_may_name_are_as_documented() -> None:
    assert "assessment.new_findings_since_mri" in unknown_fields()
    assert all(f.startswith("presentation.") for f in unknown_fields()[:-1])

"""Vignettes (vignette-format v1): clinical cases with the answer a clinician expects, replayed.

A replay is a safety gate, so whatever could make it pass without checking what the author wrote is
refused or failed, never read in the most convenient way:

- an expectation that names an id the ruleset does not know fails (a typo in ``actions_exclude``
  would otherwise pass for ever without checking anything);
- a key given twice refuses the file (the second ``actions_exclude`` would drop the first);
- a vignette without ``case`` is refused (it would replay the empty case, always routine);
- ``error: true`` with any other expectation is refused (a rejected case has no actions to check);
- a file whose suffix is ``.YAML`` or ``.Json`` is read like ``.yaml`` (not skipped in silence);
- ``id``, ``title`` and ``source`` are read as written (YAML 1.1 would read ``id: NO`` as false and
  ``010`` as 8); an ``id`` is a non-empty string or a JSON integer;
- a replay that found no vignette at all is not a pass (the command line exits 2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Iterable, Literal, Optional, Union

import yaml
from pydantic import (BaseModel, ConfigDict, StrictBool, StrictInt, StrictStr, StringConstraints, ValidationError,
                      model_validator)

from ._case import FIELDS, unknown_fields
from ._conditions import URGENCY_RANK
from ._hints import closest
from ._errors import CaseValidationError, Problem, VignetteFormatError
from ._result import Result
from ._strict_input import decode, loads_json, loads_yaml
from ._triage import Ruleset

VIGNETTE_SUFFIXES = (".yaml", ".yml", ".json")   # compared in lower case: "suite.YAML" is a vignette file
_TEXT_KEYS = frozenset({"id", "title", "source"})   # read as written, never resolved by YAML 1.1


NO_VIGNETTE = ("no vignette found: a suite is .yaml, .yml or .json files each holding a list of vignettes "
               "(a replay that checks nothing is not a pass)")


def is_vignette_file(path: Path) -> bool:
    return path.suffix.lower() in VIGNETTE_SUFFIXES


class Expect(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    urgency: Optional[Literal["emergency", "urgent", "routine"]] = None
    error: Optional[StrictBool] = None   # "true", 0 or "off" is refused, never read as a boolean
    actions_include: list[str] = []
    actions_exclude: list[str] = []
    flags_include: list[str] = []
    flags_exclude: list[str] = []
    unknowns_include: list[str] = []
    unknowns_exclude: list[str] = []
    withheld_include: list[str] = []     # actions the result must name as held back (with a reason)
    withheld_exclude: list[str] = []
    sins_category: Optional[Literal["stable", "potentially_unstable", "unstable"]] = None

    @model_validator(mode="after")
    def _urgency_or_error(self) -> "Expect":
        if self.error is True:
            if self.urgency is not None:
                raise ValueError("give either 'urgency' or 'error: true', not both")
            others = sorted(k for k in self.model_fields_set if k != "error" and getattr(self, k) not in (None, []))
            if others:   # a rejected case has no actions, flags, unknowns or score: these would check nothing
                raise ValueError(f"'error: true' takes no other expectation (a rejected case has no result to "
                                 f"check): remove {', '.join(others)}")
        elif self.urgency is None:
            raise ValueError("'urgency' is required (or 'error: true' for a case that must be rejected)")
        return self


class Vignette(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Union[Annotated[StrictStr, StringConstraints(min_length=1)], StrictInt]
    title: str = ""
    source: str = ""
    case: Any   # required: a vignette that lost its case must not replay the empty case (always routine)
    expect: Expect

    @property
    def key(self) -> str:
        return str(self.id)


@dataclass
class VignetteOutcome:
    vignette: Vignette
    file: str
    mismatches: list[str]
    result: Optional[Result] = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.mismatches


def vignette_files(paths: Iterable[str | Path]) -> list[Path]:
    """Vignette files named directly, or found (recursively, sorted) in the folders named."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if is_vignette_file(p) and p.is_file()))
        elif path.is_file():
            found.append(path)
        else:
            raise VignetteFormatError(str(path), [Problem("", "no such file or folder", "not_found")])
    return found


def load_vignette_file(path: Path) -> list[Vignette]:
    """Read one vignette file (a YAML or JSON list); every problem is reported with its place."""
    try:
        text = decode(path.read_bytes())
        data = loads_json(text) if path.suffix.lower() == ".json" else loads_yaml(text, _TEXT_KEYS)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise VignetteFormatError(str(path), [Problem("", f"cannot be read: {exc}", "unreadable")]) from None
    if not isinstance(data, list):
        raise VignetteFormatError(str(path), [Problem("", "a vignette file holds a list of vignettes", "invalid_type")])
    vignettes: list[Vignette] = []
    problems: list[Problem] = []
    for index, item in enumerate(data):
        label = f"[{index}]" + (f" ({item.get('id')})" if isinstance(item, dict) and "id" in item else "")
        try:
            vignettes.append(Vignette.model_validate(item))
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                loc = ".".join(str(p) for p in err["loc"])
                reason = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
                problems.append(Problem(f"{label}.{loc}" if loc else label, reason, err["type"]))
    if problems:
        raise VignetteFormatError(str(path), problems)
    return vignettes


def load_suite(paths: Iterable[str | Path]) -> list[tuple[str, Vignette]]:
    """Every vignette of the files and folders named, with its file; ids must be unique in the suite, and
    a suite with no vignette at all is refused (a replay of nothing would pass)."""
    paths = list(paths)
    suite: list[tuple[str, Vignette]] = []
    seen: dict[str, str] = {}
    for path in vignette_files(paths):
        for vignette in load_vignette_file(path):
            if vignette.key in seen:
                raise VignetteFormatError(str(path), [Problem(
                    vignette.key, f"duplicate vignette id (also in {seen[vignette.key]})", "duplicate_id")])
            seen[vignette.key] = str(path)
            suite.append((str(path), vignette))
    if not suite:
        raise VignetteFormatError(", ".join(str(p) for p in paths), [Problem("", NO_VIGNETTE, "empty_suite")])
    return suite


def _unknown_ids(kind: str, ids: list[str], known: list[str], key: str) -> list[str]:
    out = []
    for item in ids:
        if item not in known:
            close = closest(item, known)
            hint = f"; did you mean {close}?" if close else ""
            out.append(f"{key}: '{item}' is not a known {kind}{hint}")
    return out


def expectation_problems(vignette: Vignette, ruleset: Ruleset) -> list[str]:
    """Ids in the expectations that the ruleset does not know (each would check nothing)."""
    e = vignette.expect
    actions, flags = list(ruleset.data.actions), list(ruleset.data.flags)
    fields = unknown_fields()
    # An exclusion may name any field of the case (a field that is never asked is a fair thing to
    # check); an inclusion must name a field that can be asked, or it could never pass.
    return (_unknown_ids("action", e.actions_include + e.actions_exclude, actions, "actions")
            + _unknown_ids("flag", e.flags_include + e.flags_exclude, flags, "flags")
            + _unknown_ids("field of the unknowns", e.unknowns_include, fields, "unknowns")
            + _unknown_ids("field of the case", e.unknowns_exclude, list(FIELDS), "unknowns")
            + _unknown_ids("action", e.withheld_include + e.withheld_exclude, actions, "withheld"))


def check(vignette: Vignette, ruleset: Ruleset, file: str = "") -> VignetteOutcome:
    """Evaluate a vignette's case and compare every expectation; every mismatch is spelled out."""
    expect = vignette.expect
    mismatches = expectation_problems(vignette, ruleset)
    try:
        result = ruleset.evaluate(vignette.case)
    except CaseValidationError as exc:
        if not expect.error:
            mismatches.append("the case was rejected: " + "; ".join(str(p) for p in exc.problems))
        return VignetteOutcome(vignette, file, mismatches, None, exc.problems)
    if expect.error:
        mismatches.append(f"expected the case to be rejected, but it was triaged as {result.urgency}")
        return VignetteOutcome(vignette, file, mismatches, result)

    if result.urgency != expect.urgency:
        why = ", ".join(r.id for r in result.fired_rules) or "no rule"
        mismatches.append(f"expected urgency {expect.urgency}, got {result.urgency} (fired: {why})")
    produced = (
        ("action", {a.id: f"because {', '.join(a.because)}" for a in result.actions},
         expect.actions_include, expect.actions_exclude),
        ("flag", {f.id: f"because {', '.join(f.because)}" for f in result.flags},
         expect.flags_include, expect.flags_exclude),
        ("unknown", {u.field: f"could raise to {u.could_raise_to}" for u in result.unknowns},
         expect.unknowns_include, expect.unknowns_exclude),
        ("withheld action", {w.id: "held by " + ", ".join(f"{h.rule}: {h.reason}" for h in w.held_by)
                             for w in result.withheld},
         expect.withheld_include, expect.withheld_exclude),
    )
    for kind, found, include, exclude in produced:
        mismatches += [f"expected {kind} {item}, missing" for item in include if item not in found]
        mismatches += [f"{kind} {item} must not appear, but it does ({found[item]})" for item in exclude if item in found]
    if expect.sins_category is not None:
        got = result.scores.sins.category if result.scores.sins else None
        if got != expect.sins_category:
            mismatches.append(f"expected SINS category {expect.sins_category}, got {got or 'no SINS score'}")
    return VignetteOutcome(vignette, file, mismatches, result)


def replay(paths: Iterable[str | Path], ruleset: Ruleset) -> list[VignetteOutcome]:
    """Check every vignette of a suite, in file order."""
    return [check(vignette, ruleset, file) for file, vignette in load_suite(paths)]


# ------------------------------------------------------------------------------------ coverage

@dataclass
class Coverage:
    """What a suite exercises: rules fired, vocabulary ids produced and ids its expectations check."""

    rules_fired: list[str]
    rules_unfired: list[str]
    ids_produced: list[str]
    ids_never_produced: list[str]
    ids_checked: list[str]
    ids_never_checked: list[str]

    @property
    def complete(self) -> bool:
        return not self.rules_unfired

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def coverage(outcomes: list[VignetteOutcome], ruleset: Ruleset) -> Coverage:
    fired = {r.id for o in outcomes if o.result for r in o.result.fired_rules}
    produced = {i for o in outcomes if o.result for i in o.result.action_ids() + o.result.flag_ids()}
    checked: set[str] = set()
    for o in outcomes:
        e = o.vignette.expect
        checked.update(e.actions_include + e.actions_exclude + e.flags_include + e.flags_exclude)
    vocabulary = [*ruleset.data.actions, *ruleset.data.flags]
    rules = [r.id for r in ruleset.data.rules]
    return Coverage(
        rules_fired=[r for r in rules if r in fired], rules_unfired=[r for r in rules if r not in fired],
        ids_produced=[i for i in vocabulary if i in produced], ids_never_produced=[i for i in vocabulary if i not in produced],
        ids_checked=[i for i in vocabulary if i in checked], ids_never_checked=[i for i in vocabulary if i not in checked],
    )


# ------------------------------------------------------------------------------------ diff

@dataclass
class Change:
    vignette: Vignette
    file: str
    old_urgency: Optional[str]      # None: the case was rejected
    new_urgency: Optional[str]
    actions_added: list[str]
    actions_removed: list[str]
    flags_added: list[str]
    flags_removed: list[str]
    withheld_added: list[str] = field(default_factory=list)
    withheld_removed: list[str] = field(default_factory=list)

    @property
    def urgency_changed(self) -> bool:
        return self.old_urgency != self.new_urgency

    @property
    def urgency_down(self) -> bool:
        return (self.old_urgency is not None and self.new_urgency is not None
                and URGENCY_RANK[self.new_urgency] < URGENCY_RANK[self.old_urgency])


def diff(paths: Iterable[str | Path], old: Ruleset, new: Ruleset) -> list[Change]:
    """Every vignette whose urgency, actions or flags differ between two rulesets; urgency changes first."""
    changes: list[Change] = []
    for file, vignette in load_suite(paths):
        before, after = check(vignette, old, file).result, check(vignette, new, file).result
        a_old = set(before.action_ids()) if before else set()
        a_new = set(after.action_ids()) if after else set()
        f_old = set(before.flag_ids()) if before else set()
        f_new = set(after.flag_ids()) if after else set()
        w_old = {(w.id, h.reason) for w in before.withheld for h in w.held_by} if before else set()
        w_new = {(w.id, h.reason) for w in after.withheld for h in w.held_by} if after else set()
        change = Change(vignette, file, before.urgency if before else None, after.urgency if after else None,
                        sorted(a_new - a_old), sorted(a_old - a_new), sorted(f_new - f_old), sorted(f_old - f_new),
                        [f"{a} ({why})" for a, why in sorted(w_new - w_old)],
                        [f"{a} ({why})" for a, why in sorted(w_old - w_new)])
        if change.urgency_changed or change.actions_added or change.actions_removed or change.flags_added \
                or change.flags_removed or change.withheld_added or change.withheld_removed:
            changes.append(change)
    changes.sort(key=lambda c: (not c.urgency_down, not c.urgency_changed))
    return changes


# ------------------------------------------------------------------------------------ JUnit

def junit_xml(outcomes: list[VignetteOutcome], suite_name: str = "vignettes") -> str:
    """JUnit XML: one testcase per vignette (classname = file, name = id), failures with every mismatch."""
    import xml.etree.ElementTree as ET

    failures = sum(not o.passed for o in outcomes)
    root = ET.Element("testsuites", tests=str(len(outcomes)), failures=str(failures), errors="0")
    suite = ET.SubElement(root, "testsuite", name=suite_name, tests=str(len(outcomes)), failures=str(failures),
                          errors="0", skipped="0")
    for o in outcomes:
        case = ET.SubElement(suite, "testcase", classname=o.file, name=o.vignette.key)
        if o.vignette.title:
            ET.SubElement(case, "properties").append(ET.Element("property", name="title", value=o.vignette.title))
        if not o.passed:
            failure = ET.SubElement(case, "failure", message=o.mismatches[0])
            failure.text = "\n".join(o.mismatches)
    return ET.tostring(root, encoding="unicode", xml_declaration=True)


# ------------------------------------------------------------------------------------ authoring

def skeleton(case: Any, ruleset: Ruleset, vignette_id: str, title: str) -> list[dict[str, Any]]:
    """A vignette recording today's answer for a case, for an author to correct where it is wrong."""
    try:
        result = ruleset.evaluate(case)
    except CaseValidationError:
        return [{"id": vignette_id, "title": title, "source": "", "case": case, "expect": {"error": True}}]
    expect: dict[str, Any] = {"urgency": result.urgency}
    if result.actions:
        expect["actions_include"] = result.action_ids()
    if result.flags:
        expect["flags_include"] = result.flag_ids()
    if result.unknowns:
        expect["unknowns_include"] = [u.field for u in result.unknowns]
    if result.withheld:
        expect["withheld_include"] = result.withheld_ids()
    if result.scores.sins:
        expect["sins_category"] = result.scores.sins.category
    return [{"id": vignette_id, "title": title, "source": "", "case": case, "expect": expect}]


def lint(paths: Iterable[str | Path], ruleset: Ruleset) -> list[str]:
    """Problems of vignette files without running them: format, duplicate ids, unknown ids in expectations."""
    found: list[str] = []
    seen: dict[str, str] = {}
    paths = list(paths)
    try:
        files = vignette_files(paths)
    except VignetteFormatError as exc:
        return [str(exc)]
    count = 0
    for path in files:
        try:
            vignettes = load_vignette_file(path)
        except VignetteFormatError as exc:
            found += [f"{path}: {p}" for p in exc.problems]
            continue
        count += len(vignettes)
        for v in vignettes:
            if v.key in seen:
                found.append(f"{path}: {v.key}: duplicate vignette id (also in {seen[v.key]})")
            seen.setdefault(v.key, str(path))
            found += [f"{path}: {v.key}: {p}" for p in expectation_problems(v, ruleset)]
    if count == 0 and not found:
        found.append(f"{', '.join(str(p) for p in paths)}: {NO_VIGNETTE}")
    return found

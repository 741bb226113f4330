"""Loading a ruleset folder: rule files are data, checked completely here, at load time.

A ruleset folder holds ``ruleset.yaml`` (name, version, the files in order, headlines, disclaimer),
a vocabulary file (every action and flag with its label and timing or severity), a concepts file
(derived concepts, each a condition) and rule files. Every field a rule names must exist in the case
model with an operator that fits its type; every concept, rule, action and flag it names must exist.
Any problem raises :class:`RulesetError` with the file, the rule id, the reason and a hint.

The ruleset's ``sha256`` is reproducible from a shell, over every regular file of the folder::

    cd rules && LC_ALL=C sha256sum * | sha256sum
"""

from __future__ import annotations

import hashlib
import importlib.resources
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ._conditions import (
    URGENCIES, All, ConceptRef, Condition, ConditionError, Fired, HasAction, Not, parse_condition, references,
)
from ._hints import did_you_mean
from ._errors import RulesetError
from ._scans import ScanTable, expand_rule, load_scan_table
from .settings import load_settings

TIMINGS = ("immediately", "within_4h", "within_24h", "within_48h", "within_1_week", "routine")
SEVERITIES = ("critical", "warning", "info")


def _default_rules_dir() -> Path:
    """The shipped ruleset: inside the installed package (``triage/rules`` in the wheel), or the
    repository's top-level ``rules/`` in a checkout (editable install), its one source."""
    packaged = Path(str(importlib.resources.files("triage"))) / "rules"
    if (packaged / "ruleset.yaml").is_file():
        return packaged
    return Path(__file__).resolve().parent.parent / "rules"


DEFAULT_RULES_DIR = _default_rules_dir()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _ManifestFile(_Strict):
    name: str
    version: str
    description: str = ""
    vocabulary: str
    concepts: str
    rule_files: list[str] = Field(min_length=1)
    headlines: dict[Literal["emergency", "urgent", "routine"], str]
    disclaimer: str = Field(min_length=1)

    @field_validator("headlines")
    @classmethod
    def _all_levels(cls, value: dict[str, str]) -> dict[str, str]:
        missing = [u for u in URGENCIES if u not in value]
        if missing:
            raise ValueError(f"a default headline is needed for {', '.join(missing)}")
        for level, text in value.items():
            if len(text) > 140:
                raise ValueError(f"the {level} headline is {len(text)} characters; at most 140")
        return value


class ActionDef(_Strict):
    id: str
    label: str = Field(min_length=1)
    timing: Literal["immediately", "within_4h", "within_24h", "within_48h", "within_1_week", "routine"]
    # An imaging action of the unknowns: a finding that, set true, would add it is asked (result-format 2.2).
    # Set from the scans table (`unknowns: true` on a scan marks each of its routes), not written here.
    imaging: bool = False


class FlagDef(_Strict):
    id: str
    label: str = Field(min_length=1)
    severity: Literal["critical", "warning", "info"]


class _VocabularyFile(_Strict):
    actions: list[ActionDef]
    flags: list[FlagDef]
    scans: Any = None   # the scan, named once (triage/_scans.py); checked by load_scan_table
    # Ids of actions and flags in the specification's *vocabulary order*, which the unknowns'
    # would_add_flags and would_add_actions follow (clinical-rules 2.2, Vocabulary); an id not listed
    # comes after the listed ones, in this file's order.
    unknowns_order: list[str] = []


class _ConceptEntry(_Strict):
    id: str
    meaning: str = Field(min_length=1)
    when: Any


class _ConceptsFile(_Strict):
    concepts: list[_ConceptEntry]


class _OutputEntry(_Strict):
    id: str
    when: Any = None
    unless: Any = None
    # An action's `unless` with a reason is a gate: when it stops the action, the result names the
    # action among those withheld, with this reason (and what would release it).
    reason: Optional[str] = Field(None, min_length=1, max_length=160)
    release: Optional[str] = Field(None, min_length=1, max_length=160)


class _GateEntry(_Strict):
    """A safety gate of a rule: its trigger (`when`) holds, but this stops it; its actions are withheld."""

    when: Any
    reason: str = Field(min_length=1, max_length=160)
    release: Optional[str] = Field(None, min_length=1, max_length=160)


class _UrgencyEntry(_Strict):
    level: Literal["routine", "urgent", "emergency"]
    when: Any = None
    unless: Any = None


class _HeadlineEntry(_Strict):
    text: str = Field(min_length=1, max_length=140)
    when: Any = None
    unless: Any = None
    shows: list[str] = []   # actions that must all be among the result's final actions


class _RuleEntry(_Strict):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")
    version: Union[int, str]
    title: str = Field(min_length=1, max_length=120)
    rationale: str = Field(min_length=1)
    source: str = Field(min_length=1)
    when: Any
    urgency: Optional[Union[Literal["routine", "urgent", "emergency"], list[_UrgencyEntry]]] = None
    headline: Optional[Union[Annotated[str, Field(min_length=1, max_length=140)], list[_HeadlineEntry]]] = None
    actions: list[Union[str, _OutputEntry]] = []
    flags: list[Union[str, _OutputEntry]] = []
    removes_actions: list[str] = []
    replaces: dict[str, str] = {}
    gates: list[_GateEntry] = []
    # What a clinician reads about an action this rule removes or replaces (required with either).
    reason: Optional[str] = Field(None, min_length=1, max_length=160)
    release: Optional[str] = Field(None, min_length=1, max_length=160)


class _RulesFile(_Strict):
    rules: list[_RuleEntry]


@dataclass(frozen=True)
class Output:
    """One thing a rule produces: an action, a flag, an urgency, the removal of an action, the
    replacement of an action (``id`` by ``target``), or a headline (``id`` is its text)."""

    kind: Literal["action", "flag", "urgency", "remove", "replace", "headline", "withhold", "concept"]
    id: str
    when: Optional[Condition] = None
    target: Optional[str] = None
    # withhold: the action ``id`` is held back for ``reason`` (``release``: what would give it). A
    # withhold of a rule's gate stands alone (``absolute``): its condition is the rule's trigger and the
    # gate, not the rule's condition, which the gate makes false.
    reason: Optional[str] = None
    release: Optional[str] = None
    absolute: bool = False


@dataclass(frozen=True)
class HeadlineVariant:
    """One headline of a rule: shown when its condition held (if it has one) and every action it
    names (``shows``) is among the result's final actions; the first that fits is shown."""

    text: str
    conditional: bool = False
    shows: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rule:
    id: str
    version: str
    title: str
    rationale: str
    source: str
    when: Condition
    headline: Optional[str]
    outputs: tuple[Output, ...]
    file: str
    order: int
    headlines: tuple[HeadlineVariant, ...] = ()
    reason: Optional[str] = None     # why an action it removes or replaces is held back
    release: Optional[str] = None


@dataclass(frozen=True)
class Concept:
    id: str
    meaning: str
    when: Condition


@dataclass
class RulesetData:
    """Everything read from a ruleset folder, checked; compiled later by ``_compile``."""

    path: Path
    name: str
    version: str
    description: str
    sha256: str
    disclaimer: str
    headlines: dict[str, str]
    actions: dict[str, ActionDef]
    flags: dict[str, FlagDef]
    concepts: dict[str, Concept]
    rules: list[Rule]
    files: list[str] = field(default_factory=list)
    scans: Optional[ScanTable] = None             # the vocabulary's scans table (triage/_scans.py)
    unknowns_order: tuple[str, ...] = ()          # the unknowns' lists' order (_VocabularyFile.unknowns_order)
    cache: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)  # derived tables

    def rule(self, rule_id: str) -> Rule:
        return self._by_id[rule_id]

    @property
    def scan_actions(self) -> frozenset[str]:
        """Every action of the scans table (each route)."""
        return frozenset(self.scans.actions()) if self.scans else frozenset()

    def __post_init__(self) -> None:
        self._by_id = {r.id: r for r in self.rules}


def _hint(word: str, choices: list[str]) -> str | None:
    return did_you_mean(word, choices)


def ruleset_sha256(folder: Path) -> str:
    """sha256 of ``LC_ALL=C sha256sum *`` run in the folder (regular files, sorted by name)."""
    lines = []
    for name in sorted(os.listdir(folder), key=lambda n: n.encode()):
        path = folder / name
        if path.is_file() and not name.startswith("."):
            lines.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {name}\n")
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def _read_yaml(folder: Path, name: str) -> Any:
    path = folder / name
    if not path.is_file():
        raise RulesetError(name, f"file not found in {folder}")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise RulesetError(name, f"is not valid YAML: {exc}") from None


def _schema_error(file: str, exc: ValidationError, data: Any, list_key: str | None) -> RulesetError:
    errors = exc.errors(include_url=False)
    # a misspelt key ("titel") is both unknown and missing: name the unknown one, with its "did you mean"
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = list(err["loc"])
    rule_id = None
    if list_key and len(loc) >= 2 and loc[0] == list_key and isinstance(loc[1], int):
        try:
            rule_id = data[list_key][loc[1]].get("id")
        except (AttributeError, IndexError, KeyError, TypeError):
            rule_id = None
        loc = loc[2:] if rule_id else loc
    where = ".".join(str(p) for p in loc if not str(p).startswith(("str", "_OutputEntry", "list[")))
    hint = None
    if err["type"] == "extra_forbidden":
        known = {"rules": list(_RuleEntry.model_fields), "concepts": list(_ConceptEntry.model_fields)}.get(
            list_key or "", list(_ManifestFile.model_fields))
        hint = _hint(str(loc[-1]), known)
        return RulesetError(file, f"unknown key '{where}'", rule_id, hint)
    return RulesetError(file, f"{where or 'file'}: {err['msg']}", rule_id, hint)


def _validate(model: type[BaseModel], file: str, data: Any, list_key: str | None = None) -> Any:
    if not isinstance(data, dict):
        raise RulesetError(file, "must be a YAML mapping")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _schema_error(file, exc, data, list_key) from None


def _condition(raw: Any, file: str, rule_id: str | None, where: str) -> Condition:
    try:
        return parse_condition(raw, where)
    except ConditionError as exc:
        raise RulesetError(file, f"{exc.where}: {exc.reason}", rule_id, exc.hint) from None


def load_ruleset_data(path: str | os.PathLike[str] | None = None) -> RulesetData:
    """Read and check a ruleset folder (default: the project's ``rules/``)."""
    folder = Path(path) if path is not None else Path(load_settings().rules_path or DEFAULT_RULES_DIR)
    if not folder.is_dir():
        raise RulesetError(str(folder), "is not a folder of rule files")
    manifest = _validate(_ManifestFile, "ruleset.yaml", _read_yaml(folder, "ruleset.yaml"))
    vocab = _validate(_VocabularyFile, manifest.vocabulary, _read_yaml(folder, manifest.vocabulary))
    actions: dict[str, ActionDef] = {}
    flags: dict[str, FlagDef] = {}
    for item in vocab.actions:
        if item.id in actions:
            raise RulesetError(manifest.vocabulary, f"action '{item.id}' is listed twice")
        actions[item.id] = item
    for flag in vocab.flags:
        if flag.id in flags:
            raise RulesetError(manifest.vocabulary, f"flag '{flag.id}' is listed twice")
        flags[flag.id] = flag

    raw_concepts = _validate(_ConceptsFile, manifest.concepts, _read_yaml(folder, manifest.concepts), "concepts")
    concepts: dict[str, Concept] = {}
    for entry in raw_concepts.concepts:
        if entry.id in concepts:
            raise RulesetError(manifest.concepts, f"concept '{entry.id}' is defined twice")
        concepts[entry.id] = Concept(entry.id, entry.meaning,
                                     _condition(entry.when, manifest.concepts, None, f"concept {entry.id}.when"))

    scans = load_scan_table(vocab.scans, manifest.vocabulary)
    for scan_action in sorted(scans.actions() if scans else ()):
        if scan_action not in actions:
            raise RulesetError(manifest.vocabulary, f"scans: '{scan_action}' is not an action of the vocabulary",
                               hint=_hint(scan_action, list(actions)))
    if scans is not None:   # the unknowns' imaging actions are marked on the scan, for every route at once
        marked = [a.id for a in actions.values() if a.imaging]
        if marked:
            raise RulesetError(manifest.vocabulary, f"action '{marked[0]}': `imaging` is marked on its scan in the "
                                                    "`scans` table (`unknowns: true`), for every route at once")
        for action_id in scans.unknowns_actions():
            actions[action_id] = actions[action_id].model_copy(update={"imaging": True})

    for position, item in enumerate(vocab.unknowns_order):
        if item not in actions and item not in flags:
            raise RulesetError(manifest.vocabulary, f"unknowns_order: '{item}' is neither an action nor a flag",
                               hint=_hint(item, [*actions, *flags]))
        if item in vocab.unknowns_order[:position]:
            raise RulesetError(manifest.vocabulary, f"unknowns_order: '{item}' is listed twice")

    rules: list[Rule] = []
    seen: dict[str, str] = {}
    for file in manifest.rule_files:
        data = _expanded(_read_yaml(folder, file), scans, file)
        parsed = _validate(_RulesFile, file, data, "rules")
        for entry in parsed.rules:
            if entry.id in seen:
                raise RulesetError(file, f"rule id is already used in {seen[entry.id]}", entry.id)
            seen[entry.id] = file
            rules.append(_build_rule(entry, file, len(rules), actions, flags))

    data = RulesetData(
        path=folder, name=manifest.name, version=manifest.version, description=manifest.description,
        sha256=ruleset_sha256(folder), disclaimer=manifest.disclaimer, headlines=dict(manifest.headlines),
        actions=actions, flags=flags, concepts=concepts, rules=rules,
        files=[manifest.vocabulary, manifest.concepts, *manifest.rule_files],
        scans=scans, unknowns_order=tuple(vocab.unknowns_order),
    )
    _check_references(data, manifest.concepts)
    return data  # type: ignore[no-any-return]


def _expanded(data: Any, scans: Optional[ScanTable], file: str) -> Any:
    """A rule file's data with the scan words (``triage/_scans.py``) written out in the plain language."""
    if isinstance(data, dict) and isinstance(data.get("rules"), list):
        return {**data, "rules": [expand_rule(entry, scans, file) for entry in data["rules"]]}
    return data


def expanded_rule_entries(folder: Path) -> list[tuple[str, Any]]:
    """Every rule entry of a ruleset folder (file, entry) as the engine reads it: scan words written out.

    Used to fingerprint a rule's meaning (``scripts/rule_versions.py``): a rule means what its expansion
    says, so a change in the scans table changes the meaning of every rule that names the scan."""
    manifest = _validate(_ManifestFile, "ruleset.yaml", _read_yaml(folder, "ruleset.yaml"))
    vocab = _validate(_VocabularyFile, manifest.vocabulary, _read_yaml(folder, manifest.vocabulary))
    scans = load_scan_table(vocab.scans, manifest.vocabulary)
    out: list[tuple[str, Any]] = []
    for file in manifest.rule_files:
        data = _expanded(_read_yaml(folder, file), scans, file)
        out.extend((file, entry) for entry in (data.get("rules") or []))
    return out


def _build_rule(entry: _RuleEntry, file: str, order: int, actions: dict[str, ActionDef],
                flags: dict[str, FlagDef]) -> Rule:
    rid = entry.id
    outputs: list[Output] = []

    def output_condition(item: _OutputEntry, where: str) -> Optional[Condition]:
        parts: list[Condition] = []
        if item.when is not None:
            parts.append(_condition(item.when, file, rid, f"{where}.when"))
        if item.unless is not None:
            parts.append(Not(_condition(item.unless, file, rid, f"{where}.unless")))
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else All(tuple(parts))

    trigger = _condition(entry.when, file, rid, "when")
    gates = [(_condition(g.when, file, rid, f"gates[{i}].when"), g) for i, g in enumerate(entry.gates)]
    for kind, items, known in (("action", entry.actions, actions), ("flag", entry.flags, flags)):
        for i, item in enumerate(items):
            out = item if isinstance(item, _OutputEntry) else _OutputEntry(id=item)
            if out.id not in known:
                raise RulesetError(file, f"{kind}s[{i}]: '{out.id}' is not in the vocabulary", rid,
                                   _hint(out.id, list(known)))
            outputs.append(Output(kind, out.id, output_condition(out, f"{kind}s[{i}]")))  # type: ignore[arg-type]
            if (out.reason or out.release) and (kind != "action" or out.unless is None):
                raise RulesetError(file, f"{kind}s[{i}]: a reason belongs to an action's `unless` (the gate it explains)",
                                   rid)
            if kind == "action" and out.reason:   # the action's own gate: rule fires, `when` holds, `unless` holds
                held = _condition(out.unless, file, rid, f"{kind}s[{i}].unless")
                cond = held if out.when is None else All((_condition(out.when, file, rid, f"{kind}s[{i}].when"), held))
                outputs.append(Output("withhold", out.id, cond, reason=out.reason, release=out.release))
            if kind == "action":   # the rule's gates hold every action back (with the action's own condition)
                own = output_condition(out, f"{kind}s[{i}]")
                for gate_when, gate in gates:
                    parts = (trigger, gate_when) + ((own,) if own is not None else ())
                    outputs.append(Output("withhold", out.id, All(parts), reason=gate.reason, release=gate.release,
                                          absolute=True))
    if entry.reason and not (entry.removes_actions or entry.replaces):
        raise RulesetError(file, "`reason` explains the actions a rule removes or replaces; this rule has none "
                                 "(an action's gate takes its reason under `unless`, a rule's under `gates`)", rid)
    if gates and not any(o.kind == "action" for o in outputs):
        raise RulesetError(file, "gates hold a rule's actions back; this rule has no action", rid)
    for i, action_id in enumerate(entry.removes_actions):
        if action_id not in actions:
            raise RulesetError(file, f"removes_actions[{i}]: '{action_id}' is not in the vocabulary", rid,
                               _hint(action_id, list(actions)))
        outputs.append(Output("remove", action_id))
    for old, new in entry.replaces.items():
        for which, action_id in (("", old), (f".{old}", new)):
            if action_id not in actions:
                raise RulesetError(file, f"replaces{which}: '{action_id}' is not in the vocabulary", rid,
                                   _hint(action_id, list(actions)))
        if old == new:
            raise RulesetError(file, f"replaces.{old}: an action cannot replace itself", rid)
        outputs.append(Output("replace", old, target=new))
    if entry.replaces and len(set(entry.replaces.values())) != len(entry.replaces):
        raise RulesetError(file, "replaces: two actions are replaced by the same one", rid)
    default_headline = entry.headline if isinstance(entry.headline, str) else None
    variants: list[HeadlineVariant] = [HeadlineVariant(default_headline)] if default_headline else []
    if isinstance(entry.headline, list):
        for i, variant in enumerate(entry.headline):
            shown_when = output_condition(_OutputEntry(id="h", when=variant.when, unless=variant.unless),
                                          f"headline[{i}]")
            for j, action_id in enumerate(variant.shows):
                if action_id not in actions:
                    raise RulesetError(file, f"headline[{i}].shows[{j}]: '{action_id}' is not in the vocabulary",
                                       rid, _hint(action_id, list(actions)))
            if shown_when is None and not variant.shows:
                if i != len(entry.headline) - 1:
                    raise RulesetError(file, f"headline[{i}]: only the last headline may have no condition and "
                                             f"no 'shows' (the first that fits is shown)", rid)
                default_headline = variant.text
            if shown_when is not None:
                outputs.append(Output("headline", variant.text, shown_when))
            variants.append(HeadlineVariant(variant.text, shown_when is not None, tuple(variant.shows)))
    if isinstance(entry.urgency, str):
        outputs.append(Output("urgency", entry.urgency))
    elif entry.urgency:
        for i, urg in enumerate(entry.urgency):
            level_when = output_condition(_OutputEntry(id=urg.level, when=urg.when, unless=urg.unless),
                                          f"urgency[{i}]")
            outputs.append(Output("urgency", urg.level, level_when))
    if not any(o.kind != "headline" for o in outputs):
        raise RulesetError(file, "the rule produces nothing (no urgency, action, flag, removal or replacement)", rid)
    when = trigger if not gates else All((trigger, *(Not(g) for g, _ in gates)))
    return Rule(
        id=rid, version=str(entry.version), title=entry.title, rationale=entry.rationale, source=entry.source,
        when=when, headline=default_headline, outputs=tuple(outputs),
        file=file, order=order, headlines=tuple(variants), reason=entry.reason, release=entry.release,
    )


def _check_references(data: RulesetData, concepts_file: str) -> None:
    """Every concept, rule and action a condition names exists, and nothing refers to itself."""
    rule_ids = [r.id for r in data.rules]

    def check(cond: Condition, file: str, owner: str | None) -> None:
        for leaf in references(cond):
            if isinstance(leaf, ConceptRef) and leaf.name not in data.concepts:
                raise RulesetError(file, f"unknown concept '{leaf.name}'", owner, _hint(leaf.name, list(data.concepts)))
            if isinstance(leaf, Fired) and leaf.rule_id not in rule_ids:
                raise RulesetError(file, f"unknown rule '{leaf.rule_id}' in 'fired'", owner, _hint(leaf.rule_id, rule_ids))
            if isinstance(leaf, HasAction) and leaf.action_id not in data.actions:
                raise RulesetError(file, f"unknown action '{leaf.action_id}'", owner,
                                   _hint(leaf.action_id, list(data.actions)))

    for concept in data.concepts.values():
        check(concept.when, concepts_file, None)
        for leaf in references(concept.when):
            if isinstance(leaf, (Fired, HasAction)):
                raise RulesetError(concepts_file, f"concept '{concept.id}' may only test the case, not rule outcomes")
    for rule in data.rules:
        check(rule.when, rule.file, rule.id)
        for out in rule.outputs:
            if out.when is not None:
                check(out.when, rule.file, rule.id)

    def visit(kind: str, name: str, stack: list[str]) -> None:
        key = f"{kind}:{name}"
        if key in stack:
            cycle = " -> ".join(stack[stack.index(key):] + [key])
            owner = data.rule(name) if kind == "rule" else None
            raise RulesetError(owner.file if owner else concepts_file, f"circular reference: {cycle}",
                               name if kind == "rule" else None)
        cond = data.concepts[name].when if kind == "concept" else data.rule(name).when
        for leaf in references(cond):
            if isinstance(leaf, ConceptRef):
                visit("concept", leaf.name, stack + [key])
            elif isinstance(leaf, Fired):
                visit("rule", leaf.rule_id, stack + [key])

    for name in data.concepts:
        visit("concept", name, [])
    for rule in data.rules:
        visit("rule", rule.id, [])


def load_yaml_file(path: Path) -> Any:
    """Read a YAML (or JSON) file for the CLI and the vignette loader."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))

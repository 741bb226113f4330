"""Compile checked rules into durable-rules' JSON: the one place that knows that syntax.

Each rule becomes one or more *units*, each a single-pattern durable rule: the rule's ``when`` with
its unconditional outputs, and one unit per distinct output condition (``when`` of the rule AND that
of the output). Concepts and ``fired`` references are written out in full (macro expansion), and
negation is pushed down to the leaves, where unknowns are handled explicitly:

* a tri-state is always in the fact, as ``"yes"``, ``"no"`` or ``"unknown"``: ``is true`` is
  ``{path: "yes"}`` and its negation ``{"$neq": {path: "yes"}}`` (durable's ``$neq`` never matches a
  null or absent value, hence strings);
* a choice or a number is in the fact only when given: a comparison is false when it is not given,
  and its negation is ``$nex`` OR the opposite comparison.

Rules that read outcomes (``action:``, ``urgency:``) run in a later *stage*, after every rule that
can produce those outcomes; the engine asserts one fact per stage, carrying the outcomes so far.
durable-rules fails when more than 64 rules match one fact (error 303), so each stage's units are
split into *chunks* of at most ``CHUNK_SIZE``, one fact per chunk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from ._conditions import (
    URGENCY_RANK, All, AnyOf, ChoiceIn, Compare, ConceptRef, Condition, Fired, HasAction, Known, Not, TriIs,
    UrgencyIs,
)
from ._errors import RulesetError
from ._ruleset import Output, Rule, RulesetData

CHUNK_SIZE = 48
_OPPOSITE = {"gt": "$lte", "ge": "$lt", "lt": "$gte", "le": "$gt"}
_DURABLE_OP = {"gt": "$gt", "ge": "$gte", "lt": "$lt", "le": "$lte"}


@dataclass(frozen=True)
class Unit:
    """One durable rule: when ``condition`` holds, ``rule`` contributes ``outputs``."""

    name: str
    rule: Rule
    main: bool
    condition: Condition
    outputs: tuple[Output, ...]
    stage: int = 0
    chunk: int = 0


@dataclass
class Program:
    """A compiled ruleset (or a part of one): units, their stages and chunks, and durable's JSON."""

    units: dict[str, Unit]
    stages: list[list[int]]                      # stage -> chunk ids
    needs_actions: list[tuple[str, ...]]         # stage -> action ids its facts must carry
    needs_urgency: list[bool]                    # stage -> whether its facts carry the urgency
    fields: tuple[str, ...]                      # case fields the facts must carry
    definition: dict[str, Any] = field(repr=False, default_factory=dict)


def urgency_of(units: Iterable[Unit]) -> str:
    """The highest urgency any of these units sets (routine when none does)."""
    level = "routine"
    for unit in units:
        for out in unit.outputs:
            if out.kind == "urgency" and URGENCY_RANK[out.id] > URGENCY_RANK[level]:
                level = out.id
    return level


def _producers(units: list[Unit]) -> tuple[dict[str, set[str]], set[str]]:
    """Units that add or remove each action, and units that set an urgency."""
    of_action: dict[str, set[str]] = {}
    of_urgency: set[str] = set()
    for unit in units:
        for out in unit.outputs:
            if out.kind in ("action", "remove"):
                of_action.setdefault(out.id, set()).add(unit.name)
            elif out.kind == "urgency":
                of_urgency.add(unit.name)
    return of_action, of_urgency


class _Expander:
    def __init__(self, data: RulesetData):
        self.data = data

    def expand(self, cond: Condition) -> Condition:
        """Replace concepts and ``fired`` references by their definitions."""
        if isinstance(cond, All):
            return All(tuple(self.expand(c) for c in cond.items))
        if isinstance(cond, AnyOf):
            return AnyOf(tuple(self.expand(c) for c in cond.items))
        if isinstance(cond, Not):
            return Not(self.expand(cond.item))
        if isinstance(cond, ConceptRef):
            return self.expand(self.data.concepts[cond.name].when)
        if isinstance(cond, Fired):
            return self.expand(self.data.rule(cond.rule_id).when)
        return cond


def _leaves(cond: Condition) -> Iterable[Condition]:
    if isinstance(cond, (All, AnyOf)):
        for item in cond.items:
            yield from _leaves(item)
    elif isinstance(cond, Not):
        yield from _leaves(cond.item)
    else:
        yield cond


def _join(op: str, parts: list[dict[str, Any]]) -> dict[str, Any]:
    flat: list[dict[str, Any]] = []
    for part in parts:
        if len(part) == 1 and op in part:
            flat.extend(part[op])
        else:
            flat.append(part)
    return flat[0] if len(flat) == 1 else {op: flat}


def to_durable(cond: Condition, negate: bool = False) -> dict[str, Any]:
    """An expanded condition as a durable expression (negation pushed to the leaves)."""
    if isinstance(cond, Not):
        return to_durable(cond.item, not negate)
    if isinstance(cond, (All, AnyOf)):
        conjunction = isinstance(cond, All) != negate
        return _join("$and" if conjunction else "$or", [to_durable(c, negate) for c in cond.items])
    if isinstance(cond, TriIs):
        return {"$neq": {cond.path: cond.value}} if negate else {cond.path: cond.value}
    if isinstance(cond, ChoiceIn):
        if not negate:
            return _join("$or", [{cond.path: v} for v in cond.values])
        return _join("$or", [{"$nex": {cond.path: 1}}, _join("$and", [{"$neq": {cond.path: v}} for v in cond.values])])
    if isinstance(cond, Known):
        present = cond.known != negate
        return {"$ex" if present else "$nex": {cond.path: 1}}
    if isinstance(cond, Compare):
        if not negate:
            return {_DURABLE_OP[cond.op]: {cond.path: cond.value}}
        return _join("$or", [{"$nex": {cond.path: 1}}, {_OPPOSITE[cond.op]: {cond.path: cond.value}}])
    if isinstance(cond, HasAction):
        path = f"outcome.actions.{cond.action_id}"
        return {"$neq": {path: "yes"}} if negate else {path: "yes"}
    if isinstance(cond, UrgencyIs):
        if not negate:
            return _join("$or", [{"outcome.urgency": v} for v in cond.levels])
        return _join("$and", [{"$neq": {"outcome.urgency": v}} for v in cond.levels])
    raise TypeError(f"cannot compile {cond!r}: expand concepts and fired references first")


def build_units(data: RulesetData) -> list[Unit]:
    """Every rule as its units, in ruleset order, with concepts and ``fired`` written out."""
    expander = _Expander(data)
    units: list[Unit] = []
    for index, rule in enumerate(data.rules):
        when = expander.expand(rule.when)
        plain = tuple(o for o in rule.outputs if o.when is None)
        units.append(Unit(f"r{index}", rule, True, when, plain))
        by_condition: dict[Condition, list[Output]] = {}
        for out in rule.outputs:
            if out.when is not None:
                by_condition.setdefault(out.when, []).append(out)
        for j, (out_when, outs) in enumerate(by_condition.items()):
            units.append(Unit(f"r{index}_{j}", rule, False, All((when, expander.expand(out_when))), tuple(outs)))
    return units


def _stage_of(units: list[Unit]) -> dict[str, int]:
    producers_of_action, urgency_producers = _producers(units)
    deps: dict[str, set[str]] = {}
    by_name = {u.name: u for u in units}
    for unit in units:
        needed: set[str] = set()
        for leaf in _leaves(unit.condition):
            if isinstance(leaf, HasAction):
                needed.update(producers_of_action.get(leaf.action_id, set()))
            elif isinstance(leaf, UrgencyIs):
                needed.update(urgency_producers)
        if any(by_name[n].rule.id == unit.rule.id for n in needed):
            raise RulesetError(unit.rule.file, "the rule reads an outcome it produces itself", unit.rule.id)
        deps[unit.name] = needed

    stage: dict[str, int] = {}

    def resolve(name: str, path: list[str]) -> int:
        if name in stage:
            return stage[name]
        if name in path:
            rules = " -> ".join(by_name[n].rule.id for n in path[path.index(name):] + [name])
            raise RulesetError(by_name[name].rule.file, f"outcomes depend on each other in a circle: {rules}",
                               by_name[name].rule.id)
        level = 0
        for dep in deps[name]:
            level = max(level, resolve(dep, path + [name]) + 1)
        stage[name] = level
        return level

    for unit in units:
        resolve(unit.name, [])
    return stage


def _closure(units: list[Unit], keep: set[str]) -> list[Unit]:
    """The units in ``keep`` plus every unit whose outcomes they read (transitively)."""
    producers_of_action, urgency_producers = _producers(units)
    by_name = {u.name: u for u in units}
    todo = list(keep)
    while todo:
        unit = by_name[todo.pop()]
        for leaf in _leaves(unit.condition):
            more: set[str] = set()
            if isinstance(leaf, HasAction):
                more = producers_of_action.get(leaf.action_id, set())
            elif isinstance(leaf, UrgencyIs):
                more = urgency_producers
            for name in more - keep:
                keep.add(name)
                todo.append(name)
    return [u for u in units if u.name in keep]


def compile_program(units: list[Unit]) -> Program:
    """Assign stages and chunks and write durable's ruleset definition."""
    stage_of = _stage_of(units)
    n_stages = max(stage_of.values(), default=-1) + 1
    placed: dict[str, Unit] = {}
    stages: list[list[int]] = []
    needs_actions: list[tuple[str, ...]] = []
    needs_urgency: list[bool] = []
    chunk = 0
    definition: dict[str, Any] = {}
    fields: set[str] = set()
    for s in range(n_stages):
        members = [u for u in units if stage_of[u.name] == s]
        chunks: list[int] = []
        actions: set[str] = set()
        urgency = False
        for start in range(0, len(members), CHUNK_SIZE):
            chunks.append(chunk)
            for unit in members[start:start + CHUNK_SIZE]:
                placed[unit.name] = Unit(unit.name, unit.rule, unit.main, unit.condition, unit.outputs, s, chunk)
                definition[unit.name] = {"all": [{"m": _join("$and", [{"chunk": chunk}, to_durable(unit.condition)])}]}
                for leaf in _leaves(unit.condition):
                    if isinstance(leaf, HasAction):
                        actions.add(leaf.action_id)
                    elif isinstance(leaf, UrgencyIs):
                        urgency = True
                    elif hasattr(leaf, "path"):
                        fields.add(leaf.path)  # type: ignore[union-attr]
            chunk += 1
        stages.append(chunks)
        needs_actions.append(tuple(sorted(actions)))
        needs_urgency.append(urgency)
    return Program(placed, stages, needs_actions, needs_urgency, tuple(sorted(fields)), definition)


def compile_ruleset(data: RulesetData) -> tuple[Program, dict[str, Program]]:
    """The full program, and for each urgency a what-if program of the units able to go above it."""
    units = build_units(data)
    full = compile_program(units)
    what_if: dict[str, Program] = {}
    for level in ("routine", "urgent"):
        keep = {u.name for u in units if any(o.kind == "urgency" and URGENCY_RANK[o.id] > URGENCY_RANK[level] for o in u.outputs)}
        what_if[level] = compile_program(_closure(units, keep))
    return full, what_if

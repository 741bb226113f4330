"""The result (result-format 2.2), and how it is assembled from the rules that fired.

The explanation is a value: which rules fired, what each asked for, and which findings are still
unknown that could raise the urgency. Rendering it (JSON, a CDS card, a web page) is a separate step.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable, Literal, Optional, Sequence, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_serializer

from ._compile import Unit, settle_actions, urgency_of
from ._conditions import URGENCY_RANK
from ._ruleset import Rule, RulesetData, SEVERITIES, TIMINGS
from ._sins import sins_category

RESULT_FORMAT = "2.2"   # the version of result-format.md this model implements

Urgency = Literal["emergency", "urgent", "routine"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ActionItem(_Frozen):
    id: str
    label: str
    timing: Literal["immediately", "within_4h", "within_24h", "within_48h", "within_1_week", "routine"]
    because: list[str]
    source: str


class FlagItem(_Frozen):
    id: str
    severity: Literal["critical", "warning", "info"]
    label: str
    because: list[str]


class SinsScore(_Frozen):
    total: int = Field(ge=0, le=18)
    category: Literal["stable", "potentially_unstable", "unstable"]


class Scores(_Frozen):
    sins: Optional[SinsScore] = None

    @model_serializer(mode="wrap")
    def _omit_missing(self, handler):  # type: ignore[no-untyped-def]
        return {k: v for k, v in handler(self).items() if v is not None}


class Unknown(_Frozen):
    field: str
    could_raise_to: Urgency
    would_add_flags: list[str] = []
    would_add_actions: list[str] = []   # 2.2: imaging actions a qualifying trial adds


class Hold(_Frozen):
    """Why an action is held back: the rule that held it, the reason, and what would release it."""

    rule: str
    title: str
    source: str
    reason: str
    release: Optional[str] = None


class WithheldItem(_Frozen):
    """An action a rule asked for (or would have, but for one of its gates) that the result does not hold."""

    id: str
    label: str
    asked_by: list[str]
    held_by: list[Hold]


class FiredRule(_Frozen):
    id: str
    version: str
    title: str


class RulesetRef(_Frozen):
    name: str
    version: str
    sha256: str


class Result(_Frozen):
    """What the engine concludes for one case (result-format 2.2)."""

    case_id: Optional[str] = None
    urgency: Urgency
    headline: str = Field(max_length=140)
    actions: list[ActionItem]
    flags: list[FlagItem]
    scores: Scores
    unknowns: list[Unknown]
    withheld: list[WithheldItem] = []
    fired_rules: list[FiredRule]
    ruleset: RulesetRef
    disclaimer: str

    def to_json(self, indent: int | None = None) -> str:
        """Deterministic JSON: the same case always gives the same bytes."""
        return Result.json_of(self.model_dump(mode="json"), indent)

    @staticmethod
    def json_of(dumped: dict[str, Any], indent: int | None = None) -> str:
        """A result's ``model_dump(mode="json")`` as :meth:`Result.to_json` writes it: compact (no spaces)
        or indented by 2, written by orjson (about 15 times faster than ``json.dumps``, a share of every
        HTTP answer); other indents by ``json.dumps``, in the same layout. Non-ASCII text is written as
        UTF-8, not escaped. A result holds no float (``result_dump_is_floatless``), where the two writers
        could differ."""
        if indent is None:
            return orjson.dumps(dumped).decode("utf-8")
        if indent == 2:
            return orjson.dumps(dumped, option=orjson.OPT_INDENT_2).decode("utf-8")
        return json.dumps(dumped, ensure_ascii=False, indent=indent)

    def raised_by_unknowns(self) -> Optional[str]:
        """The highest urgency a finding not assessed could lead to (``unknowns``), when it is above this
        result's: the "so far" of the form and the CDS card; None when no unknown could raise it."""
        top = max((u.could_raise_to for u in self.unknowns), key=URGENCY_RANK.__getitem__, default=self.urgency)
        return top if URGENCY_RANK[top] > URGENCY_RANK[self.urgency] else None

    def action_ids(self) -> list[str]:
        return [a.id for a in self.actions]

    def flag_ids(self) -> list[str]:
        return [f.id for f in self.flags]

    def withheld_ids(self) -> list[str]:
        return [w.id for w in self.withheld]


def assemble(data: RulesetData, case_id: Optional[str], units: Sequence[Unit], unknowns: list[Unknown],
             sins_total: Optional[int]) -> Result:
    """Build the result from the units that fired for the case itself."""
    units = sorted(units, key=lambda u: (u.owner.order, u.name))
    urgency = urgency_of(units)
    flag_because: dict[str, list[str]] = {}
    fired: dict[str, FiredRule] = {}
    for unit in units:
        rule = unit.owner
        if unit.main and rule.id not in fired:
            fired[rule.id] = _shared(data, ("fired", rule.id),
                                     lambda: FiredRule(id=rule.id, version=rule.version, title=rule.title))
        for out in unit.outputs:
            if out.kind == "flag" and rule.id not in flag_because.setdefault(out.id, []):
                flag_because[out.id].append(rule.id)

    # Items are validated as they are built (pydantic's validator is faster than model_construct here).
    order = _orders(data)
    asked = settle_actions(units, replace=False, remove=False)
    settled = _settled(units, asked)
    actions = [
        ActionItem(id=a, label=data.actions[a].label, timing=data.actions[a].timing,
                                   because=because, source=_sources(data, tuple(because)))
        for a, because in settled.items()
    ]
    actions.sort(key=lambda item: order[item.id])
    flags = [
        FlagItem(id=f, severity=data.flags[f].severity, label=data.flags[f].label, because=because)
        for f, because in flag_because.items()
    ]
    flags.sort(key=lambda item: order[item.id])
    headline = choose_headline(data, units, urgency, settled)
    withheld = held_back(data, units, settled, asked)

    scores = Scores(sins=SinsScore(total=sins_total, category=sins_category(sins_total))
                    if sins_total is not None else None)
    return Result(
        case_id=case_id, urgency=urgency, headline=headline,
        actions=actions, flags=flags, scores=scores,
        unknowns=unknowns, withheld=withheld, fired_rules=list(fired.values()),
        ruleset=_shared(data, "ruleset_ref",
                        lambda: RulesetRef(name=data.name, version=data.version, sha256=data.sha256)),
        disclaimer=data.disclaimer,
    )


def _settled(units: Sequence[Unit], asked: dict[str, list[str]]) -> dict[str, list[str]]:
    """:func:`settle_actions` of the units, from what they asked for (``settle_actions(units,
    replace=False, remove=False)``, left as it is): the same actions, ``because`` lists and order."""
    removed: set[str] = set()
    replacements: list[tuple[str, str]] = []
    for unit in units:
        if unit.removes:
            removed |= unit.removes
        if unit.replaces:
            replacements += unit.replaces
    settled = {action: list(names) for action, names in asked.items() if action not in removed}
    for old, new in replacements:
        if old in settled:
            moved = settled.pop(old)
            target = settled.setdefault(new, [])
            target.extend(name for name in moved if name not in target)
    return settled


def held_back(data: RulesetData, units: list[Unit], final: dict[str, list[str]],
              asked: Optional[dict[str, list[str]]] = None) -> list[WithheldItem]:
    """Every action held back, with the rules that asked for it and what held it (issue 25).

    An action is held when a rule removed it (a withdrawal), replaced it (the CT route), or when a
    rule's trigger held but one of its gates stopped it (``gates:``, or an action's ``unless`` with a
    reason). An action another rule still gives is not held; an action no trigger asked for is not listed.
    """
    if asked is None:
        asked = settle_actions(units, replace=False, remove=False)
    removed = set().union(*[u.removes for u in units])
    before = asked.keys() - removed          # the actions as they stand before the replacements
    holds: dict[str, list[Hold]] = {}
    askers: dict[str, list[str]] = {}

    def hold(action: str, rule: Rule, reason: str, release: Optional[str], asker: Optional[str] = None) -> None:
        entry = _shared(data, ("hold", rule.id, reason, release),
                        lambda: Hold(rule=rule.id, title=rule.title, source=_sources(data, (rule.id,)),
                                     reason=reason, release=release))
        found = holds.setdefault(action, [])
        if not any(h.rule == entry.rule and h.reason == entry.reason for h in found):
            found.append(entry)
        names = askers.setdefault(action, list(asked.get(action, [])))
        if asker and asker not in names:
            names.append(asker)

    for unit in units:
        if not unit.holds:   # no removal, replacement or gate among its outputs
            continue
        rule = unit.owner
        for out in unit.outputs:
            if out.kind == "remove" and out.id in asked:
                hold(out.id, rule, rule.reason or rule.title, rule.release)
            elif out.kind == "replace" and out.id in before:
                hold(out.id, rule, rule.reason or rule.title, rule.release)
            elif out.kind == "withhold":
                hold(out.id, rule, out.reason or rule.title, out.release, asker=rule.id)
    order = _orders(data)
    items = [WithheldItem(id=a, label=data.actions[a].label, asked_by=askers[a], held_by=found)
             for a, found in holds.items() if a not in final]
    items.sort(key=lambda item: order[item.id])
    return items


_T = TypeVar("_T")


def _shared(data: RulesetData, key: Any, make: Callable[[], _T]) -> _T:
    """A result item made once per ruleset and shared by every result (frozen, with no list inside)."""
    found = data.cache.get(key)
    if found is None:
        found = data.cache[key] = make()
    return found


def choose_headline(data: RulesetData, units: list[Unit], urgency: str, actions: Iterable[str] = ()) -> str:
    """The headline of the first rule (in ruleset order) that set the final urgency: its first variant
    whose condition held and whose named actions (``shows``) are all among the final ``actions``; the
    ruleset's default for the level otherwise. At routine, the first fired rule with a headline gives it."""
    final = set(actions)
    for unit in units:
        rule = unit.owner
        if not rule.headlines:
            continue
        if not any(o.kind == "urgency" and o.id == urgency for o in unit.outputs):
            if urgency != "routine" or not unit.main:
                continue
        held = {o.id for u in units if u.rule is rule for o in u.outputs if o.kind == "headline"}
        for variant in rule.headlines:
            if (not variant.conditional or variant.text in held) and final.issuperset(variant.shows):
                return variant.text
    return data.headlines[urgency]


def _orders(data: RulesetData) -> dict[str, tuple[int, int]]:
    """Sort keys: actions by (timing, vocabulary order), flags by (severity, vocabulary order)."""
    table = data.cache.get("order")
    if table is None:
        table = {a.id: (TIMINGS.index(a.timing), i) for i, a in enumerate(data.actions.values())}
        table.update({f.id: (SEVERITIES.index(f.severity), i) for i, f in enumerate(data.flags.values())})
        data.cache["order"] = table
    return table


def _sources(data: RulesetData, rule_ids: tuple[str, ...]) -> str:
    key = ("sources", rule_ids)
    if key not in data.cache:
        data.cache[key] = _join_sources(data.rule(r).source for r in rule_ids)
    return str(data.cache[key])


# Citations list current national guidance first, then the others, and the seed document last
# (clinical-rules 2.2, X2). CG75 is superseded: it is one of "the others" whatever its text names.
_NATIONAL = ("NG234", "QS56", "GIRFT", "NG12")


def source_rank(part: str) -> int:
    """Where a citation goes in a source list: national guidance in that order, others, seed-003."""
    if "seed-003" in part:
        return len(_NATIONAL) + 1
    if "CG75" in part:
        return len(_NATIONAL)
    return next((i for i, name in enumerate(_NATIONAL) if name in part), len(_NATIONAL))


def source_parts(source: str) -> list[str]:
    """A rule's source as its citations: ``;`` separates them outside parentheses only
    (``"NICE NG234 (scope; update); seed-003"`` is two citations, not three)."""
    parts: list[str] = []
    depth, start = 0, 0
    for i, char in enumerate(source):
        if char == "(":
            depth += 1
        elif char == ")":
            depth = max(0, depth - 1)
        elif char == ";" and depth == 0:
            parts.append(source[start:i])
            start = i + 1
    parts.append(source[start:])
    return [p.strip() for p in parts if p.strip()]


def _join_sources(sources: Iterable[str]) -> str:
    seen: list[str] = []
    for source in sources:
        for part in source_parts(source):
            if part not in seen:
                seen.append(part)
    return "; ".join(sorted(seen, key=source_rank))

"""The condition language of rule files: parsed and type-checked when a ruleset is loaded.

A condition is a mapping with exactly one of these shapes::

    all: [cond, ...]            every one holds
    any: [cond, ...]            at least one holds
    not: cond                   the condition does not hold
    concept: NAME               a derived concept of concepts.yaml holds
    fired: RULE_ID              that rule's condition holds (its `when`)
    action: ACTION_ID           the action is among the result's actions so far (read after the rules
                                that can add or remove it: the rule runs in a later stage)
    urgency: LEVEL | [LEVEL...] the urgency reached by every rule that sets one (a later stage)
    field: PATH, is: true|false|unknown          a tri-state finding
    field: PATH, in: [VALUE, ...]                a choice field (false when the field is not given)
    field: PATH, gt|ge|lt|le: NUMBER [, ...]      a number (false when the number is not given)
    field: PATH, known: true|false               whether a choice or a number is given
    field: PATH, as_sent: true, <test>           the same test on the case as sent, before normalisation
                                                 (for the rare rule about what the sender left out)

Unknown is never quietly absent: a tri-state test names the value it wants (``unknown`` included),
and a comparison on a number that is not given is false in both directions, so ``not: {field: x, gt: 48}``
holds when x is unknown, as a rule author reading it would expect.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

from ._hints import did_you_mean
from ._case import FIELDS

URGENCIES = ("routine", "urgent", "emergency")
URGENCY_RANK = {level: rank for rank, level in enumerate(URGENCIES)}  # higher is more urgent
COMPARISONS = ("gt", "ge", "lt", "le")
# The largest magnitude the engine is given: a case's number beyond it (case-format bounds most numbers
# from below only: 1e300 hours is valid) reaches durable as this limit, and every threshold of a rule
# lies strictly within it, so every comparison comes out as it would on the number itself.
ENGINE_NUMBER_LIMIT = 10**9


@dataclass(frozen=True)
class All:
    items: tuple["Condition", ...]


@dataclass(frozen=True)
class AnyOf:
    items: tuple["Condition", ...]


@dataclass(frozen=True)
class Not:
    item: "Condition"


@dataclass(frozen=True)
class ConceptRef:
    name: str


@dataclass(frozen=True)
class Fired:
    rule_id: str


@dataclass(frozen=True)
class HasAction:
    action_id: str


@dataclass(frozen=True)
class UrgencyIs:
    levels: tuple[str, ...]


@dataclass(frozen=True)
class TriIs:
    path: str
    value: str  # "yes" | "no" | "unknown"


@dataclass(frozen=True)
class ChoiceIn:
    path: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Compare:
    path: str
    op: str  # gt | ge | lt | le
    value: float


@dataclass(frozen=True)
class Known:
    path: str
    known: bool


Condition = Union[All, AnyOf, Not, ConceptRef, Fired, HasAction, UrgencyIs, TriIs, ChoiceIn, Compare, Known]

TRI_ENCODING = {True: "yes", False: "no", "unknown": "unknown"}


class ConditionError(ValueError):
    """A condition is malformed; ``where`` is a path inside the rule (``when.all[2]``)."""

    def __init__(self, where: str, reason: str, hint: str | None = None):
        self.where = where
        self.reason = reason
        self.hint = hint
        super().__init__(f"{where}: {reason}")


def _hint(word: str, choices: list[str]) -> str | None:
    return did_you_mean(word, choices)


def parse_condition(raw: Any, where: str) -> Condition:
    """Parse one condition from YAML data, checking every field name, operator and value type."""
    if not isinstance(raw, dict) or not raw:
        raise ConditionError(where, "a condition must be a non-empty mapping")
    keys = set(raw)
    if "field" in keys:
        return _parse_field_test(raw, where)
    if len(keys) != 1:
        raise ConditionError(where, f"a condition has one key (all, any, not, concept, fired, action, urgency) "
                                    f"or 'field' with tests; got {sorted(keys)}")
    (key, value), = raw.items()
    if key in ("all", "any"):
        if not isinstance(value, list) or not value:
            raise ConditionError(f"{where}.{key}", "must be a non-empty list of conditions")
        items = tuple(parse_condition(item, f"{where}.{key}[{i}]") for i, item in enumerate(value))
        return All(items) if key == "all" else AnyOf(items)
    if key == "not":
        return Not(parse_condition(value, f"{where}.not"))
    if key in ("concept", "fired", "action"):
        if not isinstance(value, str) or not value:
            raise ConditionError(f"{where}.{key}", "must be an identifier (a string)")
        if key == "concept":
            return ConceptRef(value)
        return Fired(value) if key == "fired" else HasAction(value)
    if key == "urgency":
        levels = value if isinstance(value, list) else [value]
        for level in levels:
            if level not in URGENCIES:
                raise ConditionError(f"{where}.urgency", f"'{level}' is not an urgency", _hint(str(level), list(URGENCIES)))
        return UrgencyIs(tuple(levels))
    raise ConditionError(where, f"unknown condition '{key}'",
                         _hint(key, ["all", "any", "not", "concept", "fired", "action", "urgency", "field"]))


SENT = "sent:"  # the prefix of a field read on the case as sent (before normalisation)


def field_spec(path: str) -> Any:
    """The case field a (possibly as-sent) path names."""
    return FIELDS[path[len(SENT):] if path.startswith(SENT) else path]


def _parse_field_test(raw: dict[str, Any], where: str) -> Condition:
    path = raw["field"]
    if not isinstance(path, str) or path not in FIELDS:
        raise ConditionError(f"{where}.field", f"'{path}' is not a field of the case model",
                             _hint(str(path), list(FIELDS)))
    spec = FIELDS[path]
    as_sent = raw.get("as_sent", False)
    if not isinstance(as_sent, bool):
        raise ConditionError(f"{where}.as_sent", "must be true or false")
    if as_sent:
        path = SENT + path
    tests = {k: v for k, v in raw.items() if k not in ("field", "as_sent")}
    if not tests:
        raise ConditionError(where, f"a field test needs a test (is, in, {', '.join(COMPARISONS)}, known)")
    allowed = {"tristate": {"is"}, "enum": {"in", "known"}, "number": {*COMPARISONS, "known"},
               "integer": {*COMPARISONS, "known"}, "text": {"known"}}[spec.kind]
    parts: list[Condition] = []
    for op, value in tests.items():
        if op not in allowed:
            raise ConditionError(f"{where}.{op}", f"'{op}' does not apply to {path}, a {spec.kind} field "
                                                  f"(use {', '.join(sorted(allowed))})", _hint(op, sorted(allowed)))
        if op == "is":
            if value not in (True, False, "unknown"):
                raise ConditionError(f"{where}.is", "a tri-state test is true, false or unknown")
            parts.append(TriIs(path, TRI_ENCODING[value]))
        elif op == "in":
            values = value if isinstance(value, list) else None
            if not values:
                raise ConditionError(f"{where}.in", "must be a non-empty list of values")
            for v in values:
                if v not in spec.values:
                    raise ConditionError(f"{where}.in", f"'{v}' is not a value of {path} "
                                                         f"({', '.join(spec.values)})", _hint(str(v), list(spec.values)))
            parts.append(ChoiceIn(path, tuple(values)))
        elif op == "known":
            if not isinstance(value, bool):
                raise ConditionError(f"{where}.known", "must be true or false")
            parts.append(Known(path, value))
        else:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConditionError(f"{where}.{op}", f"must be a number, not {value!r}")
            lo, hi = spec.minimum, spec.maximum
            if not -ENGINE_NUMBER_LIMIT < value < ENGINE_NUMBER_LIMIT:
                raise ConditionError(f"{where}.{op}", f"{value} is beyond what the engine compares "
                                                      f"(within ±{ENGINE_NUMBER_LIMIT:,})")
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                raise ConditionError(f"{where}.{op}", f"{value} is outside the range of {path} ({lo}..{hi}): "
                                                      f"a threshold there can never be crossed; check the units")
            parts.append(Compare(path, op, float(value)))
    return parts[0] if len(parts) == 1 else All(tuple(parts))


def references(cond: Condition) -> list[Condition]:
    """Every leaf of a condition, in order."""
    if isinstance(cond, (All, AnyOf)):
        return [leaf for item in cond.items for leaf in references(item)]
    if isinstance(cond, Not):
        return references(cond.item)
    return [cond]

"""Compile checked rules into durable-rules' JSON: the one place that knows that syntax.

The ruleset becomes *units*: one per derived concept, one per rule (its ``when`` with its
unconditional outputs) and one per distinct output condition of a rule (the rule's ``when`` AND the
output's). Durable evaluates them by forward chaining over *stages*: a unit that reads another unit's
outcome (a concept, ``fired: RULE``, ``action: ID``, ``urgency:``) runs in a later stage than every
unit that can produce it, and the engine asserts one fact per stage carrying the outcomes so far
(``o.c.<concept>``, ``o.f.<unit>``, ``o.a.<action>`` as ``"yes"``/``"no"``, ``o.u`` the urgency).
Small concepts are written out inside the units that use them instead (no stage, no firing).

Each unit's condition is turned into a disjunction of plain conjunctions (its *terms*) before it
reaches durable, and each term is one durable rule. durable-rules builds an ``$or`` as alternative
paths of its alpha network and fires a rule once per matching path, so a dense case could fire one
rule many times; a pure conjunction has one path, so every durable rule fires at most once per fact,
and the number of firings of a stage is bounded by its terms times its facts (the engine's guard).
Contradictory terms are dropped and terms implied by a shorter one are merged away at load time.

How unknowns are written (durable's ``$neq`` never matches a null or absent value):

* a tri-state is always in the fact, as ``"yes"``, ``"no"`` or ``"unknown"``: ``is true`` is
  ``{path: "yes"}`` and its negation ``{"$neq": {path: "yes"}}``;
* a choice or a number is in the fact only when given: a comparison is false when it is not given,
  and its negation is ``$nex`` OR the opposite comparison.

durable-rules fails when a fact's walk through the alpha network has more than 64 pending nodes
(error 303); each pending node leads to at least one distinct term, so each stage's terms are split
into *chunks* of at most ``CHUNK_SIZE`` terms, one fact per chunk.
"""

from __future__ import annotations

import math
from collections import Counter
from decimal import Decimal
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

from ._case import ALWAYS_GIVEN
from ._conditions import (
    URGENCY_RANK, All, AnyOf, ChoiceIn, Compare, ConceptRef, Condition, Fired, HasAction, Known, Not, TriIs,
    UrgencyIs, field_spec,
)
from ._errors import RulesetError
from ._ruleset import Output, Rule, RulesetData

CHUNK_SIZE = 56
MAX_TERMS = 64            # alternatives of one unit: more is a rule to restructure (use a concept)
INLINE_TERMS = 3          # a concept whose condition and negation each need at most this many terms is inlined

_DURABLE_OP = {"gt": "$gt", "ge": "$gte", "lt": "$lt", "le": "$lte"}
_OPPOSITE = {"gt": "le", "ge": "lt", "lt": "ge", "le": "gt"}

# A literal: (key, op, value) with op one of eq, neq, gt, ge, lt, le, ex, nex.
Literal = tuple[str, str, Any]
Term = frozenset[Literal]


@dataclass(frozen=True)
class Unit:
    """One unit of evaluation: when ``condition`` holds, it contributes ``outputs``.

    ``rule`` is ``None`` for a concept unit, whose only outcome is that ``concept`` holds.
    """

    name: str
    rule: Optional[Rule]
    main: bool
    condition: Condition
    outputs: tuple[Output, ...]
    concept: Optional[str] = None
    stage: int = 0
    # What the outputs say, sorted once (the engine reads them for every world of every evaluation).
    rank: int = field(init=False, compare=False, repr=False)             # highest urgency rank set (0: none)
    adds: frozenset[str] = field(init=False, compare=False, repr=False)   # actions asked for
    removes: frozenset[str] = field(init=False, compare=False, repr=False)
    replaces: tuple[tuple[str, str], ...] = field(init=False, compare=False, repr=False)
    flags: frozenset[str] = field(init=False, compare=False, repr=False)
    holds: bool = field(init=False, compare=False, repr=False)            # removes, replaces or withholds

    def __post_init__(self) -> None:
        outs = self.outputs
        ranks = [URGENCY_RANK[o.id] for o in outs if o.kind == "urgency"]
        object.__setattr__(self, "rank", max(ranks, default=0))
        object.__setattr__(self, "adds", frozenset(o.id for o in outs if o.kind == "action"))
        object.__setattr__(self, "removes", frozenset(o.id for o in outs if o.kind == "remove"))
        object.__setattr__(self, "replaces", tuple((o.id, o.target) for o in outs
                                                   if o.kind == "replace" and o.target is not None))
        object.__setattr__(self, "flags", frozenset(o.id for o in outs if o.kind == "flag"))
        object.__setattr__(self, "holds", any(o.kind in ("remove", "replace", "withhold") for o in outs))

    @property
    def owner(self) -> Rule:
        """The rule of a rule unit (concept units have none)."""
        if self.rule is None:
            raise TypeError(f"unit {self.name} is a concept's, not a rule's")
        return self.rule


@dataclass(frozen=True)
class Stage:
    """What one stage asserts: its chunks, the case fields and outcomes its facts must carry.

    Each is paired with its *alias*, the short property name it has in durable's facts and rules
    (durable parses every fact's JSON, so long dotted names cost time, not meaning).
    """

    chunks: tuple[int, ...]
    fields: tuple[tuple[str, str], ...]     # (case field path, alias)
    concepts: tuple[tuple[str, str], ...]   # (concept id, alias)
    fired: tuple[tuple[str, str], ...]      # (unit name of a rule whose condition is read, alias)
    actions: tuple[tuple[str, str], ...]    # (action id, alias): before the replacements
    urgency: Optional[str]                  # the alias of the urgency, when read
    terms: int
    final_actions: tuple[tuple[str, str], ...] = ()   # (action id, alias): the final actions (headlines)
    chunk_keys: tuple[tuple[str, ...], ...] = ()      # per chunk, the aliases its rules read (its fact's keys)
    # The what-if's units come first: the first ``whatif_chunks`` chunks hold all their terms (the others
    # none), and ``whatif_keys`` are the outcome aliases their terms read (see Program.whatif).
    whatif_chunks: int = 0
    whatif_keys: frozenset[str] = frozenset()


@dataclass
class Program:
    """A compiled ruleset (or a part of one): units, their stages, and durable's JSON."""

    units: dict[str, Unit]
    terms: dict[str, str]                        # durable rule name -> unit name
    stages: list[Stage]
    fields: tuple[str, ...]                      # case fields read by any stage
    definition: dict[str, Any] = field(repr=False, default_factory=dict)
    alias: dict[str, str] = field(repr=False, default_factory=dict)   # key -> its property name in durable
    # The units a what-if trial needs (all when not given): those that can set an urgency, a critical
    # flag or decide an imaging action, and every unit whose outcome one of them reads. A world run
    # "lean" is asserted only on the chunks that hold their terms; its other units are not exact.
    whatif: Optional[frozenset[str]] = None

    @property
    def n_chunks(self) -> int:
        return sum(len(s.chunks) for s in self.stages)


_LEVELS = sorted(URGENCY_RANK, key=URGENCY_RANK.__getitem__)


def urgency_of(units: Iterable[Unit]) -> str:
    """The highest urgency any of these units sets (routine when none does)."""
    return _LEVELS[max([u.rank for u in units], default=0)]


def settle_actions(units: Iterable[Unit], replace: bool = True, remove: bool = True) -> dict[str, list[str]]:
    """The actions the units leave, each with the rules that asked for it (``because``), in unit order.

    Every action asked for, less every action a rule removes (withdrawals), then each replacement
    (``replaces: {X: Y}``) of an action still there: Y takes X's place and X's ``because``.
    """
    because: dict[str, list[str]] = {}
    removed: set[str] = set()
    replacements: list[tuple[str, str]] = []
    for unit in units:
        for out in unit.outputs:
            if out.kind == "action" and unit.rule is not None:
                names = because.setdefault(out.id, [])
                if unit.rule.id not in names:
                    names.append(unit.rule.id)
            elif out.kind == "remove":
                removed.add(out.id)
            elif out.kind == "replace" and out.target is not None:
                replacements.append((out.id, out.target))
    settled = {action: names for action, names in because.items() if not remove or action not in removed}
    if not replace:
        return settled
    for old, new in replacements:
        if old in settled:
            moved = settled.pop(old)
            target = settled.setdefault(new, [])
            target.extend(name for name in moved if name not in target)
    return settled


# ------------------------------------------------------------------------------ terms (DNF)

def number_text(value: float | int) -> str:
    """A number as durable's JSON parser reads it: plain decimal, never exponent form."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"not a finite number: {value!r}")
    if isinstance(value, int):
        return str(value)
    text = repr(value)
    if "e" in text or "E" in text:
        text = format(Decimal(text), "f")
        if "." not in text:
            text += ".0"
    if text.startswith("-") and float(text) == 0:
        text = "0.0"
    return text


def _literals(cond: Condition, negate: bool, inline: dict[str, Condition]) -> list[Term]:
    """The condition (or its negation) as a list of terms, each a set of literals (DNF)."""
    if isinstance(cond, Not):
        return _literals(cond.item, not negate, inline)
    if isinstance(cond, (All, AnyOf)):
        parts = [_literals(c, negate, inline) for c in cond.items]
        if isinstance(cond, All) != negate:                      # a conjunction
            terms: list[Term] = [frozenset()]
            for part in parts:
                terms = _simplify([t | p for t in terms for p in part])
            return terms
        return _simplify([t for part in parts for t in part])
    if isinstance(cond, ConceptRef) and cond.name in inline:
        return _literals(inline[cond.name], negate, inline)
    if isinstance(cond, Fired) and f"fired:{cond.rule_id}" in inline:
        return _literals(inline[f"fired:{cond.rule_id}"], negate, inline)
    if isinstance(cond, TriIs):
        return [frozenset({(cond.path, "neq" if negate else "eq", cond.value)})]
    if isinstance(cond, ChoiceIn):
        return _choice(cond.path, cond.values, negate)
    if isinstance(cond, Known):
        return [frozenset({(cond.path, "ex" if cond.known != negate else "nex", 1)})]
    if isinstance(cond, Compare):
        if not negate:
            return [frozenset({(cond.path, cond.op, cond.value)})]
        return [frozenset({(cond.path, "nex", 1)}), frozenset({(cond.path, _OPPOSITE[cond.op], cond.value)})]
    if isinstance(cond, (ConceptRef, Fired, HasAction)):
        return [frozenset({(outcome_key(cond), "eq", "no" if negate else "yes")})]
    if isinstance(cond, UrgencyIs):
        if not negate:
            return [frozenset({("o.u", "eq", level)}) for level in cond.levels]
        return [frozenset({("o.u", "neq", level) for level in cond.levels})]
    raise TypeError(f"cannot compile {cond!r}")


def _choice(path: str, values: tuple[str, ...], negate: bool) -> list[Term]:
    spec = field_spec(path)
    others = tuple(v for v in spec.values if v not in values)
    if path in ALWAYS_GIVEN:  # always in the fact: "not in X" is "in the others"
        wanted = others if negate else values
        if not wanted:
            return []
        unwanted = values if negate else others
        if len(wanted) > 1 and unwanted:
            return [frozenset({(path, "neq", v) for v in unwanted})]
        return [frozenset({(path, "eq", v)}) for v in wanted]
    if not negate:
        return [frozenset({(path, "eq", v)}) for v in values]
    return _simplify([frozenset({(path, "nex", 1)}), frozenset({(path, "neq", v) for v in values})])


def outcome_key(cond: ConceptRef | Fired | HasAction) -> str:
    if isinstance(cond, ConceptRef):
        return f"o.c.{cond.name}"
    if isinstance(cond, Fired):
        return f"o.f.{cond.rule_id}"
    return f"o.a.{cond.action_id}"


def _consistent(term: Term) -> bool:
    """False when the literals cannot all hold (x = a and x = b, x present and absent, empty ranges)."""
    by_key: dict[str, list[tuple[str, Any]]] = {}
    for key, op, value in term:
        by_key.setdefault(key, []).append((op, value))
    for tests in by_key.values():
        ops = {op for op, _ in tests}
        if "nex" in ops and ops - {"nex"}:
            return False
        equal = {v for op, v in tests if op == "eq"}
        if len(equal) > 1 or equal & {v for op, v in tests if op == "neq"}:
            return False
        low, low_open, high, high_open = -math.inf, False, math.inf, False
        for op, value in tests:
            if op in ("gt", "ge") and (value > low or (value == low and op == "gt")):
                low, low_open = value, op == "gt"
            elif op in ("lt", "le") and (value < high or (value == high and op == "lt")):
                high, high_open = value, op == "lt"
        if low > high or (low == high and (low_open or high_open)):
            return False
    return True


def _simplify(terms: list[Term]) -> list[Term]:
    """Drop impossible terms, duplicates, and terms that a smaller term already covers."""
    kept: list[Term] = []
    for term in sorted({t for t in terms if _consistent(t)}, key=lambda t: (len(t), sorted(map(repr, t)))):
        if not any(k <= term for k in kept):
            kept.append(term)
    return kept


def _always_there(key: str) -> bool:
    """Whether a key is in every fact that reads it: outcomes and tri-states always are (``"no"``,
    ``"unknown"``), a choice of ``ALWAYS_GIVEN`` too; other choices and numbers only when given."""
    if key.startswith("o."):
        return True
    return key in ALWAYS_GIVEN or field_spec(key).kind == "tristate"


def _negations(literal: Literal) -> list[Term]:
    """The negation of one literal as terms that exclude each other (absent, or present and opposite)."""
    key, op, value = literal
    if op == "ex":
        return [frozenset({(key, "nex", 1)})]
    if op == "nex":
        return [frozenset({(key, "ex", 1)})]
    opposite = {(key, "neq" if op == "eq" else "eq" if op == "neq" else _OPPOSITE[op], value)}
    return [frozenset(opposite)] if _always_there(key) else [frozenset(opposite), frozenset({(key, "nex", 1)})]


def _and(left: list[Term], right: list[Term]) -> list[Term]:
    """The conjunction of two disjunctions of terms (terms that exclude each other stay so)."""
    return [t for t in (a | b for a in left for b in right) if _consistent(t)]


def _negation(term: Term) -> list[Term]:
    """NOT term, as terms that exclude each other: NOT (a AND b) is NOT a, or a AND NOT b."""
    negation: list[Term] = []
    held: list[Term] = [frozenset()]
    for literal in sorted(term, key=_literal_order):
        negation += _and(held, _negations(literal))
        held = _and(held, [frozenset({literal})])
    return negation


def _exclusive(terms: list[Term]) -> list[Term]:
    """A unit's terms as durable is given them: the same disjunction, written so that fewer of its terms
    can match one fact together (durable fires a unit once per matching term, and each firing costs a
    round trip). Term i becomes term i AND NOT term j for each earlier term j whose negation adds no
    alternative to it, so a unit never has more terms than before. It stays the same disjunction whichever
    earlier terms are excluded: a fact that matches term i and an excluded earlier term matches an
    earlier rewritten term (by induction), and a term an earlier one covers entirely is dropped."""
    if len(terms) < 2:
        return terms
    found: list[Term] = []
    negations = [_negation(term) for term in terms]
    for i, term in enumerate(terms):
        current = [term]
        for negation in negations[:i]:
            narrower = _and(current, negation)
            if len(narrower) <= len(current):
                current = narrower
        found += [_lean(t) for t in current]
    return found


def _lean(term: Term) -> Term:
    """A term without literals another of its literals implies (x != a beside x = b; x present beside a
    test of x's value)."""
    equal = {key for key, op, _ in term if op == "eq"}
    valued = {key for key, op, _ in term if op not in ("ex", "nex")}
    return frozenset(lit for lit in term
                     if not (lit[1] == "neq" and lit[0] in equal) and not (lit[1] == "ex" and lit[0] in valued))


def _durable_literal(literal: Literal, alias: dict[str, str]) -> dict[str, Any]:
    key, op, value = literal
    key = alias[key]
    if op == "eq":
        return {key: value}
    if op in ("neq", "ex", "nex"):
        return {f"${op}": {key: value}}
    return {_DURABLE_OP[op]: {key: value}}


def _literal_order(literal: Literal) -> tuple[int, str, str, str]:
    key, op, value = literal
    return (0 if op == "eq" else 1, key, op, repr(value))  # equalities first: they prune the walk soonest


# ------------------------------------------------------------------------------ units and stages

class _Builder:
    def __init__(self, data: RulesetData):
        self.data = data
        self.main_of = {rule.id: f"r{i}" for i, rule in enumerate(data.rules)}
        self.inline = self._inline_concepts()

    def _inline_concepts(self) -> dict[str, Condition]:
        """Concepts and ``fired:`` references small enough to write out where they are used.

        A concept made only of field tests, or a rule's condition, whose terms and whose negation's
        terms are each at most ``INLINE_TERMS``, is written out: no stage of its own and no firing to
        wait for. The others are read as outcomes of an earlier stage.
        """
        inline: dict[str, Condition] = {}
        candidates = [(c.id, c.when, True) for c in self.data.concepts.values()]
        candidates += [(f"fired:{r.id}", r.when, False) for r in self.data.rules]
        changed = True
        while changed:  # a condition can become inlinable once the ones it uses are
            changed = False
            for key, when, fields_only in candidates:
                if key in inline:
                    continue
                pos = _literals(when, False, inline)
                neg = _literals(when, True, inline)
                if fields_only and any(k.startswith("o.") for t in pos + neg for k, _, _ in t):
                    continue
                if len(pos) <= INLINE_TERMS and len(neg) <= INLINE_TERMS:
                    inline[key] = when
                    changed = True
        return inline

    def units(self) -> list[Unit]:
        units: list[Unit] = []
        for i, concept in enumerate(self.data.concepts.values()):
            if concept.id not in self.inline:
                units.append(Unit(f"c{i}", None, True, concept.when, (Output("concept", concept.id),),
                                  concept=concept.id))
        for index, rule in enumerate(self.data.rules):
            plain = tuple(o for o in rule.outputs if o.when is None)
            units.append(Unit(f"r{index}", rule, True, rule.when, plain))
            by_condition: dict[tuple[bool, Condition], list[Output]] = {}
            for out in rule.outputs:
                if out.when is not None:
                    by_condition.setdefault((out.absolute, out.when), []).append(out)
            for j, ((absolute, out_when), outs) in enumerate(by_condition.items()):
                condition = out_when if absolute else All((rule.when, out_when))
                units.append(Unit(f"r{index}_{j}", rule, False, condition, tuple(outs)))
        return units

    def terms(self, unit: Unit) -> list[Term]:
        terms = _literals(unit.condition, False, self.inline)
        # ``fired: RULE`` is read under the rule's main unit name (rule ids hold dots); a headline
        # reads the final actions (``o.z.``), after the replacements.
        final = all(o.kind == "headline" for o in unit.outputs)
        terms = [frozenset((self._key(k, final), op, v) for k, op, v in t) for t in terms]
        if len(terms) > MAX_TERMS:
            owner = unit.rule.id if unit.rule else None
            file = unit.rule.file if unit.rule else "concepts.yaml"
            what = f"concept '{unit.concept}'" if unit.concept else "the condition"
            raise RulesetError(file, f"{what} expands to {len(terms)} alternatives (at most {MAX_TERMS}): "
                                     f"name part of it as a concept", owner)
        return terms

    def _key(self, key: str, final: bool = False) -> str:
        if key.startswith("o.f."):
            return f"o.f.{self.main_of[key[4:]]}"
        if final and key.startswith("o.a."):
            return f"o.z.{key[4:]}"
        return key


def _reads(terms: list[Term]) -> set[str]:
    return {key for term in terms for key, _, _ in term}


def _producers(units: list[Unit]) -> dict[str, set[str]]:
    """For each outcome key, the units whose firing decides it.

    Replacements (``replaces: {X: Y}``) are the last step: a rule's condition (``o.a.``) reads X as
    it stands before any replacement, and Y once every replacement is made; a headline (``o.z.``)
    reads the final actions, so the replacing rule decides X there too.
    """
    of: dict[str, set[str]] = {}
    for unit in units:
        if unit.main and unit.rule is not None:
            of.setdefault(f"o.f.{unit.name}", set()).add(unit.name)
        for out in unit.outputs:
            if out.kind == "concept":
                of.setdefault(f"o.c.{out.id}", set()).add(unit.name)
            elif out.kind in ("action", "remove"):
                of.setdefault(f"o.a.{out.id}", set()).add(unit.name)
                of.setdefault(f"o.z.{out.id}", set()).add(unit.name)
            elif out.kind == "replace":
                for key in (f"o.a.{out.target}", f"o.z.{out.target}", f"o.z.{out.id}"):
                    of.setdefault(key, set()).add(unit.name)
            elif out.kind == "urgency":
                of.setdefault("o.u", set()).add(unit.name)
    return of


def _describe(key: str, by_name: dict[str, Unit]) -> str:
    if key.startswith("o.a."):
        return f"action {key[4:]}"
    if key.startswith("o.c."):
        return f"concept {key[4:]}"
    if key == "o.u":
        return "the urgency"
    unit = by_name.get(key[4:])
    return f"fired {unit.rule.id}" if unit is not None and unit.rule is not None else key


def _check_swaps(units: list[Unit], unit_terms: dict[str, list[Term]]) -> None:
    """Refuse the two-rule swap: a rule that reads ``action: X`` where another rule removes X whenever
    the reader's condition holds. The reader sees X only after every removal, so it could never fire
    through X, and the action it was meant to put in X's place would be silently lost."""
    removers: dict[str, list[Unit]] = {}
    for unit in units:
        for out in unit.outputs:
            if out.kind == "remove":
                removers.setdefault(out.id, []).append(unit)
    for reader in units:
        if reader.rule is None:
            continue
        for term in unit_terms[reader.name]:
            for key, op, value in term:
                if not (key.startswith("o.a.") and op == "eq" and value == "yes"):
                    continue
                for remover in removers.get(key[4:], []):
                    if remover.owner is reader.owner:
                        continue
                    if any(t <= term for t in unit_terms[remover.name]):
                        raise RulesetError(
                            reader.owner.file,
                            f"reads action {key[4:]}, which {remover.owner.id} removes whenever this condition "
                            f"holds: the rule sees the actions after every removal, so it can never fire through "
                            f"{key[4:]} (a swap written as two rules loses the action)",
                            reader.owner.id,
                            f"write the swap as one rule: `replaces: {{{key[4:]}: NEW_ACTION}}`")


def _check_replacements(units: list[Unit], unit_terms: dict[str, list[Term]]) -> None:
    """Refuse two rules that can replace the same action in one case: the first in file order would
    win silently (a new MRI route placed before the CT swap ordered an MRI for a person whose MRI is
    contraindicated, with the CT's flag beside it). Their conditions must exclude each other."""
    replacers: dict[str, list[Unit]] = {}
    for unit in units:
        for out in unit.outputs:
            if out.kind == "replace" and unit.rule is not None:
                replacers.setdefault(out.id, []).append(unit)
    for old, found in replacers.items():
        for i, first in enumerate(found):
            for second in found[i + 1:]:
                if first.owner is second.owner:
                    continue
                if any(_consistent(a | b) for a in unit_terms[first.name] for b in unit_terms[second.name]):
                    raise RulesetError(
                        second.owner.file,
                        f"replaces {old}, which {first.owner.id} also replaces, and both can hold in one case: "
                        f"the first in file order would win without a word",
                        second.owner.id,
                        "say which wins: add the other rule's condition, negated, to the one that must give way "
                        "(e.g. `not: {field: ..., is: true}`)")


def _stages(units: list[Unit], reads: dict[str, set[str]]) -> dict[str, int]:
    producers = _producers(units)
    by_name = {u.name: u for u in units}
    deps: dict[str, set[str]] = {}
    for unit in units:
        deps[unit.name] = set()
        headline_only = all(o.kind == "headline" for o in unit.outputs)
        for key in reads[unit.name]:
            if not key.startswith("o."):
                continue
            for p in producers.get(key, set()):
                same_rule = unit.rule is not None and by_name[p].rule is unit.rule
                if same_rule and not headline_only and not key.startswith("o.f."):
                    hint = ("to put one action in place of another, write `replaces: {OLD: NEW}` in one rule"
                            if key.startswith("o.a.") else None)
                    raise RulesetError(unit.owner.file, f"the rule reads an outcome it produces itself "
                                                        f"({_describe(key, by_name)})", unit.owner.id, hint)
                deps[unit.name].add(p)
    stage: dict[str, int] = {}

    def resolve(name: str, path: list[str]) -> int:
        if name in stage:
            return stage[name]
        if name in path:
            cycle = [by_name[n] for n in path[path.index(name):] + [name]]
            text = " -> ".join(u.rule.id if u.rule else f"concept {u.concept}" for u in cycle)
            first = next((u for u in cycle if u.rule), None)
            raise RulesetError(first.rule.file if first and first.rule else "concepts.yaml",
                               f"outcomes depend on each other in a circle: {text}",
                               first.rule.id if first and first.rule else None)
        level = 0
        for dep in deps[name]:
            level = max(level, resolve(dep, path + [name]) + 1)
        stage[name] = level
        return level

    for unit in units:
        resolve(unit.name, [])
    return stage


def action_movers(units: Iterable[Unit], actions: set[str]) -> frozenset[str]:
    """The names of the units that can decide whether any of ``actions`` is among the actions as they
    stand before the replacements or the final ones: those that add, remove or replace an action
    connected to one of them by replacements. The others never change whether one of these actions
    is there, so the units' actions settled from the movers alone answer the same for them."""
    units = list(units)
    read = set(actions)
    changed = bool(read)
    while changed:
        changed = False
        for unit in units:
            for old, new in unit.replaces:
                if (old in read) != (new in read):
                    read |= {old, new}
                    changed = True
    return frozenset(u.name for u in units
                     if (u.adds | u.removes | {a for pair in u.replaces for a in pair}) & read)


def whatif_units(units: list[Unit], unit_terms: dict[str, list[Term]], critical: Iterable[str],
                 imaging: Iterable[str]) -> frozenset[str]:
    """The units the what-if reads (clinical-rules 2.2, "Unknowns": a trial qualifies by raising the
    urgency, adding a critical flag or an imaging action): those that set an urgency, raise a critical
    flag or can decide an imaging action, and, transitively, the units whose outcomes they read."""
    critical = set(critical)
    movers = action_movers(units, set(imaging))
    needed = {u.name for u in units if u.rank > 0 or u.flags & critical or u.name in movers}
    producers = _producers(units)
    todo = list(needed)
    while todo:
        name = todo.pop()
        for key in _reads(unit_terms[name]):
            if key.startswith(("o.a.", "o.z.")):   # whether an action is there: every unit that can decide it
                deciders: Iterable[str] = action_movers(units, {key[4:]})
            else:
                deciders = producers.get(key, ())
            for producer in deciders:
                if producer not in needed:
                    needed.add(producer)
                    todo.append(producer)
    return frozenset(needed)


def compile_program(units: list[Unit], unit_terms: dict[str, list[Term]],
                    whatif: Optional[frozenset[str]] = None) -> Program:
    """Assign stages and chunks and write durable's ruleset definition (``whatif``: see Program)."""
    reads = {u.name: _reads(unit_terms[u.name]) for u in units}
    stage_of = _stages(units, reads)
    n_stages = max(stage_of.values(), default=-1) + 1
    placed: dict[str, Unit] = {}
    term_names: dict[str, str] = {}
    stages: list[Stage] = []
    definition: dict[str, Any] = {}
    all_fields: set[str] = set()
    every_key = sorted({key for terms in unit_terms.values() for term in terms for key, _, _ in term})
    alias = {key: f"k{i}" for i, key in enumerate(every_key)}
    chunk = 0
    for s in range(n_stages):
        members = [u for u in units if stage_of[u.name] == s]
        if whatif is not None:  # the what-if's units first
            members = [u for u in members if u.name in whatif] + [u for u in members if u.name not in whatif]
        terms_of = {u.name: _exclusive(unit_terms[u.name]) for u in members}
        flat = [(u, k, t) for u in members for k, t in enumerate(terms_of[u.name])]
        n_whatif = sum(len(terms_of[u.name]) for u in members if whatif is None or u.name in whatif)
        whatif_keys = {key for u in members if whatif is None or u.name in whatif
                       for term in terms_of[u.name] for key, _, _ in term if key.startswith("o.")}
        keys: set[str] = set()
        chunks: list[int] = []
        chunk_keys: list[tuple[str, ...]] = []
        # the what-if's terms and the others in chunks of their own: a lean world is asserted on the first only
        slices = [flat[i:min(i + CHUNK_SIZE, n_whatif)] for i in range(0, n_whatif, CHUNK_SIZE)]
        slices += [flat[i:i + CHUNK_SIZE] for i in range(n_whatif, len(flat), CHUNK_SIZE)]
        n_whatif_chunks = sum(1 for piece in slices if any(whatif is None or u.name in whatif for u, _, _ in piece))
        for piece in slices:
            chunks.append(chunk)
            read: set[str] = set()
            shared = Counter(lit for _, _, term in piece for lit in term)
            for unit, k, term in piece:
                name = f"{unit.name}_t{k}"
                term_names[name] = unit.name
                ordered = sorted(term, key=lambda lit: (-shared[lit], _literal_order(lit)))
                literals = [{"chunk": chunk}] + [_durable_literal(lit, alias) for lit in ordered]
                definition[name] = {"all": [{"m": literals[0] if len(literals) == 1 else {"$and": literals}}]}
                read.update(key for key, _, _ in term)
            keys.update(read)
            chunk_keys.append(tuple(alias[k] for k in sorted(read)))
            chunk += 1
        for unit in members:
            placed[unit.name] = Unit(unit.name, unit.rule, unit.main, unit.condition, unit.outputs, unit.concept, s)
        fields = tuple(sorted(k for k in keys if not k.startswith("o.")))
        all_fields.update(fields)

        def outcomes(prefix: str) -> tuple[tuple[str, str], ...]:
            return tuple((k[len(prefix):], alias[k]) for k in sorted(keys) if k.startswith(prefix))

        stages.append(Stage(
            chunks=tuple(chunks), fields=tuple((f, alias[f]) for f in fields),
            concepts=outcomes("o.c."), fired=outcomes("o.f."), actions=outcomes("o.a."),
            urgency=alias["o.u"] if "o.u" in keys else None, terms=len(flat),
            final_actions=outcomes("o.z."), chunk_keys=tuple(chunk_keys),
            whatif_chunks=n_whatif_chunks, whatif_keys=frozenset(alias[k] for k in whatif_keys),
        ))
    return Program(placed, term_names, stages, tuple(sorted(all_fields)), definition, alias, whatif)


@dataclass
class CompiledRuleset:
    """The full program, and the units and terms it was compiled from."""

    full: Program
    units: list[Unit]
    unit_terms: dict[str, list[Term]]


def compile_ruleset(data: RulesetData) -> CompiledRuleset:
    builder = _Builder(data)
    units = builder.units()
    unit_terms = {u.name: builder.terms(u) for u in units}
    _check_swaps(units, unit_terms)
    _check_replacements(units, unit_terms)
    whatif = whatif_units(units, unit_terms, (f.id for f in data.flags.values() if f.severity == "critical"),
                          (a.id for a in data.actions.values() if a.imaging))
    full = compile_program(units, unit_terms, whatif)
    _check_property_hashes(full)
    return CompiledRuleset(full, units, unit_terms)


def _fnv1a32(text: str) -> int:
    value = 0x811C9DC5
    for byte in text.encode():
        value = ((value ^ byte) * 16777619) & 0xFFFFFFFF
    return value


def _check_property_hashes(program: Program) -> None:
    """durable finds a fact's properties by a 32-bit FNV-1a hash of the name: no two may collide."""
    names = {"sid", "id", "world", "chunk", *program.alias.values()}
    seen: dict[int, str] = {}
    for name in sorted(names):
        other = seen.setdefault(_fnv1a32(name), name)
        if other != name:  # pragma: no cover - depends on the names a ruleset uses
            raise RulesetError("ruleset.yaml", f"'{name}' and '{other}' have the same hash in durable-rules")


__all__ = ["Program", "Stage", "Unit", "CompiledRuleset", "compile_ruleset", "urgency_of", "number_text", "settle_actions"]

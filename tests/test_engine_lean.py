"""Issue 26, a lean engine path: the terms durable is given, and the what-if's lean worlds, answer as before."""

from __future__ import annotations

import itertools
import math
import random

import triage
from triage._compile import _always_there, _exclusive
from triage._random_cases import random_valid_cases
from triage._case import validate_case


def _holds(literal, fact) -> bool:
    """A literal on a fact as durable reads it ($neq and comparisons never match an absent value)."""
    key, op, value = literal
    if op == "nex":
        return key not in fact
    if key not in fact:
        return False
    have = fact[key]
    return {"ex": lambda: True, "eq": lambda: have == value, "neq": lambda: have != value,
            "gt": lambda: have > value, "ge": lambda: have >= value,
            "lt": lambda: have < value, "le": lambda: have <= value}[op]()


def _choices(key: str, literals: list) -> list:
    """Values worth trying for a key: every value its literals name, numbers either side, and absence."""
    values: set = set()
    for _, op, value in literals:
        if op in ("ex", "nex"):
            continue
        values.add(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            values |= {value - 0.5, value + 0.5}
    if not values or all(isinstance(v, str) for v in values):
        values |= {"yes", "no", "unknown", "other"}
    found: list = sorted(values, key=repr)
    return found if _always_there(key) else found + [None]


def test_exclusive_terms_are_the_same_disjunction_never_more_terms(ruleset):
    rng = random.Random(26)
    for name, terms in ruleset.compiled.unit_terms.items():
        rewritten = _exclusive(terms)
        assert len(rewritten) <= len(terms), name
        literals = [lit for term in terms for lit in term]
        keys = sorted({key for key, _, _ in literals})
        options = {key: _choices(key, [lit for lit in literals if lit[0] == key]) for key in keys}
        size = math.prod(len(options[k]) for k in keys)
        facts = (itertools.product(*(options[k] for k in keys)) if size <= 4000
                 else [tuple(rng.choice(options[k]) for k in keys) for _ in range(4000)])
        for values in facts:
            fact = {k: v for k, v in zip(keys, values) if v is not None}
            before = any(all(_holds(lit, fact) for lit in term) for term in terms)
            after = [term for term in rewritten if all(_holds(lit, fact) for lit in term)]
            assert before == bool(after), (name, fact)


def test_exclusive_terms_fire_a_concept_once_per_fact():
    # "any of these findings" (here a, b, c): a case with all three fires it once, not three times
    terms = [frozenset({(f"presentation.weakness.{k}", "eq", "yes")}) for k in ("bilateral", "progressive", "present")]
    rewritten = _exclusive(terms)
    fact = {f"presentation.weakness.{k}": "yes" for k in ("bilateral", "progressive", "present")}
    assert sum(all(_holds(lit, fact) for lit in term) for term in rewritten) == 1


def test_lean_worlds_fire_the_what_ifs_units_as_full_worlds_do(ruleset):
    program = ruleset.compiled.full
    assert program.whatif and len(program.whatif) < len(program.units)
    engine = ruleset._full
    checked = 0
    for raw in itertools.chain(random_valid_cases(seed=5, n=150, density=0.3),
                               random_valid_cases(seed=6, n=150, density=0.8)):
        try:
            normalised, flat = ruleset._facts(validate_case(raw))
        except triage.CaseValidationError:
            continue
        worlds, _ = ruleset._trials(flat, ruleset._full_fields)
        full = engine.run([{}, *worlds], base=flat)
        lean = engine.run([{}, *worlds], base=flat, lean_from=1)
        assert [u.name for u in lean[0]] and {u.name for u in lean[0]} == {u.name for u in full[0]}
        for a, b in zip(full[1:], lean[1:]):
            assert {u.name for u in a} & program.whatif == {u.name for u in b} & program.whatif
        checked += len(worlds)
    assert checked > 500

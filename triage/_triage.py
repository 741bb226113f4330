"""Ruleset loading and evaluation: case in, result out."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Optional

from ._case import Case, FIELDS, GROUPS, normalised_dict, tri_state_presentation_fields, validate_case
from ._compile import Program, compile_ruleset, urgency_of
from ._conditions import URGENCY_RANK
from ._engine import CompiledEngine, encode
from ._result import Result, Unknown, assemble
from ._ruleset import RulesetData, load_ruleset_data


_LEAVES = [(path, tuple(path.split(".")), spec.kind == "tristate") for path, spec in FIELDS.items()]


def _flatten(normalised: dict[str, Any]) -> dict[str, Any]:
    """Every leaf of a normalised case (as a dict) by dotted path, encoded for the engine."""
    flat: dict[str, Any] = {}
    for path, parts, tristate in _LEAVES:
        node: Any = normalised
        for part in parts:
            node = node[part]
        if tristate:
            flat[path] = "unknown" if node is None else encode(node)
        elif node is not None:
            flat[path] = node
    return flat


def _nest(flat: dict[str, Any], fields: tuple[tuple[str, tuple[str, ...]], ...]) -> dict[str, Any]:
    """The nested fact a program needs: only the fields its rules read, unknown choices left out."""
    fact: dict[str, Any] = {}
    for path, parts in fields:
        if path in flat:
            node = fact
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            node[parts[-1]] = flat[path]
    return fact


def _field_parts(program: Program) -> tuple[tuple[str, tuple[str, ...]], ...]:
    return tuple((path, tuple(path.split("."))) for path in program.fields)


def what_if_fields(flat: dict[str, Any]) -> list[str]:
    """The unknown tri-state findings the what-if considers (clinical-rules.md, Unknowns).

    A group whose ``present`` is unknown stands for itself alone; a sub-finding counts only when its
    group is present.
    """
    candidates = []
    for path in tri_state_presentation_fields():
        if flat[path] != "unknown":
            continue
        parts = path.split(".")
        if len(parts) == 3 and parts[1] in GROUPS and parts[2] != "present":
            if flat[f"presentation.{parts[1]}.present"] != "yes":
                continue
        candidates.append(path)
    return candidates


class Ruleset:
    """A checked, compiled ruleset, ready to evaluate cases. Load with :func:`load_ruleset`."""

    def __init__(self, data: RulesetData):
        self.data = data
        full, what_if = compile_ruleset(data)
        tag = data.sha256[:12]
        self._full = CompiledEngine(f"{data.name}-{tag}", full)
        self._what_if = {level: CompiledEngine(f"{data.name}-{tag}-above-{level}", program)
                         for level, program in what_if.items()}
        self._fields = _field_parts(full)
        self._what_if_fields = {level: _field_parts(p) for level, p in what_if.items()}

    @property
    def name(self) -> str:
        return self.data.name

    @property
    def version(self) -> str:
        return self.data.version

    @property
    def sha256(self) -> str:
        return self.data.sha256

    @property
    def path(self) -> Path:
        return self.data.path

    @property
    def program(self) -> Program:
        return self._full.program

    def evaluate(self, case: Case | dict[str, Any]) -> Result:
        """Triage one case. Raises :class:`CaseValidationError` on an invalid case, nothing partial."""
        normalised = normalised_dict(validate_case(case))
        flat = _flatten(normalised)
        fired = self._full.run([_nest(flat, self._fields)])[0]
        urgency = urgency_of(fired)
        unknowns = self._unknowns(flat, urgency)
        return assemble(self.data, normalised["case_id"], fired, unknowns, normalised["assessment"]["sins"]["total"])

    def _unknowns(self, flat: dict[str, Any], urgency: str) -> list[Unknown]:
        """Each unknown finding that, set to true, would raise the urgency: computed by the rules."""
        engine = self._what_if.get(urgency)
        if engine is None:  # emergency: nothing is higher
            return []
        candidates = what_if_fields(flat)
        if not candidates:
            return []
        worlds = []
        for path in candidates:
            variant = dict(flat)
            variant[path] = "yes"
            worlds.append(_nest(variant, self._what_if_fields[urgency]))
        results = engine.run(worlds)
        unknowns = []
        for path, units in zip(candidates, results):
            level = urgency_of(units)
            if URGENCY_RANK[level] > URGENCY_RANK[urgency]:
                unknowns.append(Unknown(field=path, could_raise_to=level))  # type: ignore[arg-type]
        return unknowns


_DEFAULT: Optional[Ruleset] = None
_DEFAULT_LOCK = threading.Lock()


def load_ruleset(path: str | os.PathLike[str] | None = None) -> Ruleset:
    """Load, check and compile a ruleset folder (default: ``$MSCC_TRIAGE_RULES`` or the project's ``rules/``).

    Raises :class:`RulesetError` naming the file, the rule and the reason when anything is wrong.
    """
    return Ruleset(load_ruleset_data(path))


def default_ruleset() -> Ruleset:
    """The ruleset :func:`evaluate` uses when none is given (loaded once per process)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = load_ruleset()
        return _DEFAULT


def evaluate(case: Case | dict[str, Any], ruleset: Optional[Ruleset] = None) -> Result:
    """Triage one case with the given ruleset (default: :func:`default_ruleset`)."""
    return (ruleset or default_ruleset()).evaluate(case)


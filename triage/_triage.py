"""Ruleset loading and evaluation: case in, result out."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Optional

from ._case import (
    Case, FIELDS, GROUPS, MRI_FOLLOW_UP, normalised_dict, tri_state_presentation_fields, validate_case,
)
from ._compile import CompiledRuleset, compile_ruleset, urgency_of
from ._conditions import URGENCY_RANK
from ._engine import CompiledEngine, encode
from ._result import Result, Unknown, assemble
from ._ruleset import RulesetData, load_ruleset_data


_KIND = {path: spec.kind == "tristate" for path, spec in FIELDS.items()}
_UNKNOWN = '"unknown"'
_YES = '"yes"'
_NO = '"no"'


def _flatten(normalised: dict[str, Any]) -> dict[str, str]:
    """Every leaf of a normalised case by dotted path, as the JSON fragment the engine reads.

    Tri-states are always there (``"unknown"`` when not assessed); a choice or a number that was not
    given is left out.
    """
    flat: dict[str, str] = {}

    def walk(node: dict[str, Any], prefix: str) -> None:
        for key, value in node.items():
            path = prefix + key
            if type(value) is dict:
                walk(value, path + ".")
                continue
            tristate = _KIND.get(path)
            if tristate is None:          # case_id: never reaches the engine
                continue
            if tristate:
                flat[path] = _UNKNOWN if value is None else _YES if value else _NO
            elif value is not None:
                flat[path] = encode(value)  # type: ignore[assignment]

    walk(normalised, "")
    return flat


# (path, the path of its group's 'present' when it is a sub-finding): the what-if's candidates in order.
_CANDIDATES = tuple(
    (path, f"presentation.{path.split('.')[1]}.present"
     if len(path.split(".")) == 3 and path.split(".")[1] in GROUPS and not path.endswith(".present") else None)
    for path in tri_state_presentation_fields())


def what_if_fields(flat: dict[str, str]) -> list[str]:
    """The unknown findings the what-if considers (clinical-rules.md, Unknowns).

    Every tri-state under ``presentation``: a group whose ``present`` is unknown stands for itself
    alone, and a sub-finding counts only when its group is present. And, after an MRI, whether
    anything began or worsened since it.
    """
    candidates = [path for path, group in _CANDIDATES
                  if flat[path] == _UNKNOWN and (group is None or flat[group] == _YES)]
    if flat["assessment.mri_performed"] == _YES and flat[MRI_FOLLOW_UP] == _UNKNOWN:
        candidates.append(MRI_FOLLOW_UP)
    return candidates


class Ruleset:
    """A checked, compiled ruleset, ready to evaluate cases. Load with :func:`load_ruleset`."""

    def __init__(self, data: RulesetData):
        self.data = data
        self.compiled: CompiledRuleset = compile_ruleset(data)
        self._tag = f"{data.name}-{data.sha256[:12]}"
        self._full = CompiledEngine(self._tag, self.compiled.full)
        self._critical = tuple(f.id for f in data.flags.values() if f.severity == "critical")
        self._what_if: dict[tuple[str, frozenset[str]], tuple[CompiledEngine, frozenset[str]]] = {}
        self._what_if_lock = threading.Lock()

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
    def program(self):  # type: ignore[no-untyped-def]
        return self._full.program

    def evaluate(self, case: Case | dict[str, Any]) -> Result:
        """Triage one case. Raises :class:`CaseValidationError` on an invalid case, nothing partial."""
        normalised = normalised_dict(validate_case(case))
        flat = _flatten(normalised)
        fired = [u for u in self._full.run([flat])[0] if u.rule is not None]
        urgency = urgency_of(fired)
        flags = {o.id for u in fired for o in u.outputs if o.kind == "flag"}
        unknowns = self._unknowns(flat, urgency, flags)
        return assemble(self.data, normalised["case_id"], fired, unknowns, normalised["assessment"]["sins"]["total"])

    def _what_if_engine(self, urgency: str, missing: frozenset[str]) -> tuple[CompiledEngine, frozenset[str]]:
        key = (urgency, missing)
        with self._what_if_lock:
            found = self._what_if.get(key)
            if found is None:
                program, fields = self.compiled.what_if(urgency, missing)
                label = f"{self._tag}-what-if-{len(self._what_if)}"
                found = self._what_if[key] = (CompiledEngine(label, program), fields)
            return found

    def _unknowns(self, flat: dict[str, str], urgency: str, flags: set[str]) -> list[Unknown]:
        """Each unknown finding that, set to true, would raise the urgency or add a critical flag.

        Computed by the rules themselves: the what-if program holds the rules able to go above the
        current urgency or to add a critical flag the result lacks (and the rules they read), and a
        finding that none of them reads is not tried.
        """
        missing = frozenset(f for f in self._critical if f not in flags)
        engine, fields = self._what_if_engine(urgency, missing)
        candidates = [path for path in what_if_fields(flat) if path in fields]
        if not candidates:
            return []
        worlds = []
        for path in candidates:
            variant = dict(flat)
            variant[path] = _YES
            worlds.append(variant)
        unknowns = []
        for path, units in zip(candidates, engine.run(worlds)):
            level = urgency_of(units)
            added = {o.id for u in units for o in u.outputs if o.kind == "flag" and o.id in missing}
            if URGENCY_RANK[level] > URGENCY_RANK[urgency] or added:
                unknowns.append(Unknown(
                    field=path, could_raise_to=max(level, urgency, key=URGENCY_RANK.__getitem__),  # type: ignore[arg-type]
                    would_add_flags=[f for f in self._critical if f in added]))
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


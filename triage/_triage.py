"""Ruleset loading and evaluation: case in, result out."""

from __future__ import annotations

import hashlib
import os
import threading
import weakref
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Optional

from ._case import (
    FIELDS, GROUPS, MRI_FOLLOW_UP, ONSET, WALKING, Case, normalised_dict, unknown_fields, validate_case,
)
from ._compile import CompiledRuleset, Unit, action_movers, compile_ruleset, urgency_of
from ._conditions import SENT
from ._conditions import URGENCY_RANK
from ._engine import CompiledEngine, encode, final_actions, release_later
from ._result import Result, Unknown, assemble
from ._ruleset import RulesetData, load_ruleset_data


_KIND = {path: spec.kind == "tristate" for path, spec in FIELDS.items()}
_UNKNOWN = '"unknown"'
_YES = '"yes"'
_NO = '"no"'


def _plan(node: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """How :func:`_flatten` reads a normalised case: per key, a sub-plan for a group, or the leaf's
    path and whether it is a tri-state (keys that never reach the engine, such as case_id, left out)."""
    plan: list[tuple[str, Any]] = []
    for key, value in node.items():
        path = prefix + key
        if type(value) is dict:
            plan.append((key, _plan(value, path + ".")))
        elif path in _KIND:
            plan.append((key, (path, _KIND[path])))
    return plan


_PLAN: list[tuple[str, Any]] = []


def _flatten(normalised: dict[str, Any]) -> dict[str, str]:
    """Every leaf of a normalised case by dotted path, as the JSON fragment the engine reads.

    Tri-states are always there (``"unknown"`` when not assessed); a choice or a number that was not
    given is left out. Every normalised case has the same keys (the case model's), read by one plan.
    """
    if not _PLAN:
        _PLAN[:] = _plan(normalised_dict(validate_case({})))
    flat: dict[str, str] = {}

    def read(node: dict[str, Any], plan: list[tuple[str, Any]]) -> None:
        for key, leaf in plan:
            value = node[key]
            if type(leaf) is list:
                read(value, leaf)
                continue
            path, tristate = leaf
            if tristate:
                flat[path] = _UNKNOWN if value is None else _YES if value else _NO
            elif value is not None:
                flat[path] = encode(value)  # type: ignore[assignment]

    read(normalised, _PLAN)
    return flat


def _sub_findings(group: str) -> tuple[str, ...]:
    prefix = f"presentation.{group}."
    return tuple(p for p, spec in FIELDS.items()
                 if p.startswith(prefix) and spec.kind == "tristate" and not p.endswith(".present"))


_GROUP_SUBS = {group: _sub_findings(group) for group in GROUPS}
_CALCIUM = "labs.corrected_calcium_mmol_l"
_ORDER = {path: i for i, path in enumerate(unknown_fields())}

Trial = dict[str, str]   # path -> the value it is set to (a JSON fragment), on the normalised case
# What fired for a case and the what-if's answers, kept by the case's fragments (a 128-bit digest of
# them: they decide both): a case met again (a chart opened again, an order edited) takes them without
# running the engine. At most this many (a few hundred bytes each: the units are the program's),
# cleared when full; 0: none kept.
MAX_KEPT_ANSWERS = 8192


def what_if_trials(flat: dict[str, str]) -> list[tuple[str, list[Trial]]]:
    """The unknowns' candidates and their trials (clinical-rules 2.2, "Unknowns").

    A trial sets a value on the normalised case with the implications that follow from it (a
    sub-finding makes its group present; walking lost an hour ago is a gait difficulty); a trial the
    case format would reject is not made. Candidates come in ``unknown_fields()`` order.
    """
    found: list[tuple[str, list[Trial]]] = []
    for group, subs in _GROUP_SUBS.items():
        present = f"presentation.{group}.present"
        state = flat[present]
        if state == _UNKNOWN:  # the group stands for itself: present, or any one null sub-finding
            trials = [{present: _YES}] + [{present: _YES, sub: _YES} for sub in subs if flat[sub] == _UNKNOWN]
            found.append((present, trials))
        elif state == _YES:
            found += [(sub, [{sub: _YES}]) for sub in subs if flat[sub] == _UNKNOWN]
    if flat["presentation.weakness.present"] == _YES and ONSET not in flat:
        found.append((ONSET, [{ONSET: "1.0"}]))
    for path in ("presentation.gait_difficulty", "presentation.sexual_dysfunction", "presentation.infection_suspected"):
        if flat[path] == _UNKNOWN:
            found.append((path, [{path: _YES}]))
    calcium = float(flat[_CALCIUM]) if _CALCIUM in flat else None
    if calcium is not None:
        if calcium < 2.20 and flat["presentation.hypocalcaemia_symptoms"] == _UNKNOWN:
            found.append(("presentation.hypocalcaemia_symptoms", [{"presentation.hypocalcaemia_symptoms": _YES}]))
        if calcium >= 2.90 and flat["presentation.hypercalcaemia_symptoms"] == _UNKNOWN:
            found.append(("presentation.hypercalcaemia_symptoms", [{"presentation.hypercalcaemia_symptoms": _YES}]))
    gait = flat["presentation.gait_difficulty"]
    if WALKING not in flat and gait != _NO and _YES in (flat["presentation.weakness.present"], gait):
        found.append((WALKING, [{WALKING: '"non_ambulatory"', "presentation.non_ambulatory_hours": "1.0",
                                 "presentation.gait_difficulty": _YES}]))
    if flat["assessment.mri_performed"] == _YES and flat[MRI_FOLLOW_UP] == _UNKNOWN:
        found.append((MRI_FOLLOW_UP, [{MRI_FOLLOW_UP: _YES}]))
    found.sort(key=lambda item: _ORDER[item[0]])
    return found


def what_if_fields(flat: dict[str, str]) -> list[str]:
    """The unknown findings the what-if considers (the candidates of :func:`what_if_trials`)."""
    return [path for path, _ in what_if_trials(flat)]


class Ruleset:
    """A checked, compiled ruleset, ready to evaluate cases. Load with :func:`load_ruleset`."""

    def __init__(self, data: RulesetData):
        self.data = data
        self.compiled: CompiledRuleset = compile_ruleset(data)
        self._tag = f"{data.name}-{data.sha256[:12]}"
        self._full = CompiledEngine(self._tag, self.compiled.full)
        # Dropped without close(): its durable ruleset (C memory, about 8 MB) is freed at the next run.
        weakref.finalize(self, release_later, self._full)
        self._full_fields = frozenset(self.compiled.full.fields)
        self._case_answers: dict[bytes, tuple[tuple[Unit, ...],
                                              tuple[tuple[str, str, tuple[str, ...], tuple[str, ...]], ...]]] = {}
        # the unknowns list these in the specification's vocabulary order (the vocabulary's unknowns_order)
        listed = {item: position for position, item in enumerate(data.unknowns_order)}
        first = len(listed)
        self._critical = tuple(sorted((f.id for f in data.flags.values() if f.severity == "critical"),
                                      key=lambda i: listed.get(i, first)))
        self._imaging = tuple(sorted((a.id for a in data.actions.values() if a.imaging),
                                     key=lambda i: listed.get(i, first)))
        # the units that can decide whether an imaging action is among the final ones
        self._imaging_movers = action_movers(self.compiled.full.units.values(), set(self._imaging))
        self._scan_orders: Mapping[str, str] = MappingProxyType(data.scans.orders() if data.scans else {})
        # Fields some rule reads on the case as sent (before normalisation), by their path there.
        self._sent = tuple((key, key[len(SENT):].split(".")) for key in self.compiled.full.fields
                           if key.startswith(SENT))

    def close(self) -> None:
        """Free the C memory of this ruleset's engine now (about 8 MB once it has evaluated). Optional:
        a ruleset that is garbage-collected is freed at the next evaluation of any ruleset. An
        evaluation after ``close`` still works; it loads the engine again and frees it once done."""
        self._full.close()

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
    def scan_orders(self) -> Mapping[str, str]:
        """Every scan action (each route of the vocabulary's scans table) -> what its draft order names."""
        return self._scan_orders

    @property
    def program(self):  # type: ignore[no-untyped-def]
        return self._full.program

    def evaluate(self, case: Case | dict[str, Any]) -> Result:
        """Triage one case. Raises :class:`CaseValidationError` on an invalid case, nothing partial."""
        return self._evaluate(case, kept=MAX_KEPT_ANSWERS > 0)

    def evaluate_afresh(self, case: Case | dict[str, Any]) -> Result:
        """:meth:`evaluate`, running the engine even for a case met before (the same answer): a health
        check that the engine still answers in this process."""
        return self._evaluate(case, kept=False)

    def _evaluate(self, case: Case | dict[str, Any], kept: bool) -> Result:
        normalised, flat = self._facts(validate_case(case))
        # The case and every what-if trial (clinical-rules 2.2, "Unknowns") in one run of the full
        # program: a fact no trial changes is written once for all worlds. What fired and the what-if's
        # answers depend on the case's fragments only: a case met again (same fragments, by a 128-bit
        # digest) takes them without a run.
        digest = (hashlib.blake2b("\x00".join([f"{k}\x01{v}" for k, v in flat.items()]).encode(),
                                  digest_size=16).digest() if kept else None)
        answer = self._case_answers.get(digest) if digest is not None else None
        if answer is not None:
            fired, answers = answer
        else:
            worlds, owners = self._trials(flat, self._full_fields)
            runs = self._full.run([{}, *worlds], base=flat, lean_from=1)   # the trials read only the what-if's units
            fired = tuple([u for u in runs[0] if u.rule is not None])
            flags = set().union(*[u.flags for u in fired])
            missing = frozenset(f for f in self._critical if f not in flags)
            movers = self._imaging_movers
            imaging = final_actions([u for u in fired if u.name in movers])
            lacking = frozenset(a for a in self._imaging if a not in imaging)
            answers = self._qualifying(owners, runs[1:], urgency_of(fired), missing, lacking)
            if digest is not None:
                if len(self._case_answers) >= MAX_KEPT_ANSWERS:
                    self._case_answers.clear()
                self._case_answers[digest] = (fired, answers)
        unknowns = _unknown_items(answers)
        return assemble(self.data, normalised["case_id"], fired, unknowns, normalised["assessment"]["sins"]["total"])

    def _facts(self, valid: Case) -> tuple[dict[str, Any], dict[str, str]]:
        """The normalised case, and the fragments the engine reads (with what the rules read as sent)."""
        normalised = normalised_dict(valid)
        flat = _flatten(normalised)
        for key, parts in self._sent:
            value: Any = valid
            for part in parts:
                value = getattr(value, part)
            encoded = _UNKNOWN if value is None and _KIND[key[len(SENT):]] else encode(value)
            if encoded is not None:
                flat[key] = encoded
        return normalised, flat

    @staticmethod
    def _trials(flat: dict[str, str], fields: frozenset[str]) -> tuple[list[Trial], list[str]]:
        """The what-if trials that set a field some rule reads (``fields``), and the candidate of each."""
        worlds: list[Trial] = []
        owners: list[str] = []
        seen: dict[tuple[str, tuple[tuple[str, str], ...]], None] = {}
        for path, trials in what_if_trials(flat):
            for trial in trials:
                read = tuple(sorted((k, v) for k, v in trial.items() if k in fields))
                if not read or (path, read) in seen:
                    continue  # a trial no rule can see, or the same as another trial of this candidate
                seen[(path, read)] = None
                worlds.append(trial)
                owners.append(path)
        return worlds, owners

    def _qualifying(self, owners: list[str], runs: list[list[Any]], urgency: str, missing: frozenset[str],
                    lacking: frozenset[str]) -> tuple[tuple[str, str, tuple[str, ...], tuple[str, ...]], ...]:
        """Per candidate, what its trials (the units each fired) would raise above the case's urgency, or
        add among the critical flags and imaging actions it lacks, in unknowns order."""
        found: dict[str, tuple[str, set[str], set[str]]] = {}
        rank = URGENCY_RANK
        movers = self._imaging_movers
        for path, units in zip(owners, runs):
            level = urgency_of(units)
            added_flags = set().union(*[u.flags for u in units]) & missing if missing else set()
            added_actions = (final_actions([u for u in units if u.name in movers]) & lacking
                             if lacking else set())
            if rank[level] <= rank[urgency] and not added_flags and not added_actions:
                continue
            best, have_flags, have_actions = found.get(path, (urgency, set(), set()))
            found[path] = (max(best, level, key=rank.__getitem__), have_flags | added_flags,
                           have_actions | added_actions)
        answers = tuple(
            (path, level, tuple([f for f in self._critical if f in added_flags]),
             tuple([a for a in self._imaging if a in added_actions]))
            for path, (level, added_flags, added_actions) in sorted(found.items(), key=lambda i: _ORDER[i[0]]))
        return answers


def _unknown_items(answers: tuple[tuple[str, str, tuple[str, ...], tuple[str, ...]], ...]) -> list[Unknown]:
    return [Unknown(field=path, could_raise_to=level, would_add_flags=list(flags_added),
                    would_add_actions=list(actions_added))
            for path, level, flags_added, actions_added in answers]


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


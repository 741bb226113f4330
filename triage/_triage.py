"""Ruleset loading and evaluation: case in, result out."""

from __future__ import annotations

import hashlib
import itertools
import os
import threading
from collections import OrderedDict
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Optional

from ._case import (
    FIELDS, GROUPS, MRI_FOLLOW_UP, ONSET, WALKING, Case, normalised_dict, unknown_fields, validate_case,
)
from ._compile import (
    CompiledRuleset, WhatIfCuts, fragment_test, compile_program, compile_ruleset, urgency_of,
)
from ._conditions import SENT
from ._conditions import URGENCY_RANK
from ._engine import CompiledEngine, encode, final_actions
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
# Every field a trial may set: the others are fixed across the trials of a case.
TRIAL_FIELDS = frozenset(
    [f"presentation.{g}.present" for g in GROUPS] + [sub for subs in _GROUP_SUBS.values() for sub in subs]
    + ["presentation.gait_difficulty", "presentation.sexual_dysfunction", "presentation.infection_suspected",
       "presentation.hypocalcaemia_symptoms", "presentation.hypercalcaemia_symptoms",
       ONSET, WALKING, "presentation.non_ambulatory_hours", MRI_FOLLOW_UP])
# At most this many what-if programs (cut for the fixed part of a case) are kept loaded in durable,
# the least recently used freed first: each holds about 0.4 MB of C memory (measured: 325 programs,
# +127 MB), so about 55 MB per process. 0: no cut programs, the uncut one for the urgency, flags and actions.
MAX_WHAT_IF_PROGRAMS = 128
# The what-if's answers, remembered by everything they depend on: the program (its label, unique to
# each loaded program), the urgency and the missing flags and actions, the case's values of the
# fields that program reads, and the trials made. Cases that differ only in what the program does not
# read get the same answer without running it again (162 of the 415 cases of the project's vignettes,
# each evaluated once). At most this many answers are kept (a few hundred bytes each); 0: none.
MAX_WHAT_IF_ANSWERS = 8192
# The uncut programs (a pattern met once, see Ruleset._what_if_engine) are kept apart from the cut
# ones, at most this many (each holds about 1.5 MB of C memory: 64 of them, +93 MB RSS).
MAX_UNCUT_PROGRAMS = 64
# The what-if trials run in the same run of the full program as the case itself (no what-if program,
# cut or cache is made); False: the what-if programs above (the full run for the case alone, then one
# run of the what-if program for its urgency, missing flags and lacking actions).
WHAT_IF_IN_FULL_RUN = True


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
        self._full_fields = frozenset(self.compiled.full.fields)
        self._case_answers: dict[bytes, tuple[tuple[str, str, tuple[str, ...], tuple[str, ...]], ...]] = {}
        self._critical = tuple(f.id for f in data.flags.values() if f.severity == "critical")
        self._imaging = tuple(a.id for a in data.actions.values() if a.imaging)
        self._scan_orders: Mapping[str, str] = MappingProxyType(data.scans.orders() if data.scans else {})
        # Fields some rule reads on the case as sent (before normalisation), by their path there.
        self._sent = tuple((key, key[len(SENT):].split(".")) for key in self.compiled.full.fields
                           if key.startswith(SENT))
        # The fixed tests grouped by key, each key with a memo: its value's fragment -> the tests' truth
        # values; and for every term, where its fixed tests are in those truth values, read in that order.
        literals = self.compiled.fixed_literals(TRIAL_FIELDS)
        grouped: dict[str, list[Any]] = {}
        for literal in literals:
            grouped.setdefault(literal[0], []).append(literal)
        order = [lit for group in grouped.values() for lit in group]
        self._fixed_tests: tuple[tuple[str, tuple[Any, ...], dict[Optional[str], tuple[bool, ...]]], ...] = tuple(
            (key, tuple(fragment_test(lit) for lit in group), {}) for key, group in grouped.items())
        self._cuts = WhatIfCuts(self.compiled, order)
        # Two levels of cache: the fixed tests' truth values, then the terms they leave (many truth
        # values leave the same terms: a stream of new patients meets few new programs).
        self._what_if_keys: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        self._what_if_seen: dict[tuple[Any, ...], None] = {}   # truth values met once (not yet cut for)
        self._what_if_terms: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        self._what_if: OrderedDict[tuple[Any, ...], tuple[CompiledEngine, frozenset[str]]] = OrderedDict()
        # The uncut programs, by urgency, flags and actions, kept apart so that cut ones never push them out.
        self._uncut: OrderedDict[tuple[Any, ...], tuple[CompiledEngine, frozenset[str]]] = OrderedDict()
        # The uncut program a pattern met once is answered by: one per urgency, for every critical flag
        # and every imaging action (a superset of the program for the flags and actions the case lacks:
        # both answer exactly as the full program does, and the answers are read for the missing ones only),
        # so a stream of new patients meets at most three uncut programs instead of one per combination.
        all_critical, all_imaging = frozenset(self._critical), frozenset(self._imaging)
        self._general = {u: (u, all_critical, all_imaging) for u in URGENCY_RANK}
        self._what_if_numbers = itertools.count()
        self._what_if_lock = threading.Lock()
        self._what_if_fields: dict[str, tuple[str, ...]] = {}   # program label -> the fields it reads, sorted
        self._answers: dict[tuple[Any, ...], tuple[tuple[str, str, tuple[str, ...], tuple[str, ...]], ...]] = {}

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
        valid = validate_case(case)
        normalised = normalised_dict(valid)
        flat = _flatten(normalised)
        for key, parts in self._sent:
            value: Any = valid
            for part in parts:
                value = getattr(value, part)
            encoded = _UNKNOWN if value is None and _KIND[key[len(SENT):]] else encode(value)
            if encoded is not None:
                flat[key] = encoded
        if WHAT_IF_IN_FULL_RUN:
            # The case and every what-if trial in one run of the full program (the reference every
            # what-if program answers as): a fact no trial changes is written once for all worlds.
            # The answers depend on the case's fragments only: a case met again (same fragments, by
            # a 128-bit digest) runs alone and takes them from the cache.
            digest = (hashlib.blake2b("\x00".join([f"{k}\x01{v}" for k, v in flat.items()]).encode(),
                                      digest_size=16).digest() if MAX_WHAT_IF_ANSWERS > 0 else None)
            answers = self._case_answers.get(digest) if digest is not None else None
            if answers is not None:
                fired = [u for u in self._full.run([flat])[0] if u.rule is not None]
            else:
                worlds, owners = self._trials(flat, self._full_fields)
                runs = self._full.run([{}, *worlds], base=flat)
                fired = [u for u in runs[0] if u.rule is not None]
                flags = set().union(*[u.flags for u in fired])
                missing = frozenset(f for f in self._critical if f not in flags)
                lacking = frozenset(a for a in self._imaging if a not in final_actions(fired))
                answers = self._qualifying(owners, runs[1:], urgency_of(fired), missing, lacking)
                if digest is not None:
                    if len(self._case_answers) >= MAX_WHAT_IF_ANSWERS:
                        self._case_answers.clear()
                    self._case_answers[digest] = answers
            unknowns = _unknown_items(answers)
        else:
            fired = [u for u in self._full.run([flat])[0] if u.rule is not None]
            urgency = urgency_of(fired)
            flags = set().union(*[u.flags for u in fired])
            actions = final_actions(fired)
            unknowns = self._unknowns(flat, urgency, flags, actions)
        return assemble(self.data, normalised["case_id"], fired, unknowns, normalised["assessment"]["sins"]["total"])

    def _what_if_engine(self, urgency: str, flags: frozenset[str], actions: frozenset[str],
                        flat: dict[str, str]) -> tuple[CompiledEngine, frozenset[str]]:
        """The what-if program for this urgency, these missing flags and actions, and the case's fixed
        fields (partially evaluated, see :meth:`CompiledRuleset.what_if` and :class:`WhatIfCuts`).

        Cached in three steps: the fixed tests' truth values, then the terms they leave, name the
        program (its units and terms, ``shape``); at most ``MAX_WHAT_IF_PROGRAMS`` programs are kept
        loaded in durable, the least recently used freed first (each holds about 0.4 MB of C memory).
        Truth values met for the first time are answered by the uncut program instead (no cut).
        With ``MAX_WHAT_IF_PROGRAMS = 0`` no program is cut: the uncut one for the urgency, flags and
        actions is used (the reference the cut programs are tested against).
        """
        if MAX_WHAT_IF_PROGRAMS <= 0:
            return self._program((urgency, flags, actions))
        truth = []
        for k, tests, memo in self._fixed_tests:
            value = flat.get(k)
            held = memo.get(value)
            if held is None:
                held = tuple([test(value) for test in tests])
                if len(memo) < 4096:
                    memo[value] = held
            truth.append(held)
        key = (urgency, flags, actions, tuple(truth))
        shape = self._what_if_keys.get(key)
        if shape is None:
            if key not in self._what_if_seen:
                # Met once: the uncut program for the urgency, flags and actions answers it; a pattern
                # that comes back is cut. Cutting and compiling a program for a pattern met once costs
                # more than running the uncut one (9,000 random cases, few patterns met twice: 3.5 to
                # 4.2 ms a case this way, 5.4 ms cutting every pattern, same machine, back to back).
                if len(self._what_if_seen) >= 16 * MAX_WHAT_IF_PROGRAMS:
                    self._what_if_seen.clear()
                self._what_if_seen[key] = None
                return self._program(self._general[urgency])
            with self._what_if_lock:
                candidates = self._cuts.candidates(urgency, flags, actions)
                survivors = self._cuts.survivors(candidates, [held for group in truth for held in group])
                terms_key = (urgency, flags, actions, survivors)
                shape = self._what_if_terms.get(terms_key)
                if shape is None:
                    _, terms = self._cuts.cut(urgency, flags, actions, candidates, survivors)
                    shape = ("program", frozenset((name, frozenset(t)) for name, t in terms.items()))
                    if len(self._what_if_terms) >= 16 * MAX_WHAT_IF_PROGRAMS:
                        self._what_if_terms.clear()
                    self._what_if_terms[terms_key] = shape
                if len(self._what_if_keys) >= 16 * MAX_WHAT_IF_PROGRAMS:
                    self._what_if_keys.clear()
                self._what_if_keys[key] = shape
        return self._program(shape)

    def _program(self, shape: tuple[Any, ...]) -> tuple[CompiledEngine, frozenset[str]]:
        """The loaded program of a shape (a cut's units and terms, or an uncut program's key)."""
        with self._what_if_lock:
            store = self._what_if if shape[0] == "program" else self._uncut
            found = store.get(shape)
            if found is not None:
                store.move_to_end(shape)
                return found
            if shape[0] == "program":
                terms = dict(shape[1])
                program = compile_program([u for u in self.compiled.units if u.name in terms], terms)
            else:
                program, _ = self.compiled.what_if(*shape)
            found = store[shape] = (
                CompiledEngine(f"{self._tag}-what-if-{next(self._what_if_numbers)}", program),
                frozenset(program.fields))
            while len(store) > (max(MAX_WHAT_IF_PROGRAMS, 64) if store is self._what_if else MAX_UNCUT_PROGRAMS):
                _, (engine, _) = store.popitem(last=False)
                engine.close()
            return found

    def _unknowns(self, flat: dict[str, str], urgency: str, flags: set[str], actions: set[str]) -> list[Unknown]:
        """Each unknown finding whose trials would raise the urgency, add a critical flag or add an
        imaging action the result lacks (clinical-rules 2.2, "Unknowns").

        Computed by the rules themselves: the what-if program holds the rules able to go above the
        current urgency, to add a missing critical flag or to settle a missing imaging action (and
        the rules they read); a trial that sets only fields none of them reads is not made.
        """
        missing = frozenset(f for f in self._critical if f not in flags)
        lacking = frozenset(a for a in self._imaging if a not in actions)
        engine, fields = self._what_if_engine(urgency, missing, lacking, flat)
        worlds, owners = self._trials(flat, fields)
        if not worlds:
            return []
        answer_key: Optional[tuple[Any, ...]] = None
        if MAX_WHAT_IF_ANSWERS > 0:
            read_fields = self._what_if_fields.get(engine.label)
            if read_fields is None:
                read_fields = self._what_if_fields[engine.label] = tuple(sorted(fields))
            answer_key = (engine.label, urgency, missing, lacking, tuple([flat.get(f) for f in read_fields]),
                          tuple(owners), tuple([tuple(sorted(w.items())) for w in worlds]))
            answer = self._answers.get(answer_key)
            if answer is not None:
                return _unknown_items(answer)
        answers = self._qualifying(owners, engine.run(worlds, base=flat), urgency, missing, lacking)
        if answer_key is not None:
            if len(self._answers) >= MAX_WHAT_IF_ANSWERS:
                self._answers.clear()
            if len(self._what_if_fields) >= 4 * max(MAX_WHAT_IF_PROGRAMS, 64):
                self._what_if_fields.clear()
            self._answers[answer_key] = answers
        return _unknown_items(answers)

    @staticmethod
    def _trials(flat: dict[str, str], fields: frozenset[str]) -> tuple[list[Trial], list[str]]:
        """The what-if trials a program reading ``fields`` can see, and the candidate of each."""
        worlds: list[Trial] = []
        owners: list[str] = []
        seen: dict[tuple[str, tuple[tuple[str, str], ...]], None] = {}
        for path, trials in what_if_trials(flat):
            for trial in trials:
                read = tuple(sorted((k, v) for k, v in trial.items() if k in fields))
                if not read or (path, read) in seen:
                    continue  # a trial no kept rule can see, or the same as another trial of this candidate
                seen[(path, read)] = None
                worlds.append(trial)
                owners.append(path)
        return worlds, owners

    def _qualifying(self, owners: list[str], runs: list[list[Any]], urgency: str, missing: frozenset[str],
                    lacking: frozenset[str]) -> tuple[tuple[str, str, tuple[str, ...], tuple[str, ...]], ...]:
        """Per candidate, what its trials (the units each fired) would raise or add, in unknowns order."""
        found: dict[str, tuple[str, set[str], set[str]]] = {}
        rank = URGENCY_RANK
        for path, units in zip(owners, runs):
            level = urgency_of(units)
            added_flags = set().union(*[u.flags for u in units]) & missing if missing else set()
            added_actions = final_actions(units) & lacking if lacking else set()
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


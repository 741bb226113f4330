"""The one module that talks to durable-rules.

How the engine is used, and why (measured on durable-rules 2.0.28 on a 2-core machine):

* We drive durable's C core (``durable_rules_engine``) directly and run no Python actions: a unit's
  "action" is its name, which we read back from the engine. So no background ``Host`` timer threads
  (they segfault under thread stress), no exception can be swallowed into session state, and a
  fired rule costs about 10 µs instead of about 35 µs through ``durable.engine``.
* Facts, not events: every matching rule fires, not only the first.
* Sessions are kept and their facts retracted, not deleted: creating a session costs about 8 kB of
  zeroed memory and three allocations per durable rule (``createStateNode``), about 150 µs for the
  full ruleset's 470 rules, against about 6 µs to retract one evaluation's facts. So each compiled
  program keeps one session per process; every fact carries an ``id`` unique in that session, and
  every evaluation retracts all the facts it asserted in ``finally``, leaving the session as empty as
  a new one. A session whose evaluation failed in any way is deleted, never reused. A session holds
  memory in proportion to its program's size, so the kept sessions hold at most ``MAX_KEPT_RULES``
  rules in all (the least recently used goes first). One process-wide lock is held from the first assert to the
  retraction, so no two evaluations ever meet in the C core.
* durable coerces types (``"38"`` matches ``> 37.5``); only strictly validated, normalised cases reach
  this module, and values are encoded here (tri-states as ``"yes"``/``"no"``/``"unknown"``).
* ``assert_facts`` answers 1 ("not handled") as soon as one fact of a batch matches nothing, even
  when the others matched; their actions are pending. We always drain the action queue after an
  assert (durable's own ``Host`` raises ``MessageNotHandledException`` there and leaves them queued
  in the session, to surface on the next assert).
* durable's C ``createStateNode`` leaves ``context.messages`` and ``context.stateFact`` uninitialised;
  they are set only when an action starts, and ``deleteState`` frees them. Deleting a session in
  which no rule fired therefore frees garbage (seen here: a segfault in ``deleteStateNode`` on a
  fresh pool slot, ``Invalid free()`` under valgrind, depending on heap layout). Every session
  therefore starts with a sentinel fact that fires a sentinel rule, so an action always starts.
* C rulesets are created lazily in the process that evaluates, and re-created after a fork, so a
  server's master process evaluates nothing and workers never share engine state.
* We write the facts' JSON ourselves: flat objects with short property names (the compiler's
  aliases: durable parses every fact, and long dotted names were most of the cost), numbers always in
  plain decimal form (durable's parser misreads ``1e-05``, and the session then crashes), ``sid`` and
  ``world`` first so a fired message is read without decoding the fact.
* Every compiled rule is a plain conjunction, so it fires at most once per fact: a stage cannot fire
  more than its rules times its facts, and more is an :class:`EngineError`, never a loop.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import threading
from collections import OrderedDict
from typing import Any, Optional

import durable_rules_engine as _dre

from ._compile import Program, Unit, action_movers, number_text, urgency_of
from ._conditions import ENGINE_NUMBER_LIMIT
from ._errors import EngineError

_LOCK = threading.Lock()
_SIDS = itertools.count(1)
_NEXT_ID = 1   # fact ids: unique among the facts of a kept session (under _LOCK)
# Kept sessions, least recently used first (under _LOCK): engine -> its program's durable rules. A kept
# session holds about 8 kB per rule of its program (measured: 3,913 rules in 97 sessions, +31 MB), so
# the kept sessions of a process hold at most MAX_KEPT_RULES rules (about 33 MB); 0 keeps none.
MAX_KEPT_RULES = 4096
_LIVE: "OrderedDict[CompiledEngine, int]" = OrderedDict()
_KEPT = [0]   # the rules of the kept sessions
# Engines whose Ruleset was garbage-collected, to free at the next run or close (under _LOCK). A
# finalizer may run inside a section that holds _LOCK (a collection can start at any allocation), so
# it never takes the lock itself: it only appends here.
_PENDING: list["CompiledEngine"] = []
# Per stage, the outcomes read by the relevant units fired, kept across runs: at most this many (then
# cleared); 0 keeps none.
MAX_KNOWN_FRAGMENTS = 4096
SENTINEL = "session_sentinel"
_SENTINEL_CHUNK = -1
# A fired message is {"<term>":{"m":{<the fact>}}}. Facts hold only validated enum strings, numbers and
# our own keys (no free text), so the term name and the fact's world index can be read without decoding
# the whole fact; anything else falls back to json.loads.
_MESSAGE = re.compile(r'\{"(?P<name>[A-Za-z0-9_]+)":\{"m":\{"sid":"[^"]*","world":(?P<world>-?\d+)[,}]')
YES, NO = '"yes"', '"no"'


def _reset_after_fork() -> None:
    global _LOCK
    _LOCK = threading.Lock()
    _LIVE.clear()   # the parent's sessions: each engine makes its own in this process
    _KEPT[0] = 0
    _PENDING.clear()   # the parent's handles: not this process's to free


def release_later(engine: "CompiledEngine") -> None:
    """Free ``engine``'s durable ruleset and session at the next run or close (a Ruleset's finalizer:
    a ruleset dropped without :meth:`CompiledEngine.close` used to keep about 8 MB of C memory)."""
    _PENDING.append(engine)


def _free_pending() -> None:
    """Free the engines queued by :func:`release_later` (under _LOCK)."""
    while _PENDING:
        engine = _PENDING.pop()
        engine._closed = True
        engine._free()


os.register_at_fork(after_in_child=_reset_after_fork)


def to_json(value: Any) -> str:
    """JSON for durable's parser: numbers always in plain decimal form (it misreads ``1e-05``)."""
    if isinstance(value, str) or value is None or isinstance(value, bool):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (int, float)):
        return number_text(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k), ensure_ascii=False)}:{to_json(v)}"
                              for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(to_json(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} for durable-rules")


_EXPONENT = re.compile(r"[0-9][eE][-+]?[0-9]")


def _definition_json(definition: dict[str, Any]) -> str:
    """A program's definition for durable: :func:`json.dumps` (fast, in C) when no number came out in
    exponent form (durable misreads those), :func:`to_json` otherwise."""
    text = json.dumps(definition, ensure_ascii=False, separators=(",", ":"))
    return to_json(definition) if _EXPONENT.search(text) else text


def encode(value: Any) -> str | None:
    """A case value as a JSON fragment the engine reads; ``None`` for a choice or number not given.

    A number beyond ``ENGINE_NUMBER_LIMIT`` is written as the limit: every threshold lies within it,
    so no comparison changes, and durable never reads a number of hundreds of digits."""
    if value is True:
        return YES
    if value is False:
        return NO
    if value is None:
        return None
    if type(value) in (int, float) and not -ENGINE_NUMBER_LIMIT <= value <= ENGINE_NUMBER_LIMIT:
        value = ENGINE_NUMBER_LIMIT if value > 0 else -ENGINE_NUMBER_LIMIT
    return to_json(value)


def _action_sets(units: Any) -> tuple[set[str], set[str]]:
    """The actions before the replacements and the final ones (as :func:`settle_actions`, ids only)."""
    added: set[str] = set()
    removed: set[str] = set()
    replacements: list[tuple[str, str]] = []
    for unit in units:
        if unit.adds:
            added |= unit.adds
        if unit.removes:
            removed |= unit.removes
        if unit.replaces:
            replacements += unit.replaces
    before = added - removed if removed else added
    if not replacements:
        return before, before
    final = set(before)
    for old, new in replacements:
        if old in final:
            final.discard(old)
            final.add(new)
    return before, final


def final_actions(units: Any) -> set[str]:
    """The ids of the actions the units leave (as :func:`settle_actions`, without the ``because``)."""
    return _action_sets(units)[1]


class _Reads:
    """What one stage reads of the outcomes so far, precomputed: the fragment of each key as "no",
    and where a fired unit turns one to "yes"."""

    __slots__ = ("stage", "template", "yes", "marks", "marked", "actions", "final_actions", "urgency", "movers",
                 "relevant", "known")

    def __init__(self, stage: Any, units: dict[str, Unit]) -> None:
        self.stage = stage
        keys = [k for _, k in (*stage.concepts, *stage.fired, *stage.actions, *stage.final_actions)]
        self.template = {k: f'"{k}":{NO}' for k in keys}
        self.yes = {k: f'"{k}":{YES}' for k in keys}
        by_concept = dict(stage.concepts)
        by_unit = dict(stage.fired)
        # per unit, the (alias, "alias":"yes") pairs its firing sets (its ``fired:`` and its concept)
        marks: dict[str, tuple[tuple[str, str], ...]] = {}
        for name, unit in units.items():
            found = [by_unit[name]] if name in by_unit else []
            if unit.concept is not None and unit.concept in by_concept:
                found.append(by_concept[unit.concept])
            if found:
                marks[name] = tuple((k, self.yes[k]) for k in found)
        self.marks = marks
        self.marked = frozenset(marks)
        self.actions = stage.actions
        self.movers = action_movers(units.values(), {a for a, _ in (*stage.actions, *stage.final_actions)})
        self.final_actions = stage.final_actions
        self.urgency = stage.urgency
        # The units whose firing can change what this stage reads: the fragments are a function of
        # which of them fired, in firing order, so they are kept by that (under _LOCK, as every run).
        self.relevant = self.marked | self.movers | (
            frozenset(name for name, unit in units.items() if unit.rank) if stage.urgency else frozenset())
        self.known: dict[tuple[str, ...], dict[str, str]] = {}


class _Outcomes:
    """What later stages may read of the units fired so far for one world."""

    __slots__ = ("fired",)

    def __init__(self) -> None:
        self.fired: dict[str, Unit] = {}

    def fragments(self, reads: _Reads) -> dict[str, str]:
        """The outcomes the stage reads, by alias, each as its ``"alias":value`` pair (one shared dict
        for every world that fired the same relevant units, never to be changed)."""
        relevant = reads.relevant
        key = tuple([name for name in self.fired if name in relevant])
        found = reads.known.get(key)
        if found is None:
            found = self._fragments(reads)
            if len(reads.known) >= MAX_KNOWN_FRAGMENTS:
                reads.known.clear()
            if MAX_KNOWN_FRAGMENTS:
                reads.known[key] = found
        return found

    def _fragments(self, reads: _Reads) -> dict[str, str]:
        units = self.fired
        values = dict(reads.template)
        yes = reads.yes
        marks = reads.marks
        for name in units.keys() & reads.marked:
            for key, text in marks[name]:
                values[key] = text
        if reads.actions or reads.final_actions:
            movers = reads.movers
            before, final = _action_sets([unit for name, unit in units.items() if name in movers])
            # A rule reads an action as it stands before the replacements (the last step), and the
            # action that replaces it once made; a headline reads the final actions.
            for a, key in reads.actions:
                if a in before or a in final:
                    values[key] = yes[key]
            for a, key in reads.final_actions:
                if a in final:
                    values[key] = yes[key]
        if reads.urgency:
            values[reads.urgency] = f'"{reads.urgency}":"{urgency_of(units.values())}"'
        return values


class CompiledEngine:
    """One compiled :class:`Program` loaded in durable's C core (per process, created on first use)."""

    def __init__(self, label: str, program: Program):
        self.label = label
        self.program = program
        definition = dict(program.definition)
        definition[SENTINEL] = {"all": [{"m": {"chunk": _SENTINEL_CHUNK}}]}
        self._definition = _definition_json(dict(sorted(definition.items())))
        self._handle: int | None = None
        self._pid: int | None = None
        self._sid: str | None = None      # the kept session of this process, if any
        self._dirty = False               # facts of an unfinished run may be in the kept session
        self._closed = False
        # What each chunk's fact carries: the case fields (written once per world) and the outcomes.
        self._prefix = {path: f'"{alias}":' for stage in program.stages for path, alias in stage.fields}
        self._term_units = {term: (name, program.units[name]) for term, name in program.terms.items()}
        self._plan = []
        for stage in program.stages:
            path_of = {alias: path for path, alias in stage.fields}
            chunks = []
            for chunk, keys in zip(stage.chunks, stage.chunk_keys):
                paths = tuple(path_of[k] for k in keys if k in path_of)
                chunks.append((chunk, paths, tuple(k for k in keys if k not in path_of), frozenset(paths)))
            reads = stage.concepts or stage.fired or stage.actions or stage.final_actions or stage.urgency
            self._plan.append((stage, _Reads(stage, program.units) if reads else None, tuple(chunks)))

    def _ensure_handle(self) -> int:
        pid = os.getpid()
        if self._handle is None or self._pid != pid:
            try:
                self._handle = _dre.create_ruleset(self.label, self._definition)
            except _dre.error as exc:  # pragma: no cover - the compiler's output is tested
                raise EngineError(f"durable-rules refused the compiled ruleset {self.label}: {exc}") from None
            self._pid = pid
            self._sid = None
        return self._handle  # type: ignore[return-value]

    def _session(self, handle: int) -> str:
        """The kept session's id, or a new one (the least recently used kept session goes past the cap)."""
        if self._sid is not None:
            _LIVE.move_to_end(self)
            return self._sid
        sid = str(next(_SIDS))
        size = len(self.program.terms) + 1
        if size <= MAX_KEPT_RULES:
            while _LIVE and _KEPT[0] + size > MAX_KEPT_RULES:
                next(iter(_LIVE))._drop()
            self._sid = sid
            _LIVE[self] = size
            _KEPT[0] += size
        return sid

    def close(self) -> None:
        """Free this program's session and durable ruleset (C memory). A run after it (a thread that
        took the engine before it was closed) loads them again and frees them once done."""
        with _LOCK:
            self._closed = True
            self._free()
            _free_pending()

    def _free(self) -> None:
        self._drop()
        if self._handle is not None and self._pid == os.getpid():
            try:
                _dre.delete_ruleset(self._handle)
            except _dre.error:  # pragma: no cover - a handle durable no longer knows
                pass
        self._handle = self._pid = None

    def _drop(self) -> None:
        """Delete this engine's kept session (nothing is kept if it cannot be deleted)."""
        sid, self._sid = self._sid, None
        self._dirty = False
        _KEPT[0] -= _LIVE.pop(self, 0)
        if sid is not None and self._handle is not None and self._pid == os.getpid():
            try:
                _dre.delete_state(self._handle, sid)
            except _dre.error:  # pragma: no cover - a session that was never created
                pass

    def run(self, worlds: list[dict[str, str]], base: Optional[dict[str, str]] = None,
            lean_from: Optional[int] = None) -> list[list[Unit]]:
        """Evaluate each world in one session; the units fired for each world, in firing order.

        A world maps a case field's path to its value as a JSON fragment (see :func:`encode`);
        a choice or a number that was not given is left out. With ``base``, each world holds only what
        differs from it (the what-if's trials): the base is written once, and a chunk whose fields no
        world changes has its fields written once for all worlds.

        The worlds from index ``lean_from`` on are *lean*: when the program names the what-if's units
        (``Program.whatif``), they are asserted only on the chunks that hold those units' terms, and
        only those units are exact for them (the others may be missing, or credited from a fact the
        world shares). A lean world reads the other outcomes as the first world does, so that it
        shares that world's facts wherever the what-if's outcomes agree.
        """
        program = self.program
        if not program.stages or not worlds:  # nothing to match: no session is opened
            return [[] for _ in worlds]
        outcomes = [_Outcomes() for _ in worlds]
        prefix = self._prefix
        worlds_own: list[dict[str, str]] = worlds
        if base is None and len(worlds) == 1:   # one world: it is its own base
            base, worlds_own = worlds[0], [{}]
        common = {p: text + base[p] for p, text in prefix.items() if p in base} if base else {}
        own = [{p: prefix[p] + value for p, value in world.items() if p in prefix} for world in worlds_own]
        lean = lean_from is not None and program.whatif is not None
        with _LOCK:
            if _PENDING:
                _free_pending()
            handle = self._ensure_handle()
            if self._dirty:   # a run ended before its facts were retracted (an exception in its cleanup)
                self._drop()
            sid = self._session(handle)
            global _NEXT_ID
            first = next_id = _NEXT_ID
            clean = False
            self._dirty = sid == self._sid
            try:
                for number, (stage, reads, chunks) in enumerate(self._plan):
                    facts = []
                    if number == 0:  # see the module's notes: a rule fires in every session
                        facts.append(f'{{"sid":"{sid}","world":-1,"id":{next_id},"chunk":{_SENTINEL_CHUNK}}}')
                        next_id += 1
                    outs: list[Optional[dict[str, str]]] = [None] * len(own)
                    if reads is not None:  # worlds that fired the same units read the same outcomes (dict)
                        for index, world_outcomes in enumerate(outcomes):
                            outs[index] = world_outcomes.fragments(reads)
                        if lean and lean_from:
                            self._lean_outcomes(outs, lean_from, stage.whatif_keys)
                    # One fact per distinct (chunk, content): worlds whose facts would be the same
                    # share one, and what it fires is credited to each of them.
                    groups: list[list[int]] = []
                    for number_in_stage, (chunk, paths, keys, pathset) in enumerate(chunks):
                        shared = ",".join([common[p] for p in paths if p in common])
                        seen: dict[str, int] = {}
                        # a world this chunk's fields do not change, reading outcomes another such world
                        # read (the same dict), has that world's fact: its group, by the outcomes' id
                        unchanged: dict[int, int] = {}
                        chunk_worlds = own if not lean or number_in_stage < stage.whatif_chunks else own[:lean_from]
                        for index, changes in enumerate(chunk_worlds):
                            values = outs[index]
                            touched = bool(changes) and not pathset.isdisjoint(changes)
                            if touched:
                                body = ",".join([changes[p] if p in changes else common[p]
                                                 for p in paths if p in changes or p in common])
                            else:
                                group = unchanged.get(id(values))
                                if group is not None:
                                    groups[group].append(index)
                                    continue
                                body = shared
                            if keys:
                                tail = ",".join([values[k] for k in keys])  # type: ignore[index]
                                body = f"{body},{tail}" if body else tail
                            group = seen.get(body)
                            if group is None:
                                group = seen[body] = len(groups)
                                groups.append([])
                                facts.append(f'{{"sid":"{sid}","world":{group},"id":{next_id},"chunk":{chunk}'
                                             f'{"," if body else ""}{body}}}')
                                next_id += 1
                            groups[group].append(index)
                            if not touched:
                                unchanged[id(values)] = group
                    self._assert(handle, "[" + ",".join(facts) + "]", outcomes, groups,
                                 stage.terms * len(groups) + 1)
                clean = True
            finally:
                _NEXT_ID = next_id
                self._end(handle, sid, range(first, next_id), clean)
                if self._closed:
                    self._free()
        return [list(o.fired.values()) for o in outcomes]

    @staticmethod
    def _lean_outcomes(outs: list[Any], lean_from: int, keys: frozenset[str]) -> None:
        """A lean world reads the what-if's outcomes (``keys``) as its own and the others as the first
        world's: the same dict as the first world's when those agree."""
        first = outs[0]
        merged: dict[int, dict[str, str]] = {}
        for index in range(lean_from, len(outs)):
            values = outs[index]
            if values is first:
                continue
            found = merged.get(id(values))
            if found is None:
                if all(values[k] == first[k] for k in keys):
                    found = first
                else:
                    found = dict(first)
                    for k in keys:
                        found[k] = values[k]
                merged[id(values)] = found
            outs[index] = found

    def _end(self, handle: int, sid: str, ids: range, clean: bool) -> None:
        """Retract this evaluation's facts from a kept session; delete a session that failed or is not kept."""
        if clean and sid == self._sid:
            try:
                _dre.retract_facts(handle, "[" + ",".join([f'{{"sid":"{sid}","id":{i}}}' for i in ids]) + "]")
                self._dirty = False
                return
            except _dre.error:
                pass
        if sid == self._sid:
            self._drop()
        else:
            _dre.delete_state(handle, sid)

    def _assert(self, handle: int, facts: str, outcomes: list[_Outcomes], groups: list[list[int]],
                limit: int) -> None:
        """Assert one stage's facts and credit each fired rule to the worlds of the fact it matched."""
        try:
            code, state = _dre.assert_facts(handle, facts)
        except _dre.error as exc:
            raise EngineError(f"durable-rules failed on {self.label}: {exc}") from None
        # Code 1 ("not handled") means that SOME fact of the batch matched no rule, not that nothing
        # fired: the other facts' actions are pending all the same, so the queue is always drained.
        if code not in (0, 1):
            raise EngineError(f"durable-rules answered {code} on {self.label} (facts observed twice?)")
        terms = self._term_units
        action = _dre.start_action_for_state(handle, state)
        message = action[1] if action else None
        messages: list[str] = []
        complete = _dre.complete_and_start_action
        while message:
            messages.append(message)
            if len(messages) > limit:  # every term is a plain conjunction: it fires at most once per fact
                raise EngineError(f"durable-rules kept firing on {self.label} (more than {limit} firings)")
            message = complete(handle, state)
        # each group's units in firing order, credited to the group's worlds once all are read
        fired: dict[str, list[tuple[str, Unit]]] = {}
        for name, group in _read_messages(messages):
            found = terms.get(name)
            if found is None:
                if name == SENTINEL:
                    continue
                raise EngineError(f"durable-rules fired an unknown rule {name!r} on {self.label}")
            units = fired.get(group)
            if units is None:
                units = fired[group] = []
            units.append(found)
        for group, units in fired.items():
            number = int(group)
            if not 0 <= number < len(groups):
                raise EngineError(f"durable-rules returned a fact of an unknown world for {units[0][0]!r}")
            for world in groups[number]:
                setdefault = outcomes[world].fired.setdefault
                for unit_name, unit in units:
                    setdefault(unit_name, unit)


def _read_messages(messages: list[str]) -> list[tuple[str, str]]:
    """(term name, world index as written) of each rule in the fired messages, in order."""
    match = _MESSAGE.match  # our facts start with sid and world: read without decoding the fact
    found = [m.groups() if (m := match(message)) else None for message in messages]
    if None in found:
        return [pair for message in messages for pair in _read_message(message)]
    return found  # type: ignore[return-value]


def _read_message(message: str) -> list[tuple[str, str]]:
    """(term name, world index as written) of each rule in a fired message."""
    match = _MESSAGE.match(message)  # our facts start with sid and world: read without decoding the fact
    if match:
        return [(match["name"], match["world"])]
    found = []
    for name, payload in json.loads(message).items():
        fact = payload.get("m", payload) if isinstance(payload, dict) else None
        if not isinstance(fact, dict) or not isinstance(fact.get("world"), int):
            raise EngineError(f"durable-rules returned an unexpected message for {name!r}")
        found.append((name, str(fact["world"])))
    return found

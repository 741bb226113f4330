"""The one module that talks to durable-rules.

How the engine is used, and why (measured on durable-rules 2.0.28 on a 2-core machine):

* We drive durable's C core (``durable_rules_engine``) directly and run no Python actions: a unit's
  "action" is its name, which we read back from the engine. So no background ``Host`` timer threads
  (they segfault under thread stress), no exception can be swallowed into session state, and a
  fired rule costs about 10 µs instead of about 35 µs through ``durable.engine``.
* Facts, not events: every matching rule fires, not only the first.
* Every evaluation has its own session id and its state is deleted in ``finally``. One process-wide
  lock is held from the first assert to the delete, so there is one live session at a time: no
  1,024-session limit, no sid hash collisions, no two evaluations meeting in the C core.
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
from typing import Any, Optional

import durable_rules_engine as _dre

from ._compile import Program, Unit, number_text, urgency_of
from ._errors import EngineError

_LOCK = threading.Lock()
_SIDS = itertools.count(1)
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


def encode(value: Any) -> str | None:
    """A case value as a JSON fragment the engine reads; ``None`` for a choice or number not given."""
    if value is True:
        return YES
    if value is False:
        return NO
    if value is None:
        return None
    return to_json(value)


def _action_sets(units: Any) -> tuple[set[str], set[str]]:
    """The actions before the replacements and the final ones (as :func:`settle_actions`, ids only)."""
    added: set[str] = set()
    removed: set[str] = set()
    replacements = []
    for unit in units:
        for out in unit.outputs:
            kind = out.kind
            if kind == "action":
                added.add(out.id)
            elif kind == "remove":
                removed.add(out.id)
            elif kind == "replace":
                replacements.append((out.id, out.target))
    before = added - removed
    if not replacements:
        return before, before
    final = set(before)
    for old, new in replacements:
        if old in final:
            final.discard(old)
            final.add(new)
    return before, final


class _Outcomes:
    """What later stages may read of the units fired so far for one world."""

    __slots__ = ("fired",)

    def __init__(self) -> None:
        self.fired: dict[str, Unit] = {}

    def fragments(self, stage: Any, values: dict[str, str]) -> None:
        """Write the outcomes the stage reads into ``values`` (alias -> its ``"alias":value`` pair)."""
        units = self.fired
        if stage.concepts:
            have = {u.concept for u in units.values() if u.concept}
            for c, key in stage.concepts:
                values[key] = f'"{key}":{YES if c in have else NO}'
        for f, key in stage.fired:
            values[key] = f'"{key}":{YES if f in units else NO}'
        if stage.actions or stage.final_actions:
            before, final = _action_sets(units.values())
            # A rule reads an action as it stands before the replacements (the last step), and the
            # action that replaces it once made; a headline reads the final actions.
            for a, key in stage.actions:
                values[key] = f'"{key}":{YES if a in before or a in final else NO}'
            for a, key in stage.final_actions:
                values[key] = f'"{key}":{YES if a in final else NO}'
        if stage.urgency:
            values[stage.urgency] = f'"{stage.urgency}":"{urgency_of(units.values())}"'


class CompiledEngine:
    """One compiled :class:`Program` loaded in durable's C core (per process, created on first use)."""

    def __init__(self, label: str, program: Program):
        self.label = label
        self.program = program
        definition = dict(program.definition)
        definition[SENTINEL] = {"all": [{"m": {"chunk": _SENTINEL_CHUNK}}]}
        self._definition = to_json(dict(sorted(definition.items())))
        self._handle: int | None = None
        self._pid: int | None = None
        # What each chunk's fact carries: the case fields (written once per world) and the outcomes.
        self._prefix = {path: f'"{alias}":' for stage in program.stages for path, alias in stage.fields}
        self._plan = []
        for stage in program.stages:
            path_of = {alias: path for path, alias in stage.fields}
            chunks = []
            for chunk, keys in zip(stage.chunks, stage.chunk_keys):
                chunks.append((chunk, tuple(path_of[k] for k in keys if k in path_of),
                               tuple(k for k in keys if k not in path_of)))
            self._plan.append((stage, tuple(chunks)))

    def _ensure_handle(self) -> int:
        pid = os.getpid()
        if self._handle is None or self._pid != pid:
            try:
                self._handle = _dre.create_ruleset(self.label, self._definition)
            except _dre.error as exc:  # pragma: no cover - the compiler's output is tested
                raise EngineError(f"durable-rules refused the compiled ruleset {self.label}: {exc}") from None
            self._pid = pid
        return self._handle  # type: ignore[return-value]

    def run(self, worlds: list[dict[str, str]], base: Optional[dict[str, str]] = None) -> list[list[Unit]]:
        """Evaluate each world in one session; the units fired for each world, in firing order.

        A world maps a case field's path to its value as a JSON fragment (see :func:`encode`);
        a choice or a number that was not given is left out. With ``base``, each world holds only what
        differs from it (the what-if's trials): the base is written once.
        """
        program = self.program
        if not program.stages or not worlds:  # nothing to match: no session is opened
            return [[] for _ in worlds]
        outcomes = [_Outcomes() for _ in worlds]
        prefix = self._prefix
        if base is None:
            rendered = [{p: prefix[p] + value for p, value in world.items() if p in prefix} for world in worlds]
        else:
            common = {p: prefix[p] + value for p, value in base.items() if p in prefix}
            rendered = [{**common, **{p: prefix[p] + value for p, value in world.items() if p in prefix}}
                        for world in worlds]
        sid = str(next(_SIDS))
        with _LOCK:
            handle = self._ensure_handle()
            try:
                for number, (stage, chunks) in enumerate(self._plan):
                    facts = [f'{{"sid":"{sid}","chunk":{_SENTINEL_CHUNK},"world":-1}}'] if number == 0 else []
                    for index, pairs in enumerate(rendered):
                        values: dict[str, str] = {}
                        outcomes[index].fragments(stage, values)
                        head = f'{{"sid":"{sid}","world":{index},'
                        for chunk, paths, outs in chunks:
                            body = ",".join([pairs[p] for p in paths if p in pairs] + [values[k] for k in outs])
                            facts.append(f'{head}"chunk":{chunk}{"," if body else ""}{body}}}')
                    self._assert(handle, "[" + ",".join(facts) + "]", outcomes, stage.terms * len(worlds) + 1)
            finally:
                _dre.delete_state(handle, sid)
        return [list(o.fired.values()) for o in outcomes]

    def _assert(self, handle: int, facts: str, outcomes: list[_Outcomes], limit: int) -> None:
        try:
            code, state = _dre.assert_facts(handle, facts)
        except _dre.error as exc:
            raise EngineError(f"durable-rules failed on {self.label}: {exc}") from None
        # Code 1 ("not handled") means that SOME fact of the batch matched no rule, not that nothing
        # fired: the other facts' actions are pending all the same, so the queue is always drained.
        if code not in (0, 1):
            raise EngineError(f"durable-rules answered {code} on {self.label} (facts observed twice?)")
        terms = self.program.terms
        units = self.program.units
        count = 0
        action = _dre.start_action_for_state(handle, state)
        message = action[1] if action else None
        while message:
            for name, world in _read_message(message):
                if name == SENTINEL:
                    continue
                unit_name = terms.get(name)
                if unit_name is None:
                    raise EngineError(f"durable-rules fired an unknown rule {name!r} on {self.label}")
                if not 0 <= world < len(outcomes):
                    raise EngineError(f"durable-rules returned a fact of an unknown world for {name!r}")
                outcomes[world].fired.setdefault(unit_name, units[unit_name])
            count += 1
            if count > limit:  # every term is a plain conjunction: it fires at most once per fact
                raise EngineError(f"durable-rules kept firing on {self.label} (more than {limit} firings)")
            message = _dre.complete_and_start_action(handle, state)


def _read_message(message: str) -> list[tuple[str, int]]:
    """(term name, world index) of each rule in a fired message."""
    match = _MESSAGE.match(message)  # our facts start with sid and world: read without decoding the fact
    if match:
        return [(match["name"], int(match["world"]))]
    found = []
    for name, payload in json.loads(message).items():
        fact = payload.get("m", payload) if isinstance(payload, dict) else None
        if not isinstance(fact, dict) or not isinstance(fact.get("world"), int):
            raise EngineError(f"durable-rules returned an unexpected message for {name!r}")
        found.append((name, fact["world"]))
    return found

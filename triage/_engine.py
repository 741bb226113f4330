"""The one module that talks to durable-rules.

How the engine is used, and why (measured on durable-rules 2.0.28, see HOUSE_STYLE.md):

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
"""

from __future__ import annotations

import itertools
import json
import os
import re
import threading
from typing import Any, Iterable

import durable_rules_engine as _dre

from ._compile import Program, Unit, urgency_of
from ._errors import EngineError

_LOCK = threading.Lock()
_SIDS = itertools.count(1)
_RESERVED = {"sid", "world", "chunk", "outcome", "id"}
SENTINEL = "session_sentinel"
_SENTINEL_CHUNK = -1
# A fired message is {"<unit>":{"m":{<the fact>}}}. Facts hold only validated enum strings, numbers and
# our own keys (no free text), so the unit name and the fact's world index can be read without decoding
# the whole fact; anything else falls back to json.loads.
_MESSAGE = re.compile(r'^\{"(?P<name>[A-Za-z0-9_]+)":\{"m":\{.*"world": ?(?P<world>-?\d+)[,}]', re.S)


def _reset_after_fork() -> None:
    global _LOCK
    _LOCK = threading.Lock()


os.register_at_fork(after_in_child=_reset_after_fork)


def encode(value: Any) -> Any:
    """A case value as the engine sees it; ``None`` for a choice or number means 'leave it out'."""
    if value is True:
        return "yes"
    if value is False:
        return "no"
    return value


def outcome_of(units: Iterable[Unit], actions: tuple[str, ...], with_urgency: bool) -> dict[str, Any]:
    """What later stages may read: presence of the named actions (after removals) and the urgency."""
    units = list(units)
    added = {o.id for u in units for o in u.outputs if o.kind == "action"}
    removed = {o.id for u in units for o in u.outputs if o.kind == "remove"}
    result: dict[str, Any] = {}
    if actions:
        result["actions"] = {a: ("yes" if a in added and a not in removed else "no") for a in actions}
    if with_urgency:
        result["urgency"] = urgency_of(units)
    return result


class CompiledEngine:
    """One compiled :class:`Program` loaded in durable's C core (per process, created on first use)."""

    def __init__(self, label: str, program: Program):
        self.label = label
        self.program = program
        definition = dict(program.definition)
        definition[SENTINEL] = {"all": [{"m": {"chunk": _SENTINEL_CHUNK}}]}
        self._definition = json.dumps(definition, ensure_ascii=False, sort_keys=True)
        self._handle: int | None = None
        self._pid: int | None = None
        self._max_firings = max(1, len(program.units))
        clash = [f for f in program.fields if set(f.split(".")) & _RESERVED]
        if clash:  # the message reader and the outcome facts rely on these keys being ours alone
            raise EngineError(f"case fields {clash} use a key reserved by the engine ({sorted(_RESERVED)})")

    def _ensure_handle(self) -> int:
        pid = os.getpid()
        if self._handle is None or self._pid != pid:
            try:
                self._handle = _dre.create_ruleset(self.label, self._definition)
            except _dre.error as exc:  # pragma: no cover - the compiler's output is tested
                raise EngineError(f"durable-rules refused the compiled ruleset {self.label}: {exc}") from None
            self._pid = pid
        return self._handle

    def run(self, worlds: list[dict[str, Any]]) -> list[list[Unit]]:
        """Evaluate each world (a nested fact dict) in one session; the units fired for each world."""
        fired: list[list[Unit]] = [[] for _ in worlds]
        program = self.program
        if not program.stages or not worlds:  # nothing to match: no session is opened
            return fired
        sid = str(next(_SIDS))
        with _LOCK:
            handle = self._ensure_handle()
            try:
                for stage, chunks in enumerate(program.stages):
                    facts = [{"sid": sid, "chunk": _SENTINEL_CHUNK, "world": -1}] if stage == 0 else []
                    for index, world in enumerate(worlds):
                        base = dict(world, sid=sid, world=index)
                        if program.needs_actions[stage] or program.needs_urgency[stage]:
                            base["outcome"] = outcome_of(fired[index], program.needs_actions[stage],
                                                         program.needs_urgency[stage])
                        for chunk in chunks:
                            facts.append(dict(base, chunk=chunk))
                    self._assert(handle, facts, fired, len(facts))
            finally:
                _dre.delete_state(handle, sid)
        return fired

    def _assert(self, handle: int, facts: list[dict[str, Any]], fired: list[list[Unit]], n_facts: int) -> None:
        try:
            code, state = _dre.assert_facts(handle, json.dumps(facts, ensure_ascii=False))
        except _dre.error as exc:
            raise EngineError(f"durable-rules failed on {self.label}: {exc}") from None
        # Code 1 ("not handled") means that SOME fact of the batch matched no rule, not that nothing
        # fired: the other facts' actions are pending all the same, so the queue is always drained.
        if code not in (0, 1):
            raise EngineError(f"durable-rules answered {code} on {self.label} (facts observed twice?)")
        units = self.program.units
        limit = self._max_firings * n_facts
        count = 0
        action = _dre.start_action_for_state(handle, state)
        message = action[1] if action else None
        while message:
            for name, world in _read_message(message):
                if name == SENTINEL:
                    continue
                unit = units.get(name)
                if unit is None:
                    raise EngineError(f"durable-rules fired an unknown rule {name!r} on {self.label}")
                if not 0 <= world < len(fired):
                    raise EngineError(f"durable-rules returned a fact of an unknown world for {name!r}")
                fired[world].append(unit)
            count += 1
            if count > limit:
                raise EngineError(f"durable-rules kept firing on {self.label} (more than {limit} firings)")
            message = _dre.complete_and_start_action(handle, state)


def _read_message(message: str) -> list[tuple[str, int]]:
    """(unit name, world index) of each rule in a fired message."""
    match = _MESSAGE.match(message)
    if match:
        return [(match["name"], int(match["world"]))]
    found = []
    for name, payload in json.loads(message).items():
        fact = payload.get("m", payload) if isinstance(payload, dict) else None
        if not isinstance(fact, dict) or not isinstance(fact.get("world"), int):
            raise EngineError(f"durable-rules returned an unexpected message for {name!r}")
        found.append((name, fact["world"]))
    return found

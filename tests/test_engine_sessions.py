"""Kept durable sessions (triage/_engine.py): reusing a session never changes an answer.

Each compiled program keeps one durable session per process and retracts an evaluation's facts at
its end instead of deleting the session. These tests check what a user relies on: the same answers as
with a fresh session for every evaluation, whatever came before; an empty session after each
evaluation; a session that failed is never reused.
"""

from __future__ import annotations

import json
import random

import durable_rules_engine as dre
import pytest

import triage
from triage import _engine
from triage._errors import EngineError
from triage._random_cases import random_valid_cases


def _cases() -> list[dict]:
    cases = list(random_valid_cases(seed=2207, n=150, density=0.5))
    cases += list(random_valid_cases(seed=2208, n=100, density=0.9))   # dense: most findings present
    cases += [{}, {"presentation": {"weakness": {"present": True}}, "patient": {"cancer": {"history": "current"}}}]
    return cases


def test_kept_sessions_answer_as_fresh_sessions(monkeypatch: pytest.MonkeyPatch) -> None:
    cases = _cases()
    random.Random(5).shuffle(cases)
    kept = triage.load_ruleset()
    kept_answers = [kept.evaluate(case).model_dump() for case in cases]
    assert any(engine._sid is not None for engine in _engine._LIVE), "no session was kept"

    monkeypatch.setattr(_engine, "MAX_KEPT_RULES", 0)   # a new session for every run, deleted after it
    fresh = triage.load_ruleset()
    order = list(range(len(cases)))
    random.Random(6).shuffle(order)                     # another order: nothing may depend on what came before
    for i in order:
        assert fresh.evaluate(cases[i]).model_dump() == kept_answers[i], f"case {i} differs"
    assert fresh._full._sid is None


def test_a_kept_session_is_empty_after_each_evaluation() -> None:
    ruleset = triage.load_ruleset()
    for case in _cases()[:40]:
        ruleset.evaluate(case)
        for engine in list(_engine._LIVE):
            if engine._sid is not None and engine._pid is not None:
                assert json.loads(dre.get_facts(engine._handle, engine._sid)) == []   # type: ignore[arg-type]
                assert json.loads(dre.get_events(engine._handle, engine._sid)) == []  # type: ignore[arg-type]


def test_kept_sessions_stay_within_their_budget() -> None:
    ruleset = triage.load_ruleset()
    for case in _cases():
        ruleset.evaluate(case)
        assert _engine._KEPT[0] == sum(_engine._LIVE.values()) <= _engine.MAX_KEPT_RULES


def test_a_session_that_failed_is_not_reused(monkeypatch: pytest.MonkeyPatch) -> None:
    ruleset = triage.load_ruleset()
    case = {"presentation": {"weakness": {"present": True}}, "patient": {"cancer": {"history": "current"}}}
    expected = ruleset.evaluate(case).model_dump()
    engine = ruleset._full
    before = engine._sid
    assert before is not None

    real = dre.assert_facts
    calls = {"n": 0}

    def failing(handle: int, facts: str):  # the second stage fails inside durable
        calls["n"] += 1
        if calls["n"] == 2:
            raise dre.error("Could not assert facts, error code: 999")
        return real(handle, facts)

    monkeypatch.setattr(_engine._dre, "assert_facts", failing)
    with pytest.raises(EngineError):
        ruleset.evaluate_afresh(case)
    assert engine._sid is None and engine not in _engine._LIVE   # deleted, not kept
    monkeypatch.setattr(_engine._dre, "assert_facts", real)
    assert ruleset.evaluate_afresh(case).model_dump() == expected
    assert engine._sid not in (None, before)


def test_a_closed_program_loads_again_for_a_late_run_and_frees_itself_after() -> None:
    """A program closed while a thread still holds it is loaded again for that run and freed after it;
    its answers are the same."""
    from triage._engine import CompiledEngine
    from triage._triage import _flatten
    from triage._case import normalised_dict, validate_case

    ruleset = triage.load_ruleset()
    flat = _flatten(normalised_dict(validate_case({"presentation": {"weakness": {"present": True}}})))
    engine = CompiledEngine("closed-test", ruleset.compiled.full)
    first = [u.name for u in engine.run([flat])[0]]
    engine.close()
    assert engine._handle is None and engine._sid is None
    assert [u.name for u in engine.run([flat])[0]] == first   # a late run loads it again...
    assert engine._handle is None                              # ...and frees it once done


def test_a_program_definition_is_written_as_durable_reads_it() -> None:
    from triage._engine import _definition_json, to_json

    definition = dict(sorted(triage.load_ruleset().program.definition.items()))
    assert _definition_json(definition) == to_json(definition)
    tiny = {"r0_t0": {"all": [{"m": {"$and": [{"chunk": 0}, {"$lt": {"k1": 1e-05}}]}}]}}
    assert "1e-05" not in _definition_json(tiny) and "0.00001" in _definition_json(tiny)


def test_a_ruleset_dropped_without_close_frees_its_engine_at_the_next_run(rules_copy) -> None:
    """In-process audit (5 December): each ruleset loaded, used and dropped kept about 8 MB of durable's
    C memory for ever (RSS rose in a straight line, 55 to 1,145 MB over 120 reloads)."""
    import gc
    import weakref

    case = {"presentation": {"weakness": {"present": True}}}
    rs = triage.load_ruleset(rules_copy)
    rs.evaluate(case)
    engine = rs._full
    assert engine._handle is not None
    ref = weakref.ref(rs)
    del rs
    gc.collect()
    assert ref() is None and engine in _engine._PENDING   # queued, never freed inside a collection
    triage.default_ruleset().evaluate(case)                # the next run frees it
    assert engine not in _engine._PENDING and engine._handle is None and engine not in _engine._LIVE
    again = triage.load_ruleset(rules_copy)
    again.evaluate(case)
    again.close()                                          # or now, by hand
    assert again._full._handle is None
    assert again.evaluate(case).urgency == "emergency"     # a late evaluation still works


def test_a_run_whose_cleanup_was_interrupted_leaves_no_fact_for_the_next(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process audit (5 December): an exception at the first line of the run's cleanup left its facts
    in the kept session, and the next evaluation, of another case, silently lost its unknowns."""
    import inspect
    import sys

    a = {"patient": {"cancer": {"history": "current", "primary": "prostate"}},
         "presentation": {"focal_vertebral_pain": {"present": True, "region": "thoracic"},
                          "weakness": {"present": True, "limbs": "legs", "bilateral": True, "progressive": True}}}
    b = {"patient": {"cancer": {"history": "none"}}, "presentation": {"sciatica": {"present": True}}}
    want = triage.load_ruleset().evaluate_afresh(b).to_json()
    rs = triage.load_ruleset()
    rs.evaluate_afresh(a)   # the kept session exists
    lines, start = inspect.getsourcelines(_engine.CompiledEngine.run)
    target = start + next(i for i, text in enumerate(lines) if text.strip() == "_NEXT_ID = next_id")
    code = _engine.CompiledEngine.run.__code__

    def local(frame, event, arg):  # type: ignore[no-untyped-def]
        if event == "line" and frame.f_lineno == target:
            raise KeyboardInterrupt
        return local

    sys.settrace(lambda frame, event, arg: local if frame.f_code is code else None)
    try:
        with pytest.raises(KeyboardInterrupt):
            rs.evaluate_afresh(a)
    finally:
        sys.settrace(None)
    assert rs.evaluate_afresh(b).to_json() == want
    assert rs.evaluate_afresh(b).to_json() == want


def test_outcomes_kept_across_runs_answer_as_outcomes_read_afresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a stage reads of the outcomes so far is kept across runs, by the relevant units fired: the
    answers are those of outcomes read afresh for every world."""
    cases = _cases() + list(random_valid_cases(seed=2209, n=400, density=0.1))   # sparse: routine and urgent
    monkeypatch.setattr(_engine, "MAX_KNOWN_FRAGMENTS", 0)
    afresh = triage.load_ruleset()
    answers = [afresh._evaluate(case, kept=False).model_dump() for case in cases]
    assert all(reads is None or not reads.known for _, reads, _ in afresh._full._plan)

    monkeypatch.setattr(_engine, "MAX_KNOWN_FRAGMENTS", 4096)
    keeping = triage.load_ruleset()
    for case in cases:
        keeping._evaluate(case, kept=False)
    for i in reversed(range(len(cases))):  # every case again, its outcomes read from what the others left
        assert keeping._evaluate(cases[i], kept=False).model_dump() == answers[i], f"case {i} differs"
    assert all(reads is None or len(reads.known) > 1 for _, reads, _ in keeping._full._plan)


def test_fired_messages_are_read_with_or_without_the_fast_path() -> None:
    fast = ['{"t_1":{"m":{"sid":"4","world":0,"id":7,"chunk":2,"a":"yes"}}}',
            '{"t_2":{"m":{"sid":"4","world":12,"id":8,"chunk":2}}}']
    assert _engine._read_messages(fast) == [("t_1", "0"), ("t_2", "12")]
    # a message durable wrote in another order is decoded as JSON, and the order of firing is kept
    reordered = ['{"t_3":{"m":{"id":9,"world":3,"sid":"4"}}}']
    assert _engine._read_messages(fast + reordered) == [("t_1", "0"), ("t_2", "12"), ("t_3", "3")]
    with pytest.raises(EngineError, match="unexpected message"):
        _engine._read_messages(['{"t_4":{"m":{"sid":"4","id":9}}}'])

"""The minimal Flask + gunicorn + durable-rules app that issue 26 compares ``POST /v1/triage`` against.

One POST endpoint: parse the JSON case, flatten a handful of its findings into one fact, assert it
into a small durable-rules ruleset (six rules) through durable's C core (``durable_rules_engine``,
as ``triage/_engine.py`` does, with one process-wide lock and the ruleset created lazily in each
worker), read back the rules that fired and answer a small JSON result. No validation, no record,
no explanation: the floor a rules service over HTTP cannot go below with this stack.

Served by plain gunicorn (gthread workers), e.g.::

    .venv/bin/gunicorn -k gthread -w 2 --threads 2 -b 127.0.0.1:8001 \\
        --chdir benchmarks 'minimal_app:create_app()'

``benchmarks/http_compare.sh`` starts it beside ``triage serve`` with the same workers x threads.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
from typing import Any

import durable_rules_engine as dre
from flask import Flask, Response, request

RULES = {
    "emergency_weakness": {"all": [{"m": {"$and": [{"pain": "yes"}, {"weak": "yes"}]}}]},
    "emergency_cauda_equina": {"all": [{"m": {"$and": [{"sciatica_bilateral": "yes"}]}}]},
    "urgent_nocturnal_pain": {"all": [{"m": {"$and": [{"pain": "yes"}, {"nocturnal": "yes"}]}}]},
    "urgent_pain_with_cancer": {"all": [{"m": {"$and": [{"pain": "yes"}, {"cancer": "current"}]}}]},
    "hypercalcaemia": {"all": [{"m": {"$and": [{"$gt": {"calcium": 2.6}}]}}]},
    "any_case": {"all": [{"m": {"$and": [{"chunk": 1}]}}]},   # always fires (durable needs one action)
}
URGENCY = {"emergency_weakness": "emergency", "emergency_cauda_equina": "emergency",
           "urgent_nocturnal_pain": "urgent", "urgent_pain_with_cancer": "urgent", "hypercalcaemia": "urgent"}
RANK = {"routine": 0, "urgent": 1, "emergency": 2}

_LOCK = threading.Lock()
_SIDS = itertools.count(1)
_HANDLE: dict[int, int] = {}   # pid -> durable ruleset handle (created after the fork)


def _handle() -> int:
    pid = os.getpid()
    if pid not in _HANDLE:
        _HANDLE[pid] = dre.create_ruleset("minimal", json.dumps(RULES))
    return _HANDLE[pid]


def _yes(node: Any, *keys: str) -> str:
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    return "yes" if node is True else "no"


def evaluate(case: dict[str, Any]) -> list[str]:
    """The names of the rules that fired for ``case`` (a fresh durable session, deleted after)."""
    presentation = case.get("presentation") or {}
    calcium = (case.get("labs") or {}).get("corrected_calcium_mmol_l")
    sid = str(next(_SIDS))
    fact = {"sid": sid, "id": 1, "chunk": 1,
            "pain": _yes(presentation, "focal_vertebral_pain", "present"),
            "nocturnal": _yes(presentation, "focal_vertebral_pain", "nocturnal"),
            "weak": _yes(presentation, "weakness", "present"),
            "sciatica_bilateral": _yes(presentation, "sciatica", "bilateral"),
            "cancer": str(((case.get("patient") or {}).get("cancer") or {}).get("history", "unknown")),
            "calcium": float(calcium) if isinstance(calcium, (int, float)) else 0.0}
    fired = []
    with _LOCK:
        handle = _handle()
        try:
            _, state = dre.assert_facts(handle, json.dumps([fact]))
            action = dre.start_action_for_state(handle, state)
            message = action[1] if action else None
            while message:
                fired.extend(json.loads(message))
                message = dre.complete_and_start_action(handle, state)
        finally:
            dre.delete_state(handle, sid)
    return sorted(name for name in fired if name in URGENCY)


def create_app() -> Flask:
    app = Flask(__name__)

    @app.post("/v1/triage")
    def triage_case() -> Response:
        case = request.get_json(force=True)
        if not isinstance(case, dict):
            return Response('{"error": "a JSON object is needed"}', status=422, mimetype="application/json")
        fired = evaluate(case)
        urgency = max((URGENCY[name] for name in fired), key=RANK.__getitem__, default="routine")
        return Response(json.dumps({"urgency": urgency, "fired": fired}), mimetype="application/json")

    @app.get("/healthz")
    def healthz() -> Response:
        return Response('{"status": "ok"}', mimetype="application/json")

    return app

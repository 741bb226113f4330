"""Re-evaluating recorded decisions, on every core: ``triage audit replay`` and ``triage impact``.

The parent process only reads record bodies (unparsed text) from the store and hands them out in
chunks; each worker process (started with ``spawn``: it inherits no engine state) loads the rulesets
it needs once, parses, evaluates and compares, and sends back only what differs. The parent never
evaluates anything.

Memory stays flat whatever the size of the record: the store is read in batches, at most a few chunks
are in flight (the pool's input pipe blocks the reader while the workers are busy), and the reports
keep counts, not records: replay keeps the records recorded under a ruleset not given as a count per
sha256, impact keeps only the first ``keep`` changes in report order (``None``: all, for the JSON
report). Results come back in record order, so a report is the same whatever the number of workers.
``progress`` (if given) is called with the number of records done after each chunk.

- replay: each record is evaluated with the ruleset it was recorded under (matched by sha256); the
  result must equal the recorded one exactly (``case_id`` aside, which is never recorded).
- impact: each record is evaluated with a candidate ruleset; urgency, action ids and flag ids are
  compared with the recorded result.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

from ._conditions import URGENCY_RANK
from ._record import recorded_result

CHUNK = 200

# worker state: one per process, set by _init
_RULESETS: dict[str, Any] = {}
_PATHS: dict[str, Optional[str]] = {}
_CANDIDATE: Optional[str] = None


def _init(paths: dict[str, Optional[str]], candidate: Optional[str]) -> None:
    global _CANDIDATE
    _PATHS.clear()
    _PATHS.update(paths)
    _RULESETS.clear()
    _CANDIDATE = candidate


def _ruleset(sha: str) -> Any:
    found = _RULESETS.get(sha)
    if found is None:
        from ._triage import load_ruleset

        found = _RULESETS[sha] = load_ruleset(_PATHS[sha])
    return found


def _readable(text: Any) -> Optional[dict[str, Any]]:
    """A decision record's body, or None when it is damaged (not JSON, or without its case, result, ruleset)."""
    try:
        body = json.loads(text)
    except (TypeError, ValueError):
        return None
    if not isinstance(body, dict) or not isinstance(body.get("ruleset"), dict) or "sha256" not in body["ruleset"] \
            or not isinstance(body.get("result"), dict) or "case" not in body or "id" not in body:
        return None
    return body


def _replay_chunk(chunk: list[tuple[int, str]]) -> tuple[int, list[tuple[int, str, str, str]]]:
    """The chunk's size and (seq, id, kind, detail) for every record that does not replay identically."""
    out = []
    for seq, text in chunk:
        body = _readable(text)
        if body is None:
            out.append((seq, "?", "damaged", "its content is not a decision record's JSON"))
            continue
        sha = body["ruleset"]["sha256"]
        if sha not in _PATHS:
            out.append((seq, body["id"], "missing", sha))
            continue
        try:
            again = recorded_result(_ruleset(sha).evaluate(body["case"]))
        except Exception as exc:  # noqa: BLE001 - any failure to reproduce is reported, not raised
            out.append((seq, body["id"], "error", f"{type(exc).__name__}: {exc}"))
            continue
        if again != body["result"]:
            out.append((seq, body["id"], "differs", _describe(body["result"], again)))
    return len(chunk), out


def _describe(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return "differs in " + ", ".join(keys)


@dataclass(frozen=True)
class Change:
    seq: int
    id: str
    time: str
    channel: str
    old_urgency: str
    new_urgency: str
    added_actions: tuple[str, ...]
    removed_actions: tuple[str, ...]
    added_flags: tuple[str, ...]
    removed_flags: tuple[str, ...]

    @property
    def direction(self) -> str:
        delta = URGENCY_RANK[self.new_urgency] - URGENCY_RANK[self.old_urgency]
        return "down" if delta < 0 else "up" if delta > 0 else "same"

    def as_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "id": self.id, "time": self.time, "channel": self.channel,
                "urgency": [self.old_urgency, self.new_urgency], "direction": self.direction,
                "actions": {"added": list(self.added_actions), "removed": list(self.removed_actions)},
                "flags": {"added": list(self.added_flags), "removed": list(self.removed_flags)}}


def _impact_chunk(chunk: list[tuple[int, str]]) -> tuple[int, list[Change], list[tuple[int, str, str]]]:
    assert _CANDIDATE is not None  # set by _init  # noqa: S101 - internal invariant of the worker
    rs = _ruleset(_CANDIDATE)
    changes, errors = [], []
    for seq, text in chunk:
        body = _readable(text)
        if body is None:
            errors.append((seq, "?", "damaged: its content is not a decision record's JSON"))
            continue
        old = body["result"]
        try:
            new = rs.evaluate(body["case"])
        except Exception as exc:  # noqa: BLE001 - a recorded case the candidate cannot evaluate is reported
            errors.append((seq, body["id"], f"{type(exc).__name__}: {exc}"))
            continue
        old_actions = [a["id"] for a in old["actions"]]
        old_flags = [f["id"] for f in old["flags"]]
        new_actions, new_flags = new.action_ids(), new.flag_ids()
        if old["urgency"] != new.urgency or set(old_actions) != set(new_actions) or set(old_flags) != set(new_flags):
            changes.append(Change(
                seq, body["id"], body["time"], body["channel"], old["urgency"], new.urgency,
                tuple(a for a in new_actions if a not in old_actions), tuple(a for a in old_actions if a not in new_actions),
                tuple(f for f in new_flags if f not in old_flags), tuple(f for f in old_flags if f not in new_flags)))
    return len(chunk), changes, errors


def _chunks(rows: Iterable[tuple[int, str]], size: int = CHUNK) -> Iterator[list[tuple[int, str]]]:
    chunk: list[tuple[int, str]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _run(func: Any, rows: Iterable[tuple[int, str]], paths: dict[str, Optional[str]], candidate: Optional[str],
         jobs: Optional[int]) -> Iterator[Any]:
    jobs = jobs or os.cpu_count() or 1
    if jobs <= 1:
        _init(paths, candidate)
        for chunk in _chunks(rows):
            yield func(chunk)
        return
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(jobs, initializer=_init, initargs=(paths, candidate)) as pool:
        yield from pool.imap(func, _chunks(rows), chunksize=1)


@dataclass
class ReplayReport:
    checked: int = 0
    failures: list[tuple[int, str, str, str]] = field(default_factory=list)   # (seq, id, kind, detail)
    missing: Counter[str] = field(default_factory=Counter)     # records per ruleset sha256 not given

    @property
    def ok(self) -> bool:
        return not self.failures and not self.missing

    @property
    def failed(self) -> int:
        return len(self.failures) + sum(self.missing.values())


def replay(rows: Iterable[tuple[int, str]], paths: dict[str, Optional[str]], jobs: Optional[int] = None,
           progress: Optional[Callable[[int], None]] = None) -> ReplayReport:
    """Re-evaluate each record with its own ruleset (``paths``: sha256 -> ruleset folder)."""
    report = ReplayReport()

    def counted() -> Iterator[tuple[int, str]]:
        for row in rows:
            report.checked += 1
            yield row

    done = 0
    for size, failures in _run(_replay_chunk, counted(), paths, None, jobs):
        for failure in failures:
            if failure[2] == "missing":
                report.missing[failure[3]] += 1
            else:
                report.failures.append(failure)
        done += size
        if progress is not None:
            progress(done)
    return report


def _order(change: Change) -> tuple[int, int, int]:
    """Report order: urgency down first (largest drop first), then up, then the same urgency; by seq within."""
    drop = URGENCY_RANK[change.new_urgency] - URGENCY_RANK[change.old_urgency] if change.direction == "down" else 0
    return ({"down": 0, "up": 1, "same": 2}[change.direction], drop, change.seq)


@dataclass
class ImpactReport:
    """Counts over every record; the changes and errors themselves only up to ``keep`` (``None``: all)."""

    keep: Optional[int] = None
    total: int = 0
    changes: list[Change] = field(default_factory=list)
    errors: list[tuple[int, str, str]] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)

    def add(self, total: int, changes: list[Change], errors: list[tuple[int, str, str]]) -> None:
        self.total += total
        self.counts["changed"] += len(changes)
        self.counts["errors"] += len(errors)
        for c in changes:
            self.counts[c.direction] += 1
            self.counts["actions"] += bool(c.added_actions or c.removed_actions)
            self.counts["flags"] += bool(c.added_flags or c.removed_flags)
        self.changes.extend(changes)
        self.errors.extend(errors)
        if self.keep is not None:
            del self.errors[self.keep:]                    # they arrive in seq order: the first ones
            if len(self.changes) > 2 * self.keep + CHUNK:  # the best ``keep`` so far, sorted now and then
                self.changes = sorted(self.changes, key=_order)[:self.keep]

    def summary(self) -> dict[str, int]:
        return {
            "records": self.total,
            "changed": self.counts["changed"],
            "urgency_down": self.counts["down"],
            "urgency_up": self.counts["up"],
            "actions_changed": self.counts["actions"],
            "flags_changed": self.counts["flags"],
            "unchanged": self.total - self.counts["changed"] - self.counts["errors"],
            "errors": self.counts["errors"],
        }

    def ordered(self) -> list[Change]:
        """Urgency down first (largest drop first), then up, then the same urgency; by seq within."""
        return sorted(self.changes, key=_order)[:self.keep]


def impact(rows: Iterable[tuple[int, str]], candidate: Path | str, jobs: Optional[int] = None,
           progress: Optional[Callable[[int], None]] = None, keep: Optional[int] = None) -> ImpactReport:
    """Re-triage the recorded cases under the candidate ruleset folder; compare with what was recorded."""
    report = ImpactReport(keep=keep)
    key = "candidate"
    for total, changes, errors in _run(_impact_chunk, rows, {key: str(candidate)}, key, jobs):
        report.add(total, changes, errors)
        if progress is not None:
            progress(report.total)
    return report

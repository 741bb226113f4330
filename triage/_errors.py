"""The one exception tree of mscc-triage.

::

    TriageError                      code        CLI exit   HTTP
    ├── CaseValidationError          invalid_case     2      422   the case breaks case-format 2.2
    ├── RulesetError                 invalid_rules    3      (the server refuses to start)
    ├── VignetteFormatError          invalid_vignette 2      n/a   a vignette file breaks vignette-format v1
    ├── EngineError                  engine_failure   4      503   the rule engine misbehaved (a bug, never the user's input)
    └── RecordError                  record_error     5            the decision record (triage audit, the service)
        ├── RecordUnavailable        record_unavailable 5    503   the record store cannot be read or written
        └── RecordNotFound           record_not_found   2    n/a   no record with that id

Every error carries a stable ``code``. ``CaseValidationError`` and ``VignetteFormatError`` carry a
list of :class:`Problem` (a field path and a reason); ``RulesetError`` names the file, the rule id and
the reason, with a "did you mean" hint where one can be given. The API maps these to problem details
and the CLI to exit codes, each in one place.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input: where (a dotted field path) and why."""

    path: str
    reason: str
    code: str = "invalid"

    def __str__(self) -> str:
        return f"{self.path or '(root)'}: {self.reason}"

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason, "code": self.code}


class TriageError(Exception):
    """Base of every error this package raises on purpose."""

    code = "triage_error"
    exit_code = 1


class CaseValidationError(TriageError, ValueError):
    """The case does not follow case-format 2.2: every problem is listed, none is guessed away."""

    code = "invalid_case"
    exit_code = 2

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("; ".join(str(p) for p in self.problems) or "invalid case")


class VignetteFormatError(TriageError, ValueError):
    """A vignette file does not follow vignette-format v1."""

    code = "invalid_vignette"
    exit_code = 2

    def __init__(self, source: str, problems: list[Problem]):
        self.source = source
        self.problems = list(problems)
        detail = "; ".join(str(p) for p in self.problems)
        super().__init__(f"{source}: {detail}")


class RulesetError(TriageError):
    """A rule file is broken: found when the ruleset is loaded, never during an evaluation."""

    code = "invalid_rules"
    exit_code = 3

    def __init__(self, file: str, reason: str, rule_id: str | None = None, hint: str | None = None):
        self.file = file
        self.rule_id = rule_id
        self.reason = reason
        self.hint = hint
        where = file + (f", rule {rule_id}" if rule_id else "")
        message = f"{where}: {reason}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)


class EngineError(TriageError):
    """The rule engine failed or returned something impossible; the evaluation produced no result."""

    code = "engine_failure"
    exit_code = 4


class RecordError(TriageError):
    """Base of the decision-record errors."""

    code = "record_error"
    exit_code = 5


class RecordUnavailable(RecordError):
    """The record store cannot be written (or read): down, full, read-only, missing. Nothing was written."""

    code = "record_unavailable"
    exit_code = 5


class RecordDamaged(RecordError):
    """A stored record cannot be read back (its content altered): what ``audit verify`` calls a broken chain."""

    code = "record_damaged"
    exit_code = 1


class RecordNotFound(RecordError):
    """No record with that sequence number, request id or card uuid."""

    code = "record_not_found"
    exit_code = 2

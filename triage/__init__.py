"""mscc-triage: a triage rules engine for suspected metastatic spinal cord compression (MSCC).

    >>> import triage
    >>> result = triage.evaluate({"patient": {"cancer": {"history": "current"}},
    ...                           "presentation": {"weakness": {"present": True}}})
    >>> result.urgency
    'emergency'

Decision support for clinicians; it does not replace clinical judgement.
"""

from ._case import CASE_FORMAT, Case, parse_case, validate_case
from ._errors import (
    CaseValidationError, EngineError, Problem, RecordError, RecordNotFound, RecordUnavailable, RulesetError,
    TriageError, VignetteFormatError,
)
from ._result import (
    RESULT_FORMAT, ActionItem, FiredRule, FlagItem, Hold, Result, RulesetRef, Scores, SinsScore, Unknown, WithheldItem,
)
from ._sins import sins_category, sins_total
from ._triage import Ruleset, default_ruleset, evaluate, load_ruleset

__version__ = "0.1.0"

__all__ = [
    "ActionItem",
    "CASE_FORMAT",
    "Case",
    "CaseValidationError",
    "EngineError",
    "FiredRule",
    "FlagItem",
    "Hold",
    "Problem",
    "RESULT_FORMAT",
    "RecordError",
    "RecordNotFound",
    "RecordUnavailable",
    "Result",
    "Ruleset",
    "RulesetError",
    "RulesetRef",
    "Scores",
    "SinsScore",
    "TriageError",
    "Unknown",
    "VignetteFormatError",
    "WithheldItem",
    "__version__",
    "default_ruleset",
    "evaluate",
    "load_ruleset",
    "parse_case",
    "sins_category",
    "sins_total",
    "validate_case",
]

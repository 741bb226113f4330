"""mscc-triage: a triage rules engine for suspected metastatic spinal cord compression (MSCC).

    >>> import triage
    >>> result = triage.evaluate({"patient": {"cancer": {"history": "current"}},
    ...                           "presentation": {"weakness": {"present": True}}})
    >>> result.urgency
    'emergency'

Decision support for clinicians; it does not replace clinical judgement.
"""

from ._case import CASE_FORMAT, FIELDS, Case, FieldSpec, parse_case, set_path, validate_case
from ._errors import (
    CaseValidationError, EngineError, Problem, RecordError, RecordNotFound, RecordUnavailable, RulesetError,
    TriageError, VignetteFormatError,
)
from ._result import (
    RESULT_FORMAT, ActionItem, FiredRule, FlagItem, Hold, Result, RulesetRef, Scores, SinsScore, Unknown, WithheldItem,
    source_parts, source_rank,
)
from ._record import CdsContext, Record, RecordStore, open_store, postgres_failure
from ._lockfile import LockFile
from ._sins import sins_category, sins_total
from ._strict_input import no_duplicate_keys
from ._texts import HEADLINE_MAX, FormGroup, FormTexts, french_typography, load_form_texts
from ._triage import Ruleset, default_ruleset, evaluate, load_ruleset

try:  # the package's version lives in one place, pyproject.toml
    from importlib.metadata import PackageNotFoundError, version as _version

    __version__ = _version("mscc-triage")
except PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "ActionItem",
    "CASE_FORMAT",
    "Case",
    "CaseValidationError",
    "CdsContext",
    "EngineError",
    "FIELDS",
    "FieldSpec",
    "FiredRule",
    "FlagItem",
    "FormGroup",
    "FormTexts",
    "HEADLINE_MAX",
    "Hold",
    "LockFile",
    "Problem",
    "RESULT_FORMAT",
    "Record",
    "RecordError",
    "RecordNotFound",
    "RecordStore",
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
    "french_typography",
    "load_form_texts",
    "load_ruleset",
    "no_duplicate_keys",
    "open_store",
    "postgres_failure",
    "parse_case",
    "set_path",
    "sins_category",
    "source_parts",
    "source_rank",
    "sins_total",
    "validate_case",
]

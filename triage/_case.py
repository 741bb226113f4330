"""The case: case-format v1 as strict, frozen pydantic models, and its normalisation.

Findings are tri-state: ``True`` (present), ``False`` (assessed, absent), ``None`` (not assessed).
Validation is strict: no string is taken for a boolean or a number, no unknown field is ignored.
:func:`parse_case` validates, checks every contradiction listed in case-format.md and applies the
normalisation, so that what reaches the rules is consistent and complete.
"""

from __future__ import annotations

import difflib
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ._errors import CaseValidationError, Problem
from ._sins import SINS_COMPONENTS, sins_total

TriState = Optional[bool]

History = Literal["current", "past", "suspected", "none", "unknown"]
Primary = Literal[
    "breast", "prostate", "lung", "kidney", "thyroid", "melanoma", "colorectal", "sarcoma",
    "hepatocellular", "myeloma", "lymphoma", "leukaemia", "germ_cell", "other", "unknown",
]
EsccGrade = Literal["0", "1a", "1b", "1c", "2", "3"]


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


class Cancer(_Model):
    history: Optional[History] = None
    primary: Optional[Primary] = None
    bone_metastases: TriState = None
    spinal_metastases: TriState = None
    metastasis_count: Optional[int] = Field(None, ge=0, le=1000)


class Treatments(_Model):
    checkpoint_inhibitor: TriState = None
    checkpoint_inhibitor_start_days_ago: Optional[int] = Field(None, ge=0, le=36500)
    corticosteroids: TriState = None
    bone_modifying_agent: Optional[Literal["none", "denosumab", "bisphosphonate"]] = None
    prior_spinal_radiotherapy: TriState = None


class Comorbidities(_Model):
    diabetes: TriState = None


class Patient(_Model):
    age_years: Optional[int] = Field(None, ge=0, le=120)
    cancer: Cancer = Field(default_factory=Cancer)
    treatments: Treatments = Field(default_factory=Treatments)
    comorbidities: Comorbidities = Field(default_factory=Comorbidities)


class FocalVertebralPain(_Model):
    present: TriState = None
    region: Optional[Literal["cervical", "thoracic", "lumbar", "sacral"]] = None
    progressive: TriState = None
    severe_unremitting: TriState = None
    nocturnal: TriState = None
    worse_on_straining: TriState = None
    localised_tenderness: TriState = None
    mechanical: TriState = None


class Weakness(_Model):
    present: TriState = None
    limbs: Optional[Literal["legs", "arms", "arms_and_legs"]] = None
    bilateral: TriState = None
    progressive: TriState = None
    onset_hours: Optional[float] = Field(None, ge=0, le=100000)


class Paraesthesia(_Model):
    present: TriState = None
    sensory_level: TriState = None
    saddle_anaesthesia: TriState = None


class SphincterDisturbance(_Model):
    present: TriState = None
    urinary_retention: TriState = None
    urinary_incontinence: TriState = None
    faecal_incontinence: TriState = None
    post_void_residual_ml: Optional[float] = Field(None, ge=0, le=5000)


class Sciatica(_Model):
    present: TriState = None
    bilateral: TriState = None


class Presentation(_Model):
    focal_vertebral_pain: FocalVertebralPain = Field(default_factory=FocalVertebralPain)
    weakness: Weakness = Field(default_factory=Weakness)
    paraesthesia: Paraesthesia = Field(default_factory=Paraesthesia)
    sphincter_disturbance: SphincterDisturbance = Field(default_factory=SphincterDisturbance)
    sciatica: Sciatica = Field(default_factory=Sciatica)
    gait_difficulty: TriState = None
    ambulatory_status: Optional[Literal["independent", "with_aid", "non_ambulatory"]] = None
    non_ambulatory_hours: Optional[float] = Field(None, ge=0, le=100000)


class Sins(_Model):
    total: Optional[int] = Field(None, ge=0, le=18)
    location: Optional[Literal["junctional", "mobile", "semi_rigid", "rigid"]] = None
    pain: Optional[Literal["mechanical", "occasional_non_mechanical", "pain_free"]] = None
    bone_lesion: Optional[Literal["lytic", "mixed", "blastic"]] = None
    alignment: Optional[Literal["subluxation_translation", "de_novo_deformity", "normal"]] = None
    collapse: Optional[Literal["over_50", "under_50", "no_collapse_over_50_involved", "none"]] = None
    posterolateral: Optional[Literal["bilateral", "unilateral", "none"]] = None


class Assessment(_Model):
    mri_performed: TriState = None
    mri_compression: TriState = None
    escc_grade: Optional[EsccGrade] = None
    vertebral_fracture: TriState = None
    life_expectancy_months: Optional[float] = Field(None, ge=0, le=1200)
    sins: Sins = Field(default_factory=Sins)


class Labs(_Model):
    corrected_calcium_mmol_l: Optional[float] = Field(None, ge=0.5, le=6.0)
    vitamin_d_nmol_l: Optional[float] = Field(None, ge=0, le=500)
    creatinine_clearance_ml_min: Optional[float] = Field(None, ge=0, le=250)


class Case(_Model):
    """One person at one moment (case-format v1). Every group and field is optional."""

    case_id: Optional[str] = Field(None, min_length=1, max_length=64, pattern=r"^[\x21-\x7e]+$")
    patient: Patient = Field(default_factory=Patient)
    presentation: Presentation = Field(default_factory=Presentation)
    assessment: Assessment = Field(default_factory=Assessment)
    labs: Labs = Field(default_factory=Labs)


# --------------------------------------------------------------------------------------------
# The field registry: what a rule may name, and what kind of value it holds.

GROUPS = ("focal_vertebral_pain", "weakness", "paraesthesia", "sphincter_disturbance", "sciatica")


class FieldSpec(BaseModel):
    """A leaf field of the case: its dotted path, its kind and (numbers) its bounds, (enums) its values."""

    model_config = ConfigDict(frozen=True)

    path: str
    kind: Literal["tristate", "enum", "number", "integer", "text"]
    values: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None


def _leaf_spec(path: str, annotation: Any, field_info: Any) -> FieldSpec:
    import typing

    args = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    inner = args[0]
    minimum = maximum = None
    for meta in field_info.metadata:
        minimum = getattr(meta, "ge", minimum) if getattr(meta, "ge", None) is not None else minimum
        maximum = getattr(meta, "le", maximum) if getattr(meta, "le", None) is not None else maximum
    if inner is bool:
        return FieldSpec(path=path, kind="tristate")
    if typing.get_origin(inner) is Literal:
        return FieldSpec(path=path, kind="enum", values=tuple(typing.get_args(inner)))
    if inner is int:
        return FieldSpec(path=path, kind="integer", minimum=minimum, maximum=maximum)
    if inner is float:
        return FieldSpec(path=path, kind="number", minimum=minimum, maximum=maximum)
    return FieldSpec(path=path, kind="text")


def _walk(model: type[BaseModel], prefix: str = "") -> list[FieldSpec]:
    specs: list[FieldSpec] = []
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            specs.extend(_walk(annotation, path + "."))
        else:
            specs.append(_leaf_spec(path, annotation, info))
    return specs


FIELDS: dict[str, FieldSpec] = {spec.path: spec for spec in _walk(Case) if spec.path != "case_id"}


def tri_state_presentation_fields() -> list[str]:
    """Every tri-state field under ``presentation``, in case-format order (for the what-if)."""
    return [p for p, s in FIELDS.items() if p.startswith("presentation.") and s.kind == "tristate"]


# --------------------------------------------------------------------------------------------
# Parsing, contradictions and normalisation.


def _pydantic_problem(error: dict[str, Any], data: Any) -> Problem:
    loc = [str(part) for part in error["loc"]]
    path = ".".join(loc)
    kind = error["type"]
    if kind == "extra_forbidden":
        parent = _model_at(loc[:-1])
        reason = "is not a field of case-format v1"
        if parent is not None:
            close = difflib.get_close_matches(loc[-1], list(parent.model_fields), n=1)
            if close:
                reason += f"; did you mean '{'.'.join(loc[:-1] + [close[0]])}'?"
        return Problem(path, reason, "unknown_field")
    if kind in ("bool_type",):
        return Problem(path, "must be true, false or null (a JSON boolean, not a string or a number)", kind)
    if kind in ("greater_than_equal", "less_than_equal"):
        bound = error.get("ctx", {}).get("ge", error.get("ctx", {}).get("le"))
        word = ">=" if kind == "greater_than_equal" else "<="
        return Problem(path, f"must be {word} {bound}", "out_of_range")
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        return Problem(path, f"must be one of {expected}", "invalid_value")
    if kind == "model_type" or kind == "dict_type":
        return Problem(path, "must be an object", "invalid_type")
    return Problem(path, error["msg"][0].lower() + error["msg"][1:], kind)


def _model_at(loc: list[str]) -> type[BaseModel] | None:
    model: type[BaseModel] = Case
    for part in loc:
        info = model.model_fields.get(part)
        if info is None or not (isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel)):
            return None
        model = info.annotation
    return model


def validate_case(data: Any) -> Case:
    """Validate raw input (a dict) strictly against case-format v1, without normalising it."""
    if isinstance(data, Case):
        return data
    if not isinstance(data, dict):
        raise CaseValidationError([Problem("", "a case must be a JSON object", "invalid_type")])
    try:
        return Case.model_validate(data)
    except ValidationError as exc:
        problems = [_pydantic_problem(e, data) for e in exc.errors(include_url=False)]
        raise CaseValidationError(problems) from None


def _get(d: dict[str, Any], path: str) -> Any:
    node: Any = d
    for part in path.split("."):
        node = node[part]
    return node


def _set(d: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    node = d
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = value


def _implications(d: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(source path, why, target path) for every implication of case-format.md whose source holds now.

    Each implication sets a target to ``true``. A target explicitly ``false`` is a contradiction.
    """
    found: list[tuple[str, str, str]] = []
    pres = d["presentation"]
    pvr = pres["sphincter_disturbance"]["post_void_residual_ml"]
    if pvr is not None and pvr >= 200:
        found.append(("presentation.sphincter_disturbance.post_void_residual_ml", "is >= 200 mL",
                      "presentation.sphincter_disturbance.urinary_retention"))
    for group in GROUPS:
        for name, value in pres[group].items():
            spec = FIELDS.get(f"presentation.{group}.{name}")
            if name != "present" and spec is not None and spec.kind == "tristate" and value is True:
                found.append((f"presentation.{group}.{name}", "is true", f"presentation.{group}.present"))
    if d["patient"]["cancer"]["spinal_metastases"] is True:
        found.append(("patient.cancer.spinal_metastases", "is true", "patient.cancer.bone_metastases"))
    assessment = d["assessment"]
    if assessment["escc_grade"] in ("2", "3"):
        found.append(("assessment.escc_grade", f"is \"{assessment['escc_grade']}\"", "assessment.mri_compression"))
    if assessment["escc_grade"] is not None:
        found.append(("assessment.escc_grade", "is given", "assessment.mri_performed"))
    if assessment["mri_compression"] is not None:
        found.append(("assessment.mri_compression", "is given", "assessment.mri_performed"))
    nah = pres["non_ambulatory_hours"]
    if nah is not None and nah > 0:
        found.append(("presentation.non_ambulatory_hours", "is > 0", "presentation.gait_difficulty"))
    if d["patient"]["treatments"]["checkpoint_inhibitor_start_days_ago"] is not None:
        found.append(("patient.treatments.checkpoint_inhibitor_start_days_ago", "is given",
                      "patient.treatments.checkpoint_inhibitor"))
    return found


def normalise(case: Case) -> Case:
    """Apply case-format.md normalisation; raise :class:`CaseValidationError` on any contradiction."""
    return Case.model_validate(normalised_dict(case))


def normalised_dict(case: Case) -> dict[str, Any]:
    """:func:`normalise`, returning the normalised case as a plain dict (what the engine reads).

    Implications only ever turn an unknown into ``true``; one that meets an explicit ``false``
    is a contradiction naming both fields. They are applied until nothing changes, so chains
    (post-void residual -> retention -> sphincter disturbance) are followed.
    """
    d = case.model_dump()
    problems: list[Problem] = []
    reported: set[tuple[str, str]] = set()
    implied_by: dict[str, str] = {}
    changed = True
    while changed:
        changed = False
        for source, why, target in _implications(d):
            current = _get(d, target)
            if current is None:
                _set(d, target, True)
                implied_by[target] = f"{source} {why}"
                changed = True
            elif current is False and (source, target) not in reported:
                reported.add((source, target))
                cause = f" (because {implied_by[source]})" if source in implied_by else ""
                problems.append(Problem(target, f"is false, but {source} {why}{cause}, so it must be true",
                                        "contradiction"))

    pres = d["presentation"]
    nah = pres["non_ambulatory_hours"]
    if pres["ambulatory_status"] == "independent" and nah is not None and nah > 0:
        problems.append(Problem("presentation.ambulatory_status",
                                "is independent, but presentation.non_ambulatory_hours is > 0", "contradiction"))

    sins = d["assessment"]["sins"]
    given = [name for name in SINS_COMPONENTS if sins[name] is not None]
    if given and len(given) < len(SINS_COMPONENTS) and sins["total"] is None:
        missing = [n for n in SINS_COMPONENTS if sins[n] is None]
        problems.append(Problem("assessment.sins",
                                f"has some components but no total: give the total or all six components "
                                f"(missing: {', '.join(missing)})", "incomplete_sins"))
    elif len(given) == len(SINS_COMPONENTS):
        computed = sins_total({n: sins[n] for n in SINS_COMPONENTS})
        if sins["total"] is None:
            sins["total"] = computed
        elif sins["total"] != computed:
            problems.append(Problem("assessment.sins.total",
                                    f"is {sins['total']}, but the six components add up to {computed}",
                                    "contradiction"))

    if problems:
        raise CaseValidationError(problems)

    cancer = d["patient"]["cancer"]
    if cancer["history"] is None:
        cancer["history"] = "unknown"
    if cancer["primary"] is None:
        cancer["primary"] = "unknown"
    return d


def parse_case(data: Any) -> Case:
    """Validate and normalise: the only way a case reaches the rules."""
    return normalise(validate_case(data))

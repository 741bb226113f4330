"""The case: case-format 2.2 as strict, frozen pydantic models, and its normalisation.

Findings are tri-state: ``True`` (present), ``False`` (assessed, absent), ``None`` (not assessed).
Validation is strict: no string is taken for a boolean or a number, no unknown field is ignored.
:func:`parse_case` validates, checks every contradiction listed in case-format.md and applies the
normalisation, so that what reaches the rules is consistent and complete.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from ._hints import closest
from ._errors import CaseValidationError, Problem
from ._sins import SINS_COMPONENTS, sins_total

CASE_FORMAT = "2.2"   # the version of case-format.md this model implements (named in every message)

TriState = Optional[bool]

History = Literal["current", "past", "suspected", "none", "unknown"]
Primary = Literal[
    "breast", "prostate", "lung", "kidney", "thyroid", "melanoma", "colorectal", "sarcoma",
    "hepatocellular", "myeloma", "lymphoma", "leukaemia", "germ_cell", "other", "unknown",
]
EsccGrade = Literal["0", "1a", "1b", "1c", "2", "3"]


def _whole_number(value: Any) -> Any:
    """v2.2: an integer field takes a JSON number with a zero fraction (``67.0`` is 67); ``67.5`` stays invalid."""
    if type(value) is float and value.is_integer():
        return int(value)
    return value


# An integer field of the case: strict (no strings, no booleans), but 67.0 is read as 67.
WholeNumber = Annotated[int, BeforeValidator(_whole_number)]


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


class _Holder(_Model):
    """A model that holds other objects of the format."""

    @model_validator(mode="before")
    @classmethod
    def _null_objects_are_not_assessed(cls, data: Any) -> Any:
        """v2.2: an object of the format sent as ``null`` means not assessed, exactly as if omitted."""
        # dict.items, not data.items: a dict subclass that overrides items() must not show this rebuild
        # other keys than the ones pydantic reads (an invalid case was accepted that way)
        if isinstance(data, dict) and any(value is None and name in _OBJECT_FIELDS.get(cls.__name__, ())
                                          for name, value in dict.items(data)):
            return {k: v for k, v in dict.items(data) if not (v is None and k in _OBJECT_FIELDS[cls.__name__])}
        return data


class Cancer(_Model):
    history: Optional[History] = None
    primary: Optional[Primary] = None
    bone_metastases: TriState = None
    spinal_metastases: TriState = None
    metastasis_count: Optional[WholeNumber] = Field(None, ge=0)


class Treatments(_Model):
    checkpoint_inhibitor: TriState = None
    checkpoint_inhibitor_start_days_ago: Optional[WholeNumber] = Field(None, ge=0)
    corticosteroids: TriState = None  # v2.2: started for THIS episode (suspected MSCC)
    long_term_corticosteroids: TriState = None  # v2.2: taken for another reason before this episode
    anticoagulant: TriState = None  # v2.2: therapeutic anticoagulation, or dual antiplatelet therapy, now
    bone_modifying_agent: Optional[Literal["none", "denosumab", "bisphosphonate"]] = None
    prior_spinal_radiotherapy: TriState = None


class Comorbidities(_Model):
    diabetes: TriState = None


class Patient(_Holder):
    age_years: Optional[WholeNumber] = Field(None, ge=0, le=120)
    cancer: Cancer = Field(default_factory=Cancer)
    treatments: Treatments = Field(default_factory=Treatments)
    comorbidities: Comorbidities = Field(default_factory=Comorbidities)


class FocalVertebralPain(_Model):
    present: TriState = None
    region: Optional[Literal["cervical", "thoracic", "thoracolumbar", "lumbar", "sacral"]] = None  # v2.2: thoracolumbar (T11-L1)
    progressive: TriState = None
    severe_unremitting: TriState = None
    nocturnal: TriState = None
    worse_on_straining: TriState = None
    localised_tenderness: TriState = None
    mechanical: TriState = None
    band_like: TriState = None  # v2: radicular pain in a band around the chest or abdomen


class Weakness(_Model):
    present: TriState = None
    limbs: Optional[Literal["legs", "arms", "arms_and_legs"]] = None
    bilateral: TriState = None
    progressive: TriState = None
    onset_hours: Optional[float] = Field(None, ge=0)


class Paraesthesia(_Model):
    present: TriState = None
    sensory_level: TriState = None
    saddle_anaesthesia: TriState = None
    bilateral_legs: TriState = None  # v2: sensory change in both legs


class SphincterDisturbance(_Model):
    present: TriState = None
    urinary_retention: TriState = None
    urinary_incontinence: TriState = None
    faecal_incontinence: TriState = None
    altered_urinary_sensation: TriState = None  # v2: new difficulty starting, or reduced bladder/stream sensation
    post_void_residual_ml: Optional[float] = Field(None, ge=0)


class Sciatica(_Model):
    present: TriState = None
    bilateral: TriState = None


class Presentation(_Holder):
    focal_vertebral_pain: FocalVertebralPain = Field(default_factory=FocalVertebralPain)
    weakness: Weakness = Field(default_factory=Weakness)
    paraesthesia: Paraesthesia = Field(default_factory=Paraesthesia)
    sphincter_disturbance: SphincterDisturbance = Field(default_factory=SphincterDisturbance)
    sciatica: Sciatica = Field(default_factory=Sciatica)
    gait_difficulty: TriState = None
    sexual_dysfunction: TriState = None  # v2: new genital numbness, erectile or ejaculatory failure
    infection_suspected: TriState = None  # v2.1: fever >= 38 degrees C now, or a spinal infection suspected
    hypocalcaemia_symptoms: TriState = None  # v2.2: perioral or digital tingling, cramps, carpopedal spasm, tetany
    hypercalcaemia_symptoms: TriState = None  # v2.2: thirst, polyuria, confusion, drowsiness, constipation, nausea
    recent_neuraxial_procedure: TriState = None  # v2.2: spinal/epidural anaesthesia, catheter, LP or spinal surgery, 7 days
    ambulatory_status: Optional[Literal["independent", "with_aid", "non_ambulatory"]] = None
    non_ambulatory_hours: Optional[float] = Field(None, ge=0)
    complete_paraplegia_hours: Optional[float] = Field(None, ge=0)  # v2: no movement in both legs


class Sins(_Model):
    total: Optional[WholeNumber] = Field(None, ge=0, le=18)
    location: Optional[Literal["junctional", "mobile", "semi_rigid", "rigid"]] = None
    pain: Optional[Literal["mechanical", "occasional_non_mechanical", "pain_free"]] = None
    bone_lesion: Optional[Literal["lytic", "mixed", "blastic"]] = None
    alignment: Optional[Literal["subluxation_translation", "de_novo_deformity", "normal"]] = None
    collapse: Optional[Literal["over_50", "under_50", "no_collapse_over_50_involved", "none"]] = None
    posterolateral: Optional[Literal["bilateral", "unilateral", "none"]] = None


class Assessment(_Holder):
    mri_performed: TriState = None
    new_findings_since_mri: TriState = None  # v2: findings began or worsened after that MRI
    mri_compression: TriState = None
    escc_grade: Optional[EsccGrade] = None
    vertebral_fracture: TriState = None
    life_expectancy_months: Optional[float] = Field(None, ge=0)
    mri_contraindicated: TriState = None  # v2.2: MRI cannot be done (device, claustrophobia, habitus)
    sins: Sins = Field(default_factory=Sins)


class Labs(_Model):
    corrected_calcium_mmol_l: Optional[float] = Field(None, ge=0.5, le=6.0)
    vitamin_d_nmol_l: Optional[float] = Field(None, ge=0, le=500)
    creatinine_clearance_ml_min: Optional[float] = Field(None, ge=0, le=250)
    platelets_10e9_l: Optional[float] = Field(None, ge=0, le=2000)  # v2.2: platelet count, 10^9/L


class Case(_Holder):
    """One person at one moment (case-format 2.2). Every group and field is optional."""

    # case-format: "<= 64 chars", nothing more (a space, an accent: the sender's opaque id, echoed back)
    case_id: Optional[str] = Field(None, max_length=64)
    patient: Patient = Field(default_factory=Patient)
    presentation: Presentation = Field(default_factory=Presentation)
    assessment: Assessment = Field(default_factory=Assessment)
    labs: Labs = Field(default_factory=Labs)


# The fields of each model that are themselves objects (sent as null: not assessed, v2.2).
_OBJECT_FIELDS: dict[str, frozenset[str]] = {
    model.__name__: frozenset(name for name, info in model.model_fields.items()
                              if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel))
    for model in (Case, Patient, Presentation, Assessment)
}


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
    if typing.get_origin(inner) is Annotated:
        inner = typing.get_args(inner)[0]
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
# Choice fields that normalisation always fills in (a null history or primary means unknown).
ALWAYS_GIVEN = frozenset({"patient.cancer.history", "patient.cancer.primary"})


def tri_state_presentation_fields() -> list[str]:
    """Every tri-state field under ``presentation``, in case-format order."""
    return [p for p, s in FIELDS.items() if p.startswith("presentation.") and s.kind == "tristate"]


# Asked after an MRI: a clear MRI excludes compression only if nothing began or worsened since.
MRI_FOLLOW_UP = "assessment.new_findings_since_mri"
# v2.2: presentation findings that are never tried as unknowns (they change the triage only together
# with findings that are asked already, or are asked beside a value: the calcium symptoms).
NEVER_ASKED = frozenset({"presentation.recent_neuraxial_procedure"})
ASKED_BESIDE_CALCIUM = frozenset({"presentation.hypocalcaemia_symptoms", "presentation.hypercalcaemia_symptoms"})
# v2.2: asked when weakness (onset) or weakness or gait difficulty (walking status) is present.
ONSET = "presentation.weakness.onset_hours"
WALKING = "presentation.ambulatory_status"


def unknown_fields() -> list[str]:
    """Every field that can appear in a result's ``unknowns`` (clinical-rules.md, Unknowns), in order."""
    fields = [p for p in FIELDS if (p in tri_state_presentation_fields() and p not in NEVER_ASKED)
              or p in (ONSET, WALKING)]
    return fields + [MRI_FOLLOW_UP]


# --------------------------------------------------------------------------------------------
# Parsing, contradictions and normalisation.


def _pydantic_problem(error: dict[str, Any], data: Any) -> Problem:
    loc = [str(part) for part in error["loc"]]
    path = ".".join(loc)
    kind = error["type"]
    if kind == "extra_forbidden":
        parent = _model_at(loc[:-1])
        reason = f"is not a field of case-format {CASE_FORMAT}"
        if parent is not None:
            close = closest(loc[-1], list(parent.model_fields))
            if close:
                reason += f"; did you mean '{'.'.join(loc[:-1] + [close])}'?"
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
    if kind == "string_unicode":   # a lone surrogate (JSON's "\ud800"): in a key, or in a value
        node = _node_at(data, error["loc"])
        text = error.get("input")
        if isinstance(node, dict) and isinstance(text, str) and text in node:
            key = ascii(text)[1:-1]   # printable, so the path can be shown and logged as it is
            return Problem(".".join([*loc, key]), f"is not a field of case-format {CASE_FORMAT} (the key is not "
                                                  "valid Unicode text: it holds a lone surrogate)", "unknown_field")
        return Problem(path, "must be valid Unicode text (it holds a lone surrogate)", kind)
    return Problem(path, error["msg"][0].lower() + error["msg"][1:], kind)


def _node_at(data: Any, loc: tuple[Any, ...]) -> Any:
    """What the case as sent holds at ``loc`` (None when there is nothing there)."""
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and -len(node) <= part < len(node):
            node = node[part]
        else:
            return None
    return node


def _model_at(loc: list[str]) -> type[BaseModel] | None:
    model: type[BaseModel] = Case
    for part in loc:
        info = model.model_fields.get(part)
        if info is None or not (isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel)):
            return None
        model = info.annotation
    return model


# The Case objects this module validated (frozen, so still valid): given back to validate_case, as the
# API does (it validates once, then evaluates and records the same Case), they are not validated again.
# Keyed by identity: hashing a frozen model hashes every field (13 µs), and one made without validation
# may hold an unhashable value.
_VALIDATED: "weakref.WeakValueDictionary[int, Case]" = weakref.WeakValueDictionary()


def validate_case(data: Any) -> Case:
    """Validate raw input (a dict) strictly against case-format 2.2, without normalising it. A
    :class:`Case` that this function did not make is validated again: one made with
    ``Case.model_construct`` (or ``model_copy(update=...)``) was never checked."""
    if isinstance(data, Case):
        if _VALIDATED.get(id(data)) is data:
            return data
        try:
            data = data.model_dump(warnings=False)
        except Exception:   # fields of the wrong types that pydantic cannot even dump
            raise CaseValidationError([Problem("", "a Case object that does not hold a valid case (made without "
                                                   "validation?)", "invalid_type")]) from None
    if not isinstance(data, dict):
        raise CaseValidationError([Problem("", "a case must be a JSON object", "invalid_type")])
    try:
        valid = Case.model_validate(data)
    except ValidationError as exc:
        problems = [_pydantic_problem(dict(e), data) for e in exc.errors(include_url=False)]
        raise CaseValidationError(problems) from None
    _VALIDATED[id(valid)] = valid
    return valid


_PARTS: dict[str, tuple[str, ...]] = {}   # a dotted path's parts, split once


def _get(d: dict[str, Any], path: str) -> Any:
    parts = _PARTS.get(path)
    if parts is None:
        parts = _PARTS[path] = tuple(path.split("."))
    node: Any = d
    for part in parts:
        node = node[part]
    return node


def set_path(case: dict[str, Any], path: str, value: Any) -> None:
    """Set a dotted field path in a case given as nested dicts, creating the groups on the way."""
    parts = path.split(".")
    node = case
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


@dataclass(frozen=True)
class _Implication:
    """``source`` (which ``why``) sets ``target`` to ``value`` when the target is unset.

    ``unset`` are the target values that count as not given; a target holding one of ``conflicts``
    is a contradiction naming both fields; any other value is left as it is.
    """

    source: str
    why: str
    target: str
    value: Any = True
    conflicts: tuple[Any, ...] = (False,)
    unset: tuple[Any, ...] = (None,)


def _positive(value: Any) -> bool:
    return value is not None and value > 0


# Per group, its tri-state sub-findings (by name) and the implication each makes when true (made once).
_SUB_FINDINGS = tuple(
    (group, {path.rsplit(".", 1)[1]: _Implication(path, "is true", f"presentation.{group}.present")
             for path, spec in FIELDS.items()
             if path.startswith(f"presentation.{group}.") and path.count(".") == 2
             and not path.endswith(".present") and spec.kind == "tristate"})
    for group in GROUPS)


def _implications(d: dict[str, Any]) -> list[_Implication]:
    """Every implication of case-format.md (2.2) whose source holds now."""
    found: list[_Implication] = []
    pres = d["presentation"]
    cancer = d["patient"]["cancer"]
    assessment = d["assessment"]
    pvr = pres["sphincter_disturbance"]["post_void_residual_ml"]
    if pvr is not None and pvr >= 200:
        found.append(_Implication("presentation.sphincter_disturbance.post_void_residual_ml", "is >= 200 mL",
                                  "presentation.sphincter_disturbance.urinary_retention"))
    for group, implied in _SUB_FINDINGS:
        for name, value in pres[group].items():
            if value is True:
                imp = implied.get(name)
                if imp is not None:
                    found.append(imp)
    if cancer["spinal_metastases"] is True:
        found.append(_Implication("patient.cancer.spinal_metastases", "is true", "patient.cancer.bone_metastases"))
    for name in ("bone_metastases", "spinal_metastases"):
        if cancer[name] is True:  # metastatic disease is a current cancer
            found.append(_Implication(f"patient.cancer.{name}", "is true", "patient.cancer.history", "current",
                                      conflicts=("none",), unset=(None, "unknown")))
    if assessment["escc_grade"] == "0":  # v2.2: Bilsky 0 is bone only, a clear MRI
        found.append(_Implication("assessment.escc_grade", 'is "0"', "assessment.mri_compression", False,
                                  conflicts=(True,)))
    if assessment["escc_grade"] in ("2", "3"):
        found.append(_Implication("assessment.escc_grade", f"is \"{assessment['escc_grade']}\"",
                                  "assessment.mri_compression"))
    for name in ("escc_grade", "mri_compression", "new_findings_since_mri"):
        if assessment[name] is not None:
            found.append(_Implication(f"assessment.{name}", "is given", "assessment.mri_performed"))
    if _positive(pres["non_ambulatory_hours"]):
        found.append(_Implication("presentation.non_ambulatory_hours", "is > 0", "presentation.gait_difficulty"))
        # v2.2: walking lost some hours ago is a current inability to walk
        found.append(_Implication("presentation.non_ambulatory_hours", "is > 0", "presentation.ambulatory_status",
                                  "non_ambulatory", conflicts=("independent", "with_aid")))
    if _positive(pres["complete_paraplegia_hours"]):
        source, why = "presentation.complete_paraplegia_hours", "is > 0"
        found += [
            _Implication(source, why, "presentation.weakness.present"),
            _Implication(source, why, "presentation.weakness.bilateral"),
            _Implication(source, why, "presentation.weakness.limbs", "legs", conflicts=("arms",)),
            _Implication(source, why, "presentation.ambulatory_status", "non_ambulatory",
                         conflicts=("independent", "with_aid")),
            _Implication(source, why, "presentation.gait_difficulty"),
        ]
    if pres["ambulatory_status"] == "non_ambulatory":
        # Unable to walk, not known to be long-standing, is new; a baseline is recorded as gait false.
        found.append(_Implication("presentation.ambulatory_status", "is non_ambulatory", "presentation.gait_difficulty",
                                  conflicts=()))
    if d["patient"]["treatments"]["checkpoint_inhibitor_start_days_ago"] is not None:
        found.append(_Implication("patient.treatments.checkpoint_inhibitor_start_days_ago", "is given",
                                  "patient.treatments.checkpoint_inhibitor"))
    return found


def _show(value: Any) -> str:
    return "true" if value is True else "false" if value is False else str(value)


def normalise(case: Case) -> Case:
    """Apply case-format.md normalisation; raise :class:`CaseValidationError` on any contradiction."""
    return Case.model_validate(normalised_dict(case))


def normalised_dict(case: Case) -> dict[str, Any]:
    """:func:`normalise`, returning the normalised case as a plain dict (what the engine reads).

    Implications only ever fill in what was not given; one that meets a value it cannot agree with
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
        for imp in _implications(d):
            current = _get(d, imp.target)
            if current in imp.unset and current != imp.value:
                set_path(d, imp.target, imp.value)
                implied_by[imp.target] = f"{imp.source} {imp.why}"
                changed = True
            elif current in imp.conflicts and (imp.source, imp.target) not in reported:
                reported.add((imp.source, imp.target))
                cause = f" (because {implied_by[imp.source]})" if imp.source in implied_by else ""
                problems.append(Problem(imp.target, f"is {_show(current)}, but {imp.source} {imp.why}{cause}, "
                                                    f"so it must be {_show(imp.value)}", "contradiction"))

    assessment = d["assessment"]
    if assessment["escc_grade"] in ("1a", "1b") and assessment["mri_compression"] is True:
        # v2.2: Bilsky 1a and 1b do not touch the cord ("0" is handled by its implication; "1c" stays valid)
        problems.append(Problem("assessment.mri_compression",
                                f"is true, but assessment.escc_grade is \"{assessment['escc_grade']}\" "
                                f"(epidural tumour not touching the cord)", "contradiction"))
    cancer = d["patient"]["cancer"]
    if cancer["history"] == "none" and cancer["primary"] not in (None, "unknown"):
        problems.append(Problem("patient.cancer.primary",
                                f"is {cancer['primary']}, but patient.cancer.history is none", "contradiction"))

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

    if cancer["history"] is None:
        cancer["history"] = "unknown"
    if cancer["primary"] is None:
        cancer["primary"] = "unknown"
    return d


def parse_case(data: Any) -> Case:
    """Validate and normalise: the only way a case reaches the rules."""
    return normalise(validate_case(data))

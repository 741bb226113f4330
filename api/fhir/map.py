"""FHIR R4 -> case-format 2.2, through the declarative code map ``api/fhir/codemap.yaml``.

The map is read and checked when the app starts (every field it names exists in the case with the
right kind, every unit kind exists, every system is known): a broken map stops the start. Mapping
reads a :class:`~.record.Record` (resources by type) and returns the case and the list of what
was mapped and from which resource, for the card. Anything not mapped stays unknown (null).

- Patient: age from ``birthDate`` (a partial date takes its latest possible day: age never overstated).
- Condition: cancer history and primary (clinicalStatus, verificationStatus), metastases, infection.
- Observation: findings from ``valueBoolean`` or a present/absent ``valueCodeableConcept`` (present
  wins); labs from ``valueQuantity`` in any unit :mod:`.units` converts (the latest wins, by time or
  by day; a newer value that cannot be read leaves the lab unknown, never an older one in its place); a
  temperature of 38 °C or more that may lie within 24 hours sets ``infection_suspected``.
- MedicationRequest / MedicationStatement (active): corticosteroids (this episode, or long-term by
  when they started: more than 14 days ago is long-term), checkpoint inhibitor, bone-modifying agent,
  anticoagulant (a therapeutic anticoagulant, or two different antiplatelets at once; a heparin leaves it
  unknown, with a note); only ever set, never cleared.
- Procedure (completed or in-progress, performed within 7 days): recent neuraxial procedure; only ever set.
- What only raises the urgency (a fever, a procedure) dated after the service's clock counts as now.
- What the map cannot map, or refuses (a unit it does not convert, a steroid without a start date, a
  heparin), is listed with the reason among the mapped entries (value ``None``), for the card.

What was mapped is a list of :class:`Mapped` values (field, value, the FHIR evidence, a reason key): the
card puts them in the form's words; ``str()`` of one is its machine line, with the field path.
"""

from __future__ import annotations

from decimal import Decimal
import datetime as dt
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Optional

import yaml

from triage import set_path

from . import units
from .record import Record, bad_prefetch, read_prefetch

CODEMAP_PATH = Path(__file__).with_name("codemap.yaml")
FHIR_DATE = re.compile(r"^[0-9]{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12][0-9]|3[01]))?)?$")
PREFIX_FAMILIES = ("icd10", "atc")
HISTORY_RANK = {"current": 3, "suspected": 2, "past": 1}
LAB_STATUSES = ("final", "amended", "corrected", "preliminary")
# A finding recorded ABSENT is taken as absent now only when it is final and made within this many
# hours (the temperature's window, the only one clinical-rules gives): a "no weakness" from 2009, an
# undated one or a preliminary one leaves the finding unknown, so the triage still asks about it
# (unknown is not absent). A finding recorded PRESENT counts whatever its date: that only raises.
ABSENT_STATUSES = ("final", "amended", "corrected")
ABSENT_WITHIN_HOURS = 24


@dataclass(frozen=True)
class Evidence:
    """One piece of the record behind a mapped finding: the resource kind, the code (system family,
    code, display) and the record's own value with its unit, each as the record gives it."""

    resource: str
    system: str = ""
    code: str = ""
    display: str = ""
    value: str = ""


@dataclass(frozen=True)
class Mapped:
    """What the map set (or left unknown) in the case, and from what: a value for the card to put in words.

    ``path``: the case field; ``value``: what the case now holds (``None``: left unknown); ``primary``:
    the cancer's primary beside its history; ``evidence``: the record's resources and codes; ``why``: a
    reason key (``WHY``) with its ``params``; ``note``: a reason in the code map's own words. ``line`` is
    the machine form (field paths, for logs and tests); the card never shows it."""

    path: str
    value: Any
    line: str
    evidence: tuple[Evidence, ...] = ()
    why: str = ""
    params: tuple[tuple[str, Any], ...] = ()
    primary: str = ""
    note: str = ""

    def __str__(self) -> str:
        return self.line

    @property
    def reason(self) -> str:
        """The reason in English (the card puts it in its own language from ``why`` and ``params``)."""
        return WHY[self.why].format(**dict(self.params)) if self.why else self.note


# Why a finding was set or left unknown, in English (api/cds/cards.py has them in French): key -> template.
WHY: dict[str, str] = {
    "unit_not_converted": "unit {unit!r} not converted",
    "no_usable_value": "no usable value",
    "outside_limits": "{number} outside the case's limits",
    "conflicting_values": "{numbers} recorded at the same time",
    "birth_date_unusable": "not a date of birth from which an age of 0 to 120 years can be read",
    "units_disagree": "unit {unit!r} and UCUM code {code!r} disagree",
    "no_start": "no start date (authoredOn / effective start), so neither this episode nor long-term",
    "future_start": "its start date is in the future",
    "long_term": "started {ago} days ago, more than {days}: long-term",
    "renewal": "a renewal (priorPrescription): when the steroid itself began is not known",
    "this_episode": "started {ago} days ago, within {days}: this episode",
    "dual_antiplatelet": "dual antiplatelet therapy",
    "one_antiplatelet": "one antiplatelet only: not dual antiplatelet therapy",
    "fever": "temperature {celsius} °C within {hours} h",
    "procedure": "{status}, within {days} days",
    "absent_too_old": "recorded absent on {day}, more than {hours} h ago: not taken as absent now",
    "absent_undated": "recorded absent without a date: not taken as absent now",
    "absent_not_final": "recorded absent with status {status}: not taken as absent until final",
    "several_cancers": "several cancers in the record: this one is taken (a suspected or past lymphoma or "
                       "leukaemia first, as steroids can hide it; else the most current)",
}


class CodeMapError(ValueError):
    """The code map cannot be used (found at start-up)."""


def _coding_list(concept: Any) -> list[Any]:
    """A CodeableConcept's codings; 400 when ``coding`` is there but not an array."""
    if not isinstance(concept, dict):
        return []
    coding = concept.get("coding")
    if coding is None:
        return []
    if not isinstance(coding, list):
        raise bad_prefetch("A CodeableConcept's 'coding' must be an array.")
    return coding


def _entry(e: dict[str, Any]) -> tuple[str, str]:
    return e["system"], str(e["code"])


class CodeMap:
    """The code map, indexed: (system family, code) -> what it means; checked against the case model."""

    def __init__(self, data: dict[str, Any]):
        from triage import FIELDS

        def field(path: str, kind: str, value: Any = None) -> str:
            spec = FIELDS.get(path)
            if spec is None or spec.kind != kind or (kind == "enum" and value not in spec.values):
                raise CodeMapError(f"fhir/codemap.yaml: {path} is not a {kind} field of the case"
                                   + (f" taking {value!r}" if kind == "enum" else ""))
            return path

        self.systems = {url: family for family, urls in data["systems"].items() for url in urls}
        self.cancer = [(*_entry(e), e["primary"]) for e in data["conditions"]["cancer"]]
        self.condition_findings = [(*_entry(e), field(e["field"], "tristate")) for e in data["conditions"]["findings"]]
        self.observations = {_entry(e): field(e["field"], "tristate") for e in data["observations"]}
        self.present = {_entry(c) for c in data["value_codes"]["present"]}
        self.absent = {_entry(c) for c in data["value_codes"]["absent"]}
        # family, code, field, value (None: left unknown, with the reason in display), display
        self.medications: list[tuple[str, str, str, Any, str]] = []
        for group in data.get("medications", []):
            if "leave_unknown" in group:
                path = field(group["field"], FIELDS[group["field"]].kind if group["field"] in FIELDS else "tristate")
                reason = str(group["leave_unknown"])
                self.medications += [(*_entry(c), path, None, f"{c.get('display', '')}: {reason}") for c in group["codes"]]
                continue
            value = group["value"]
            kind = "tristate" if value is True else "enum"
            path = field(group["field"], kind, value)
            self.medications += [(*_entry(c), path, value, c.get("display", "")) for c in group["codes"]]
        anti = data.get("antiplatelets")
        # (field, how many different drugs, [(family, code, drug, display)])
        self.antiplatelets = None if not anti else (
            field(anti["field"], "tristate"), int(anti["at_least"]),
            [(*_entry(c), str(c["drug"]), c.get("display", "")) for c in anti["codes"]])
        start = data.get("corticosteroid_start")
        # (field of this episode, field of long-term, days)
        self.corticosteroid_start = None if not start else (
            field(start["episode_field"], "tristate"), field(start["long_term_field"], "tristate"),
            int(start["within_days"]))
        proc = data.get("procedures")
        # (field, days, statuses, {(family, code): display})
        self.procedures = None if not proc else (
            field(proc["field"], "tristate"), float(proc["within_days"]), tuple(proc["statuses"]),
            {_entry(c): c.get("display", "") for c in proc["codes"]})
        self.unmapped: dict[str, str] = {}
        for e in data.get("unmapped", []):
            if e["field"] not in FIELDS:
                raise CodeMapError(f"fhir/codemap.yaml: unmapped: {e['field']} is not a field of the case")
            self.unmapped[e["field"]] = " ".join(str(e["reason"]).split())
        self.labs: dict[tuple[str, str], tuple[str, str]] = {}
        for e in data.get("labs", []):
            if e["unit"] not in units.CONVERSIONS:
                raise CodeMapError(f"fhir/codemap.yaml: lab {e['code']}: unknown unit kind {e['unit']!r}")
            self.labs[_entry(e)] = (field(e["field"], "number"), e["unit"])
        fever = data.get("fever")
        self.fever = None if not fever else (field(fever["field"], "tristate"), float(fever["at_least_celsius"]),
                                             float(fever["within_hours"]), {_entry(c) for c in fever["codes"]})
        families = set(data["systems"])
        used = {c[0] for c in self.cancer + self.condition_findings + self.medications} | \
            {k[0] for k in [*self.observations, *self.labs, *self.present, *self.absent, *(self.fever[3] if self.fever else [])]} | \
            {c[0] for c in (self.antiplatelets[2] if self.antiplatelets else [])} | \
            {k[0] for k in (self.procedures[3] if self.procedures else {})}
        if used - families:
            raise CodeMapError(f"fhir/codemap.yaml: unknown system families {sorted(used - families)}")

    def codings(self, concept: Any) -> list[tuple[str, str]]:
        out = []
        for coding in _coding_list(concept):
            if not isinstance(coding, dict):
                continue
            system, code = coding.get("system"), coding.get("code")
            if isinstance(system, str) and system in self.systems and isinstance(code, (str, int)) and code != "":
                out.append((self.systems[system], str(code)))
        return out

    @staticmethod
    def matches(family: str, code: str, entry_family: str, entry_code: str) -> bool:
        if family != entry_family:
            return False
        if family == "icd10":   # written with or without its dot: C79.51, C7951
            return code.replace(".", "").upper().startswith(entry_code.replace(".", "").upper())
        return code.startswith(entry_code) if family in PREFIX_FAMILIES else code == entry_code


@lru_cache(maxsize=1)
def default_codemap() -> CodeMap:
    """The project's code map, loaded once and checked; CodeMapError says what is wrong."""
    try:
        return CodeMap(yaml.safe_load(CODEMAP_PATH.read_text(encoding="utf-8")))
    except (yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, CodeMapError):
            raise
        raise CodeMapError(f"fhir/codemap.yaml: {type(exc).__name__}: {exc}") from None


# ------------------------------------------------------------------------------------ helpers

def plain_number(number: float) -> str:
    """A number as a clinician writes it: never in exponent form (``1e+09`` reads as 1000000000),
    at most 24 characters (past that, the exponent form is the readable one)."""
    text = f"{number:g}"
    if "e" not in text:
        return text
    plain = format(Decimal(repr(number)), "f")
    if "." in plain:
        plain = plain.rstrip("0").rstrip(".")
    return plain if len(plain) <= 24 else text


def _display(concept: Any, family: str, code: str) -> str:
    """The display the record gives a coding (or the concept's text), for the card."""
    for coding in _coding_list(concept):
        if isinstance(coding, dict) and str(coding.get("code")) == code and isinstance(coding.get("display"), str):
            return str(coding["display"])
    text = concept.get("text") if isinstance(concept, dict) else None
    return text if isinstance(text, str) else ""


def _status(concept: Any) -> Optional[str]:
    if concept is not None and not isinstance(concept, dict):   # e.g. "refuted": never read as no status at all
        raise bad_prefetch("A status (clinicalStatus, verificationStatus) must be a CodeableConcept, an object "
                           "with a 'coding' array, not a plain value.")
    for coding in _coding_list(concept):
        if isinstance(coding, dict) and isinstance(coding.get("code"), str) and coding["code"]:
            return coding["code"]
    return None



def _age(birth: Any, today: dt.date) -> Optional[int]:
    """Age in whole years; a partial birth date takes its latest possible day (never overstates age)."""
    if not isinstance(birth, str) or not FHIR_DATE.match(birth):
        return None   # not a FHIR date (e.g. a 20-digit year): no age is mapped
    try:
        parts = [int(p) for p in birth.split("-")]
        year = parts[0]
        month = parts[1] if len(parts) > 1 else 12
        day = parts[2] if len(parts) > 2 else (31 if month == 12 else
                                               (dt.date(year, month + 1, 1) - dt.timedelta(days=1)).day)
        born = dt.date(year, month, day)
    except (ValueError, IndexError):
        return None
    age = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
    return age if 0 <= age <= 120 else None


def _instant(value: Any) -> Optional[dt.datetime]:
    """A FHIR dateTime with a time and a zone, as an aware datetime; None otherwise (a bare date is vague)."""
    if not isinstance(value, str) or "T" not in value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        # in UTC now: year 1 at +14:00 or year 9999 at -12:00 is outside the calendar there (no crash later)
        return parsed.astimezone(dt.timezone.utc) if parsed.tzinfo is not None else None
    except (ValueError, OverflowError):
        return None


def _day(value: Any) -> Optional[dt.date]:
    """The calendar day (UTC) of a FHIR date or dateTime; None when it is not one, or only a year or a month."""
    if not isinstance(value, str):
        return None
    instant = _instant(value)
    if instant is not None:
        return instant.astimezone(dt.timezone.utc).date()
    if len(value) == 10 and FHIR_DATE.match(value):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            return None
    return None


def _within(value: Any, now: dt.datetime, days: float) -> bool:
    """A FHIR dateTime (or date, counted by calendar days) at most ``days`` before now. One after now
    counts as now: a clock minutes ahead of ours (or a record's error) must not drop a finding that
    raises the urgency, so this is for such findings only."""
    instant = _instant(value)
    if instant is not None:
        return now - instant <= dt.timedelta(days=days)
    day = _day(value)
    return day is not None and (now.date() - day).days <= days


def _stale_absence(obs: dict[str, Any], now: dt.datetime) -> Optional[tuple[str, tuple[tuple[str, str], ...]]]:
    """Why an observation recording a finding absent is not taken as absent now (``WHY`` key and its
    words), or None when it is: final, and made within ``ABSENT_WITHIN_HOURS``."""
    status = obs.get("status")
    if status not in ABSENT_STATUSES:
        return "absent_not_final", (("status", str(status)[:20]),)
    day, when = _taken(obs)
    if when is None:   # a date without a time: absent today only if recorded today
        if day is None:
            return "absent_undated", ()
        if day == now.date():
            return None
        return "absent_too_old", (("day", day.isoformat()), ("hours", f"{ABSENT_WITHIN_HOURS:g}"))
    if not dt.timedelta(0) <= now - when <= dt.timedelta(hours=ABSENT_WITHIN_HOURS):
        return "absent_too_old", (("day", when.date().isoformat()), ("hours", f"{ABSENT_WITHIN_HOURS:g}"))
    return None


Taken = tuple[Optional[dt.date], Optional[dt.datetime]]   # the day (UTC) and the time an observation was taken


def _taken(obs: dict[str, Any]) -> Taken:
    """When an observation was taken: its day and time, or its day alone (a FHIR date without a time, a
    valid effectiveDateTime), or neither (undated). Its effective time or day; else when it was issued."""
    period = obs.get("effectivePeriod") if isinstance(obs.get("effectivePeriod"), dict) else {}
    when = _instant(obs.get("effectiveDateTime")) or _instant(obs.get("effectiveInstant")) \
        or _instant(period.get("end")) or _instant(period.get("start"))
    if when is not None:
        return when.date(), when
    day = next((d for d in (_day(obs.get("effectiveDateTime")), _day(period.get("end")), _day(period.get("start")))
                if d is not None), None)
    if day is not None:
        return day, None
    issued = _instant(obs.get("issued"))
    return (issued.date(), issued) if issued is not None else (_day(obs.get("issued")), None)


def _order(a: Taken, b: Taken) -> int:
    """1 when ``a`` was taken after ``b``, -1 before, 0 when no one can tell (the same time; the same day
    with one of them without a time; both undated). A dated value counts as after an undated one."""
    (day_a, time_a), (day_b, time_b) = a, b
    if time_a is not None and time_b is not None:
        return (time_a > time_b) - (time_a < time_b)
    if day_a is None or day_b is None:
        return (day_a is not None) - (day_b is not None)
    return (day_a > day_b) - (day_a < day_b)


# ------------------------------------------------------------------------------------ rooms of the record

def _patient(record: Record, case: dict[str, Any], mapped: list[Mapped], today: dt.date) -> None:
    for patient in record.of("Patient")[:1]:
        age = _age(patient.get("birthDate"), today)
        if age is None and patient.get("birthDate") is not None:   # given, but no age can be read from it
            mapped.append(Mapped("patient.age_years", None, "patient.age_years left unknown (Patient.birthDate: "
                                 f"{WHY['birth_date_unusable']})", (Evidence("Patient"),), "birth_date_unusable"))
        if age is not None:
            set_path(case, "patient.age_years", age)
            mapped.append(Mapped("patient.age_years", age, f"age {age} years (Patient.birthDate)",
                                 (Evidence("Patient", value=str(patient.get("birthDate"))),)))


# A lymphoma or a leukaemia that is suspected or past (a new lesion may be its relapse) goes before any
# other cancer of the record: steroids before its biopsy can hide it (clinical-rules S2, haem_suspected).
STEROIDS_HIDE = ("lymphoma", "leukaemia")
HAEMATOLOGICAL = ("lymphoma", "leukaemia", "myeloma")


def _cancer_taken(found: list[tuple[str, str, int]]) -> tuple[str, Optional[str]]:
    """The history and primary the case takes from the record's cancers ((level, primary, index in the
    code map) each): a suspected or past lymphoma or leukaemia first; else the most current level, with
    its named primary (a haematological one first, then the code map's order: never the record's order),
    else a named primary of a lower level."""
    hiding = [f for f in found if f[1] in STEROIDS_HIDE and f[0] in ("suspected", "past")]
    pool = hiding or found
    level = max(pool, key=lambda f: HISTORY_RANK[f[0]])[0]
    for candidates in ([f for f in pool if f[0] == level], pool):
        named = sorted((f[1] not in HAEMATOLOGICAL, f[2], f[1]) for f in candidates if f[1] != "unknown")
        if named:
            return level, named[0][2]
    return level, None


def _conditions(record: Record, codemap: CodeMap, case: dict[str, Any], mapped: list[Mapped]) -> None:
    found: list[tuple[str, str, int]] = []
    for condition in record.of("Condition"):
        verification = _status(condition.get("verificationStatus"))
        if verification in ("refuted", "entered-in-error"):
            continue
        clinical = _status(condition.get("clinicalStatus"))
        for family, code in codemap.codings(condition.get("code")):
            for index, (entry_family, entry_code, entry_primary) in enumerate(codemap.cancer):
                if codemap.matches(family, code, entry_family, entry_code):
                    if verification in ("provisional", "differential", "unconfirmed"):
                        level = "suspected"
                    elif clinical in ("inactive", "remission", "resolved"):
                        level = "past"
                    else:
                        level = "current"
                    found.append((level, entry_primary, index))
                    shown = entry_primary if entry_primary != "unknown" else ""
                    evidence = (Evidence("Condition", family, code, _display(condition.get("code"), family, code)),)
                    mapped.append(Mapped("patient.cancer.history", level,
                                         f"cancer {code} -> {level}{', ' + shown if shown else ''}",
                                         evidence, primary=shown))
            if clinical in (None, "active", "recurrence", "relapse"):
                for entry_family, entry_code, path in codemap.condition_findings:
                    if codemap.matches(family, code, entry_family, entry_code):
                        set_path(case, path, True)
                        mapped.append(Mapped(path, True, f"{path} = true (Condition {code})", (Evidence(
                            "Condition", family, code, _display(condition.get("code"), family, code)),)))
    if not found:
        return
    history, primary = _cancer_taken(found)
    set_path(case, "patient.cancer.history", history)
    if primary:
        set_path(case, "patient.cancer.primary", primary)
    if len({(level, name) for level, name, _ in found}) > 1:   # the card says which one the triage took
        mapped.append(Mapped("patient.cancer.history", history, f"several cancers: taken {history}, "
                             f"{primary or 'primary unknown'}", why="several_cancers", primary=primary or ""))


def _refused(obs: dict[str, Any], code: tuple[str, str], path: str, kind: str, number: Optional[float]) -> Mapped:
    """Why an observation's quantity of ``kind`` was not taken for ``path`` (``number``: what it converted
    to, outside the case's limits; None: nothing converted), as the card's line."""
    quantity = obs.get("valueQuantity") if isinstance(obs.get("valueQuantity"), dict) else {}
    unit = quantity.get("code") or quantity.get("unit")
    why, params = (("units_disagree", (("unit", str(quantity.get("unit"))[:20]), ("code", str(quantity.get("code"))[:20])))
                   if number is None and units.units_disagree(quantity, kind)
                   else ("unit_not_converted", (("unit", str(unit)[:20]),))
                   if number is None and units.unit_known(quantity, kind) is False
                   else ("no_usable_value", ()) if number is None
                   else ("outside_limits", (("number", plain_number(number)),)))
    line = f"{path} left unknown (Observation {code[1]}: {WHY[why].format(**dict(params))})"
    return Mapped(path, None, line, (Evidence("Observation", *code, _display(obs.get("code"), *code)),), why, params)


def _latest_labs(readings: dict[str, list[tuple[Taken, float, str, Evidence]]],
                 refusals: dict[str, list[tuple[Taken, Mapped]]], case: dict[str, Any], mapped: list[Mapped]) -> None:
    """Each lab's latest value, or unknown with why: the latest values disagree (taken at the same time,
    or on the same day where one has no time), or a value that could not be read was taken after them
    (an older value is never put in the place of a newer one that was not read; one of the same time,
    perhaps the same result in another unit, does not hide a good one)."""
    unknown: list[Mapped] = []
    for path, values in readings.items():
        latest = [v for v in values if not any(_order(other[0], v[0]) > 0 for other in values)]
        numbers = sorted({v[1] for v in latest})
        if len(numbers) > 1:
            said = " / ".join(plain_number(n) for n in numbers)
            evidence = latest[0][3]
            unknown.append(Mapped(path, None, f"{path} left unknown ({WHY['conflicting_values'].format(numbers=said)})",
                                  (Evidence("Observation", evidence.system, evidence.code, evidence.display),),
                                  "conflicting_values", (("numbers", said),)))
            continue
        taken, number, source, evidence = max(latest, key=lambda v: v[0][1] is not None)   # a timed one, if any
        newer = [m for when, m in refusals.get(path, []) if all(_order(when, v[0]) > 0 for v in latest)]
        if newer:
            unknown.append(newer[0])
            continue
        set_path(case, path, number)
        mapped.append(Mapped(path, number, f"{path} = {plain_number(number)} ({source})", (evidence,)))
    lines = {m.line for m in mapped}
    for m in unknown + [m for path, refused in refusals.items() if path not in readings for _, m in refused]:
        if m.line not in lines:
            mapped.append(m)
            lines.add(m.line)


def _observations(record: Record, codemap: CodeMap, case: dict[str, Any], mapped: list[Mapped],
                  now: dt.datetime) -> None:
    from triage import FIELDS

    observed: dict[str, bool] = {}
    seen: dict[str, list[Evidence]] = {}
    # per lab: every value read, and every value refused, with when it was taken (see _order)
    readings: dict[str, list[tuple[Taken, float, str, Evidence]]] = {}
    refusals: dict[str, list[tuple[Taken, Mapped]]] = {}
    fever_at: Optional[float] = None
    unread_temperature: dict[str, Mapped] = {}   # a recent temperature that could not be read (said on the card)
    stale_absent: dict[str, tuple[Evidence, str, tuple[tuple[str, str], ...]]] = {}
    for obs in record.of("Observation"):
        if obs.get("status") in ("cancelled", "entered-in-error"):
            continue
        codes = codemap.codings(obs.get("code"))
        path = next((codemap.observations[c] for c in codes if c in codemap.observations), None)
        if path is not None:
            # value[x] is one choice in FHIR: a resource with two (invalid) is read so that present wins,
            # never lower, and an absent is taken only when it is the Observation's one value, with no
            # dataAbsentReason beside it (false and Present together: present; false beside a reason: unknown)
            said: list[Optional[bool]] = []
            if isinstance(obs.get("valueBoolean"), bool):
                said.append(obs["valueBoolean"])
            if obs.get("valueCodeableConcept") is not None:
                answers = set(codemap.codings(obs.get("valueCodeableConcept")))
                said.append(True if answers & codemap.present else False if answers & codemap.absent else None)
            values = sum(1 for key in obs if key.startswith("value")) + ("dataAbsentReason" in obs)
            value: Optional[bool] = True if True in said else False if said == [False] and values == 1 else None
            hit = next(c for c in codes if c in codemap.observations)
            evidence = Evidence("Observation", *hit, _display(obs.get("code"), *hit))
            if value is False:
                stale = _stale_absence(obs, now)
                if stale is not None:   # not taken as absent now: the finding stays unknown unless another says
                    stale_absent.setdefault(path, (evidence, *stale))
                    value = None
            if value is not None:
                observed[path] = observed.get(path, False) or value  # present wins
                if evidence not in seen.setdefault(path, []):
                    seen[path].append(evidence)
        lab = next((codemap.labs[c] for c in codes if c in codemap.labs), None)
        if lab is not None and obs.get("status") in LAB_STATUSES:
            path, kind = lab
            number = units.convert(obs.get("valueQuantity"), kind)
            spec = FIELDS[path]
            if number is None or spec.minimum is None or spec.maximum is None or not spec.minimum <= number <= spec.maximum:
                refusals.setdefault(path, []).append((_taken(obs), _refused(obs, codes[0], path, kind, number)))
            else:
                taken = _taken(obs)
                quantity = obs["valueQuantity"]
                said = f"{quantity.get('value')} {quantity.get('code') or quantity.get('unit')}"
                # the card shows when the value was taken (a lab has no window: a clinician judges its age)
                dated = f"{said}, {taken[0].isoformat()}" if taken[0] is not None else said
                readings.setdefault(path, []).append((taken, number, f"Observation {codes[0][1]}: {said}", Evidence(
                    "Observation", *codes[0], _display(obs.get("code"), *codes[0]), dated)))
        if codemap.fever is not None and set(codes) & codemap.fever[3] and obs.get("status") in LAB_STATUSES:
            # A fever raises the urgency: one that may lie within the window counts. Its time, else the
            # day alone (today, or a day the window reaches), else when it was issued (after it was
            # measured); a time after now counts as now (a clock ahead of ours).
            day, when = _taken(obs)
            hours = codemap.fever[2]
            recent = (now - when <= dt.timedelta(hours=hours) if when is not None
                      else day is not None and (now.date() - day).days <= math.ceil(hours / 24))
            celsius = units.convert(obs.get("valueQuantity"), "temperature_celsius")
            if recent and celsius is None:
                unread_temperature.setdefault(codemap.fever[0], _refused(obs, codes[0], codemap.fever[0],
                                                                         "temperature_celsius", None))
            if recent and celsius is not None and celsius >= codemap.fever[1]:
                fever_at = max(fever_at or celsius, celsius)
    for path, value in observed.items():
        set_path(case, path, value)
        mapped.append(Mapped(path, value, f"{path} = {'present' if value else 'absent'} (Observation)",
                             tuple(seen.get(path, ()))))
    for path, (evidence, why, params) in stale_absent.items():
        if path not in observed:
            mapped.append(Mapped(path, None, f"{path} left unknown ({WHY[why].format(**dict(params))})",
                                 (evidence,), why, params))
    _latest_labs(readings, refusals, case, mapped)
    for path, unread in unread_temperature.items():
        if fever_at is None and path not in observed:
            mapped.append(unread)
    if fever_at is not None and codemap.fever is not None:
        set_path(case, codemap.fever[0], True)
        fever_params = (("celsius", f"{fever_at:.1f}"), ("hours", f"{codemap.fever[2]:g}"))
        mapped.append(Mapped(codemap.fever[0], True,
                             f"{codemap.fever[0]} = true ({WHY['fever'].format(**dict(fever_params))})",
                             (Evidence("Observation"),), "fever", fever_params))


def _medication_concept(resource: dict[str, Any], record: Record) -> Any:
    if isinstance(resource.get("medicationCodeableConcept"), dict):
        return resource["medicationCodeableConcept"]
    ref = resource.get("medicationReference")
    target = ref.get("reference") if isinstance(ref, dict) else None
    if not isinstance(target, str):
        return None
    if target.startswith("#"):
        pool = resource.get("contained") if isinstance(resource.get("contained"), list) else []
        wanted = target[1:]
    else:
        pool, wanted = record.of("Medication"), target.rsplit("/", 1)[-1]
    for medication in pool:
        if isinstance(medication, dict) and medication.get("resourceType") == "Medication" and medication.get("id") == wanted:
            return medication.get("code")
    return None


def _started(resource: dict[str, Any]) -> Optional[dt.date]:
    """When a medication was started: a statement's effective start, a request's authoredOn."""
    if resource.get("resourceType") == "MedicationStatement":
        period = resource.get("effectivePeriod") if isinstance(resource.get("effectivePeriod"), dict) else {}
        return _day(period.get("start")) or _day(resource.get("effectiveDateTime"))
    return _day(resource.get("authoredOn"))


Why = tuple[str, tuple[tuple[str, Any], ...]]   # a key of WHY, and its parameters


def _steroid_field(resource: dict[str, Any], codemap: CodeMap, now: dt.datetime) -> tuple[Optional[str], Why]:
    """Which corticosteroid field an active corticosteroid sets (None: neither, with why), by when it started."""
    assert codemap.corticosteroid_start is not None
    episode, long_term, days = codemap.corticosteroid_start
    started = _started(resource)
    if started is None:
        return None, ("no_start", ())
    ago = (now.date() - started).days
    if ago < 0:
        return None, ("future_start", ())
    if ago > days:
        return long_term, ("long_term", (("ago", ago), ("days", days)))
    if resource.get("resourceType") == "MedicationRequest" and resource.get("priorPrescription") is not None:
        return None, ("renewal", ())
    return episode, ("this_episode", (("ago", ago), ("days", days)))


def _why(why: Why) -> str:
    return WHY[why[0]].format(**dict(why[1]))


def _medications(record: Record, codemap: CodeMap, case: dict[str, Any], mapped: list[Mapped],
                 now: Optional[dt.datetime] = None) -> None:
    now = now or dt.datetime.now(dt.timezone.utc)
    # field -> (value, where from (machine line), evidence, why)
    found: dict[str, tuple[Any, str, tuple[Evidence, ...], Optional[Why]]] = {}
    unknown: dict[str, list[tuple[str, Evidence, Optional[Why], str]]] = {}   # line part, evidence, why, note
    antiplatelets: dict[str, tuple[str, Evidence]] = {}   # drug -> where from
    for resource in record.of("MedicationRequest") + record.of("MedicationStatement"):
        if resource.get("status") != "active":
            continue
        kind = resource["resourceType"]
        for family, code in codemap.codings(_medication_concept(resource, record)):
            for entry_family, entry_code, path, value, display in codemap.medications:
                if not codemap.matches(family, code, entry_family, entry_code):
                    continue
                if value is None:
                    name, _, note = display.partition(": ")
                    unknown.setdefault(path, []).append((f"{kind} {display} ({family} {code})",
                                                         Evidence(kind, family, code, name), None, note))
                    continue
                evidence = Evidence(kind, family, code, display or code)
                if codemap.corticosteroid_start is not None and path == codemap.corticosteroid_start[0]:
                    placed, why = _steroid_field(resource, codemap, now)
                    if placed is None:
                        unknown.setdefault(path, []).append(
                            (f"{kind} {display or code} ({family} {code}): {_why(why)}", evidence, why, ""))
                        continue
                    found[placed] = (True, f"{kind} {display or code} ({family} {code}), {_why(why)}", (evidence,), why)
                    continue
                if path in found and found[path][0] == "denosumab":
                    continue   # denosumab is kept over a bisphosphonate
                found[path] = (value, f"{kind} {display or code} ({family} {code})", (evidence,), None)
            if codemap.antiplatelets is not None:
                for entry_family, entry_code, drug, display in codemap.antiplatelets[2]:
                    if codemap.matches(family, code, entry_family, entry_code):
                        antiplatelets.setdefault(drug, (f"{kind} {display or code} ({family} {code})",
                                                        Evidence(kind, family, code, display or code)))
    if codemap.antiplatelets is not None and antiplatelets:
        path, at_least, _ = codemap.antiplatelets
        sources = "; ".join(antiplatelets[d][0] for d in sorted(antiplatelets))
        drugs = tuple(antiplatelets[d][1] for d in sorted(antiplatelets))
        if len(antiplatelets) >= at_least:
            if path not in found:
                found[path] = (True, f"dual antiplatelet therapy: {sources}", drugs, ("dual_antiplatelet", ()))
        else:
            unknown.setdefault(path, []).append((f"one antiplatelet only ({sources}): not dual antiplatelet therapy",
                                                 drugs[0], ("one_antiplatelet", ()), ""))
    for path, (value, source, proof, reason) in found.items():
        set_path(case, path, value)
        mapped.append(Mapped(path, value, f"{path} = {str(value).lower()} ({source})", proof,
                             *(reason or ("", ()))))
    steroid_fields = codemap.corticosteroid_start[:2] if codemap.corticosteroid_start else ()
    for path, entries in unknown.items():
        if path in found or (path in steroid_fields and any(f in found for f in steroid_fields)):
            continue
        parts = list(dict.fromkeys(entries))
        line = f"{path} left unknown ({'; '.join(dict.fromkeys(p[0] for p in parts))})"
        first = next((p[2] for p in parts if p[2]), None)
        note = next((p[3] for p in parts if p[3]), "")
        mapped.append(Mapped(path, None, line, tuple(dict.fromkeys(p[1] for p in parts)), *(first or ("", ())),
                             note=note))


def _procedures(record: Record, codemap: CodeMap, case: dict[str, Any], mapped: list[Mapped], now: dt.datetime) -> None:
    if codemap.procedures is None:
        return
    path, days, statuses, codes = codemap.procedures
    for procedure in record.of("Procedure"):
        status = procedure.get("status")
        if status not in statuses:
            continue
        hits = [c for c in codemap.codings(procedure.get("code")) if c in codes]
        if not hits:
            continue
        period = procedure.get("performedPeriod") if isinstance(procedure.get("performedPeriod"), dict) else {}
        if "performedDateTime" in procedure:
            when: Any = procedure.get("performedDateTime")
        elif period.get("end") is not None:
            when = period.get("end")
        elif status == "in-progress" and period.get("start") is not None:
            when = now.isoformat()   # still going on (a catheter in place): now
        else:
            when = period.get("start")
        if _within(when, now, days):
            set_path(case, path, True)
            family, code = hits[0]
            params = (("status", status), ("days", f"{days:g}"))
            mapped.append(Mapped(path, True, f"{path} = true (Procedure {codes[hits[0]] or code} ({family} {code}), "
                                             f"{WHY['procedure'].format(**dict(params))})",
                                 (Evidence("Procedure", family, code, codes[hits[0]] or code),), "procedure", params))
            return


def case_from_record(record: Record, codemap: CodeMap, now: dt.datetime) -> tuple[dict[str, Any], list[Mapped]]:
    """A case (case-format 2.2) from the record, and what was mapped from which resource (for the card):
    :class:`Mapped` values, put in words by the card (``str()`` of one is its machine line)."""
    case: dict[str, Any] = {}
    mapped: list[Mapped] = []
    rooms: list[tuple[str, Callable[[], None]]] = [
        ("Patient", lambda: _patient(record, case, mapped, now.date())),
        ("Condition", lambda: _conditions(record, codemap, case, mapped)),
        ("Observation", lambda: _observations(record, codemap, case, mapped, now)),
        ("MedicationRequest, MedicationStatement or Medication", lambda: _medications(record, codemap, case, mapped, now)),
        ("Procedure", lambda: _procedures(record, codemap, case, mapped, now)),
    ]
    for kinds, room in rooms:
        try:
            room()
        except MALFORMED as exc:
            # A resource of a shape FHIR R4 does not have: 400 naming the resources, never a 500 (the
            # EHR is told what to fix; the card is not lost to an unexplained failure).
            raise bad_prefetch(f"A {kinds} resource of the record does not have the shape of FHIR R4, so the record "
                               f"cannot be read ({type(exc).__name__}); nothing was triaged.") from None
    return case, mapped


MALFORMED = (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError, UnicodeError,
             RecursionError)


NOT_FINDINGS = frozenset({"patient.age_years"})   # what the Patient resource alone gives


def findings(case: dict[str, Any]) -> list[str]:
    """The clinical findings the record gave the case: every field set, but the age (from Patient alone).

    Empty: the record, read for the right patient, held nothing to triage on (no Condition, Observation
    or medication mapped to a case field); the card then asks for the form, never reassures."""
    out: list[str] = []

    def walk(node: Any, prefix: str) -> None:
        for key, value in node.items():
            path = f"{prefix}{key}"
            if isinstance(value, dict):
                walk(value, path + ".")
            elif value is not None and path not in NOT_FINDINGS:
                out.append(path)

    walk(case, "")
    return out


def case_from_prefetch(prefetch: dict[str, Any], codemap: CodeMap, today: dt.date) -> tuple[dict[str, Any], list[Mapped]]:
    """The case from prefetch alone (no fetching), at noon UTC of ``today``."""
    record, _ = read_prefetch(prefetch)
    now = dt.datetime.combine(today, dt.time(12), tzinfo=dt.timezone.utc)
    return case_from_record(record, codemap, now)

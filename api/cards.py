"""The CDS Hooks 2.0 card: built from the result, with draft orders, override reasons and links.

- ``detail``: the actions with timing, the flags, the unknowns, what was mapped from which resource,
  and where each part of the record came from (sent, fetched, not available).
- ``suggestions``: for each action the result holds that can be ordered, FHIR R4 ``ServiceRequest`` /
  ``MedicationRequest`` drafts (status ``draft``, intent ``proposal``, the patient as subject, text
  always, a code only where we are sure of one). Nothing the result does not hold is ever suggested
  (no dexamethasone when the rules withheld it). The MRI, when there is one, is the recommended one.
- ``overrideReasons``: Codings of this project's code system ``urn:mscc-triage:override-reason``;
  feedback records the code against the card's uuid, no patient data.
- ``links``: the rules and their sources, and the triage form (``/`` and ``/fr/``) with ``?from=<token>``:
  a random token naming what the record said, kept server-side for 30 minutes (``cds.PREFILL_SECONDS``);
  the link carries no finding, and once expired it opens an empty form.

A record read for the right patient but holding no finding (nothing mapped but the age) never gets a
reassuring info card: :func:`thin_card` is a warning, "Not enough in the record to triage: open the
form", with the form's link and the questions to ask first, in the form's own English labels.
"""

from __future__ import annotations

import re
import uuid
from typing import Any, Callable, Iterable, Mapping, Optional

import triage

from .fhir_record import TEMPLATES, Record

INDICATOR = {"emergency": "critical", "urgent": "warning", "routine": "info"}
TIMING_WORDS = {"immediately": "Now", "within_4h": "Within 4 hours", "within_24h": "Within 24 hours",
                "within_48h": "Within 48 hours", "within_1_week": "Within 1 week", "routine": "Routine"}
PRIORITY = {"immediately": "stat", "within_4h": "stat", "within_24h": "urgent", "within_48h": "urgent",
            "within_1_week": "routine", "routine": "routine"}
OVERRIDE_SYSTEM = "urn:mscc-triage:override-reason"
OVERRIDE_REASONS = [
    {"system": OVERRIDE_SYSTEM, "code": "already-done", "display": "Already done or in progress"},
    {"system": OVERRIDE_SYSTEM, "code": "discussed-with-coordinator", "display": "Discussed with the MSCC coordinator"},
    {"system": OVERRIDE_SYSTEM, "code": "patient-declined", "display": "Patient declined"},
    {"system": OVERRIDE_SYSTEM, "code": "not-indicated", "display": "Not clinically indicated"},
    {"system": OVERRIDE_SYSTEM, "code": "record-incorrect", "display": "The record is wrong or out of date"},
]
OVERRIDE_CODES = frozenset(r["code"] for r in OVERRIDE_REASONS)
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
REFERRAL = {"coding": [{"system": SNOMED, "code": "3457005", "display": "Patient referral"}]}

# action id -> (resource type, what is ordered, its code or None, category or None).
# Grouped: actions in one group become one suggestion (dexamethasone with its gastroprotection).
ORDERABLE: dict[str, tuple[str, str, Optional[dict[str, Any]], Optional[dict[str, Any]]]] = {
    "mri_whole_spine_within_4h": ("ServiceRequest", "MRI of the whole spine", None, None),
    "mri_whole_spine_within_24h": ("ServiceRequest", "MRI of the whole spine", None, None),
    "mri_whole_spine_within_1_week": ("ServiceRequest", "MRI of the whole spine", None, None),
    "mri_within_4h_cauda_equina": ("ServiceRequest", "MRI of the lumbosacral spine (cauda equina)", None, None),
    "ct_whole_spine_within_4h": ("ServiceRequest", "CT of the whole spine (MRI contraindicated)", None, None),
    "ct_whole_spine_within_24h": ("ServiceRequest", "CT of the whole spine (MRI contraindicated)", None, None),
    "ct_whole_spine_within_1_week": ("ServiceRequest", "CT of the whole spine (MRI contraindicated)", None, None),
    "ct_lumbosacral_within_4h": ("ServiceRequest", "CT of the lumbosacral spine (MRI contraindicated; cauda equina)",
                                 None, None),
    "dexamethasone_16mg": ("MedicationRequest", "Dexamethasone 16 mg (oral or IV), then daily",
                           {"coding": [{"system": RXNORM, "code": "3264", "display": "dexamethasone"}]}, None),
    "gastroprotection_ppi": ("MedicationRequest", "Proton pump inhibitor while on steroids", None, None),
    "baseline_bloods": ("ServiceRequest", "Full blood count, renal function, calcium, glucose", None, None),
    "blood_cultures_and_infection_markers": ("ServiceRequest", "Blood cultures, full blood count and CRP", None, None),
    "myeloma_screen_bloods": ("ServiceRequest", "Myeloma screen: full blood count, calcium, ESR or plasma viscosity, "
                              "serum protein electrophoresis", None, None),
    "vitamin_d_assay": ("ServiceRequest", "25-OH vitamin D", None, None),
    "ecg": ("ServiceRequest", "12-lead ECG", None, None),
    "iv_rehydration": ("MedicationRequest", "Sodium chloride 0.9% intravenous infusion (rehydration)", None, None),
    "iv_bisphosphonate_for_hypercalcaemia": ("MedicationRequest", "Intravenous bisphosphonate for hypercalcaemia "
                                             "(choice and dose by renal function)", None, None),
    "iv_calcium_replacement": ("MedicationRequest", "Intravenous calcium, with cardiac monitoring", None, None),
    "urgent_spinal_surgical_opinion": ("ServiceRequest", "Referral: urgent spinal surgical opinion", None, REFERRAL),
    "spinal_surgical_opinion_now": ("ServiceRequest", "Referral: spinal surgical opinion now", None, REFERRAL),
    "neurology_review_now": ("ServiceRequest", "Referral: neurology review now", None, REFERRAL),
    "contact_paediatric_oncology_now": ("ServiceRequest", "Referral: paediatric oncology now", None, REFERRAL),
    "radiotherapy_referral": ("ServiceRequest", "Referral: clinical oncology for radiotherapy", None, REFERRAL),
    "neurology_review": ("ServiceRequest", "Referral: neurology review", None, REFERRAL),
    "contact_mscc_coordinator_within_24h": ("ServiceRequest", "Referral: MSCC coordinator", None, REFERRAL),
}
GROUPS = [("dexamethasone_16mg", "gastroprotection_ppi")]
MRI = {"mri_whole_spine_within_4h", "mri_whole_spine_within_24h", "mri_whole_spine_within_1_week",
       "mri_within_4h_cauda_equina", "ct_whole_spine_within_4h", "ct_whole_spine_within_24h",
       "ct_whole_spine_within_1_week", "ct_lumbosacral_within_4h"}   # the scan, recommended
# Held with the dexamethasone: named in the card only through it.
COMPANIONS = frozenset({"gastroprotection_ppi", "capillary_glucose_monitoring"})


def _draft(action: triage.ActionItem, patient_id: Optional[str]) -> dict[str, Any]:
    kind, what, code, category = ORDERABLE[action.id]
    text = f"{what}: {TIMING_WORDS[action.timing].lower()}"
    concept = dict(code or {}, text=what)
    resource: dict[str, Any] = {"resourceType": kind, "status": "draft", "intent": "proposal",
                                "priority": PRIORITY[action.timing]}
    if patient_id:
        resource["subject"] = {"reference": f"Patient/{patient_id}"}
    if kind == "ServiceRequest":
        resource["code"] = concept
        if category:
            resource["category"] = [category]
        resource["note"] = [{"text": f"{action.label} ({action.source})"}]
    else:
        resource["medicationCodeableConcept"] = concept
        dosage: dict[str, Any] = {"text": action.label}
        if action.id == "dexamethasone_16mg":
            dosage["doseAndRate"] = [{"doseQuantity": {"value": 16, "unit": "mg", "system": UCUM, "code": "mg"}}]
        resource["dosageInstruction"] = [dosage]
        resource["note"] = [{"text": action.source}]
    return {"type": "create", "description": text, "resource": resource}


def suggestions_for(result: triage.Result, patient_id: Optional[str]) -> list[dict[str, Any]]:
    """Draft orders for the orderable actions the result holds, grouped, the MRI recommended."""
    actions = {a.id: a for a in result.actions if a.id in ORDERABLE}
    out = []
    done: set[str] = set()
    for action_id, action in actions.items():
        if action_id in done:
            continue
        group = next((g for g in GROUPS if action_id in g), (action_id,))
        members = [actions[a] for a in group if a in actions]
        done.update(a.id for a in members)
        out.append({
            "label": " with ".join(ORDERABLE[a.id][1].split(" (")[0] for a in members) + f" ({TIMING_WORDS[action.timing].lower()})",
            "uuid": str(uuid.uuid4()),
            "isRecommended": action_id in MRI,
            "actions": [_draft(a, patient_id) for a in members],
        })
    out.sort(key=lambda suggestion: not suggestion["isRecommended"])   # the MRI first
    return out


# What makes Markdown of plain text: links and images ([ ]), HTML and autolinks (<), entities (&), emphasis
# (* and _ at a word's edge: snake_case stays as it is), code (`), strikethrough (~), tables (|), escapes (\).
_MARKDOWN = re.compile(r"([\\`*\[\]<&|~]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")
_AUTOLINK = re.compile(r"(?i)(https?|ftp|mailto|www)([:.@])")


def escape(text: str) -> str:
    """Text from the record as inert Markdown: no link, image, HTML, emphasis, heading or new block.

    Every character that gives plain text a Markdown meaning is backslash-escaped (CommonMark renders
    ``\\[`` as ``[``), line breaks become spaces (no new block: heading, list, quote), and what a
    GitHub-flavoured renderer would turn into a link by itself (``https://``, ``www.``) is broken up
    the same way."""
    flat = " ".join(str(text).encode("utf-8", "replace").decode("utf-8").split())   # a lone surrogate: '?'
    return _AUTOLINK.sub(lambda m: f"{m.group(1)}\\{m.group(2)}", _MARKDOWN.sub(r"\\\1", flat))


def _from_record(mapped: Iterable[str]) -> str:
    """The "From the record" line: what was mapped, each part escaped (it holds the record's codes and units)."""
    parts = [escape(line) for line in mapped]
    return "**From the record**: " + ("; ".join(parts) if parts else "nothing mapped")


def _record_lines(record: Optional[Record]) -> list[str]:
    if record is None:
        return []
    parts = []
    for key in TEMPLATES:
        if key in record.unavailable:
            parts.append(escape(f"{key}: not available ({record.unavailable[key]})"))
        elif key in record.origin:
            parts.append(escape(f"{key}: {record.origin[key]}"))
    return ["**Record**: " + "; ".join(parts)] if parts else []


def _links(root: str, form_token: Optional[str]) -> list[dict[str, str]]:
    prefill = f"?from={form_token}" if form_token else ""
    rules = {"label": "Rules and sources", "url": f"{root}v1/ruleset", "type": "absolute"}
    form = [{"label": "Open the MSCC triage form (answer what the record does not say)", "url": f"{root}{prefill}",
             "type": "absolute"},
            {"label": "Formulaire de triage CMM (français)", "url": f"{root}fr/{prefill}", "type": "absolute"}]
    return [rules, *form]


Cite = Callable[[str], str]


def _plain_cite(source: str) -> str:
    return source


def _sources_block(result: triage.Result, cite: Cite) -> tuple[list[str], dict[str, int]]:
    """Every citation of the result once, numbered (national guidance first, as the result orders them)."""
    numbers: dict[str, int] = {}
    for action in result.actions:
        for part in (p.strip() for p in cite(action.source).split(";")):
            if part and part not in numbers:
                numbers[part] = len(numbers) + 1
    lines = ["**Sources**"] + [f"{n}. {text}" for text, n in numbers.items()] if numbers else []
    return lines, numbers


def _refs(source: str, cite: Cite, numbers: Mapping[str, int]) -> str:
    found = sorted({numbers[p.strip()] for p in cite(source).split(";") if p.strip() in numbers})
    return f" [{', '.join(map(str, found))}]" if found else ""


def _unknown_lines(result: triage.Result, ruleset: triage.Ruleset, labels: Mapping[str, str]) -> list[str]:
    lines = []
    for u in sorted(result.unknowns, key=lambda u: -URGENCY_RANK[u.could_raise_to]):
        added = [ruleset.data.flags[f].label for f in u.would_add_flags]
        scans = [ruleset.data.actions[a].label for a in u.would_add_actions]
        lines.append(f"- {_label(u.field, labels)}: if present, {u.could_raise_to}"
                     + (f"; adds: {'; '.join(added)}" if added else "")
                     + (f"; would ask: {'; '.join(scans)}" if scans else ""))
    return lines


def _actions_and_flags(result: triage.Result, cite: Cite, numbers: Mapping[str, int]) -> list[str]:
    """The actions with their timing and source numbers, then the flags with their severity."""
    lines: list[str] = []
    if result.actions:
        lines.append("**Actions**")
        lines += [f"- {TIMING_WORDS[a.timing]}: {a.label}{_refs(a.source, cite, numbers)}" for a in result.actions]
        lines.append("")
    if result.flags:
        lines.append("**Flags**")
        lines += [f"- [{f.severity}] {f.label}" for f in result.flags]
        lines.append("")
    return lines


def _record_and_sources(mapped: list[str], record: Optional[Record], sources: list[str]) -> list[str]:
    """What was read from the record and where it came from, then the numbered sources."""
    lines = [_from_record(mapped), *_record_lines(record), ""]
    return lines + sources + [""] if sources else lines


def _card(result: triage.Result, ruleset: triage.Ruleset, summary: str, indicator: str, lines: list[str],
          root: str, patient_id: Optional[str], form_token: Optional[str]) -> dict[str, Any]:
    """A card with its detail, source, override reasons, links and the draft orders of the result."""
    card: dict[str, Any] = {
        "uuid": str(uuid.uuid4()),
        "summary": summary,
        "indicator": indicator,
        "detail": "\n".join(lines),
        "source": {"label": f"mscc-triage ruleset {ruleset.name} {ruleset.version}", "url": f"{root}v1/ruleset"},
        "overrideReasons": OVERRIDE_REASONS,
        "links": _links(root, form_token),
    }
    suggestions = suggestions_for(result, patient_id)
    if suggestions:
        card["suggestions"] = suggestions
        card["selectionBehavior"] = "any"
    return card


def _withheld_lines(result: triage.Result) -> list[str]:
    """The actions held back that a clinician acts on (the steroid, a scan, a surgeon), with the reason."""
    lines = []
    for held in result.withheld:
        if held.id in COMPANIONS:
            continue
        reasons = "; ".join(h.reason + (f" (unless: {h.release})" if h.release else "") for h in held.held_by)
        lines.append(f"- {held.label}: {reasons}")
    return ["**Not given, and why**", *lines, ""] if lines else []


def card_for(result: triage.Result, ruleset: triage.Ruleset, mapped: list[str], root: str,
             record: Optional[Record] = None, patient_id: Optional[str] = None,
             form_token: Optional[str] = None, labels: Optional[Mapping[str, str]] = None,
             cite: Optional[Cite] = None) -> dict[str, Any]:
    """The card for a result; ``root`` is the service's public base URL (ends with '/').

    Everything a clinician reads is in words: the form's labels for the findings still to ask
    (``labels``: case field -> English label), readable citations (``cite``: a rule's source -> its
    citations), numbered once, and the titles of the rules that applied; ids and field paths stay in
    the machine-readable parts (the ruleset link, the decision record). ``form_token`` names what the
    record said, kept by the service for 30 minutes: the form's links then open with those answers
    filled in (the link itself carries no finding)."""
    labels = labels or {}
    cite = cite or _plain_cite
    sources, numbers = _sources_block(result, cite)
    lines = [f"**{result.urgency.upper()}**: {result.headline}", ""]
    lines += _actions_and_flags(result, cite, numbers)
    lines += _withheld_lines(result)
    if result.unknowns:
        lines.append("**Not yet assessed** (each would raise the urgency, add a critical flag or ask a scan)")
        lines += _unknown_lines(result, ruleset, labels)
        lines.append("")
    lines += _record_and_sources(mapped, record, sources)
    titles = "; ".join(r.title for r in result.fired_rules)
    lines.append(f"Rules that applied (ruleset {ruleset.name} {ruleset.version}): {titles}. {result.disclaimer}")
    return _card(result, ruleset, result.headline[:140], INDICATOR[result.urgency], lines, root, patient_id,
                 form_token)


THIN_SUMMARY = "Not enough in the record to triage: open the form"
URGENCY_RANK = {"routine": 0, "urgent": 1, "emergency": 2}


def _label(path: str, labels: Mapping[str, str]) -> str:
    """The form's English label of a case field; never the raw path (a readable fallback if unlabelled).
    A detail of a finding is named with its finding ("Limb weakness (Getting worse)")."""
    parts = path.split(".")
    group = ".".join(parts[:2]) + ".present" if len(parts) == 3 and parts[0] == "presentation" else None
    if labels.get(path) and group and group != path and labels.get(group):
        return f"{labels[group]} ({labels[path]})"
    if labels.get(path):
        return labels[path]
    words = [part for part in path.split(".") if part not in ("patient", "presentation", "assessment", "present")]
    return " ".join(words[-2:]).replace("_", " ").capitalize() or "Finding"


def thin_card(result: triage.Result, ruleset: triage.Ruleset, labels: Mapping[str, str], mapped: list[str],
              root: str, record: Optional[Record] = None, patient_id: Optional[str] = None,
              form_token: Optional[str] = None, cite: Optional[Cite] = None) -> dict[str, Any]:
    """The card for a record read for this patient that held no finding: a warning that asks for the form.

    Never "No MSCC pathway today": an empty record is not a reassuring one. ``labels``: case field ->
    the form's English label (``rules/form.yaml``); no field path is shown. Should the rules still find
    something to do (from the age alone), its actions and orders are kept and the indicator never lowered."""
    lines = ["**Not enough in the record to triage**: the record was read for this patient, but it holds no "
             "cancer, metastasis, symptom, lab or medication this service can read. This is not a \"no MSCC "
             "pathway\" answer: open the MSCC triage form and ask the questions below.", ""]
    cite = cite or _plain_cite
    sources, numbers = _sources_block(result, cite)
    if result.unknowns:
        lines.append("**Ask first**")
        lines += _unknown_lines(result, ruleset, labels)
        lines.append("")
    lines += _actions_and_flags(result, cite, numbers)
    lines += _record_and_sources(mapped, record, sources)
    lines.append(result.disclaimer)
    indicator = INDICATOR[result.urgency] if result.urgency == "emergency" else "warning"
    return _card(result, ruleset, THIN_SUMMARY, indicator, lines, root, patient_id, form_token)

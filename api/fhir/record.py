"""Gather the record for one CDS Hooks call: the prefetch read liberally, then what is missing fetched.

Reading is liberal: every prefetch value is a FHIR resource or a Bundle of them, and resources are
used by their ``resourceType`` whatever key they came under (HealthChain sends one Condition under
``condition``). A declared template counts as sent when its key is present, even as ``null`` (the EHR
looked and found nothing: never fetched again), or when resources of its type came under another key.
Resources about another patient than ``context.patientId`` (a Patient of another id, a ``subject``,
``patient`` or Observation ``focus`` reference to another Patient), and resources the triage reads that
are not shown to be about it (a Patient without an id; a Condition, Observation, medication or Procedure
whose subject is missing, or whose subject or focus is an identifier only, a Group or other non-Patient, a
contained, ``urn:uuid`` or search reference, or an absolute URL on another server than the call's
``fhirServer``), are an integration error of the caller (HealthChain's
sandbox, for one, invents a random patient id): the call answers 412 naming how many resources of
which type were set aside and why, never a card (a card from another patient's record, or from what
is left of this one, could wrongly reassure). Nothing about the other patient (ids, names, values)
is echoed or logged. A call without a ``context.patientId`` is a 400 before anything is read
(api/cds/service.py).

What is still missing is fetched from ``fhirServer`` (see :mod:`.fetch`), when the server is on
the allow-list. A required template (patient, conditions, observations) that cannot be had answers
412 naming it and why; an optional one (medications, procedures) that cannot be had stays unknown, and
the card says so (a record without medication scopes still gets its triage).

A Bundle inside a Bundle (a batch-response of searchsets, say), under any key, is not read, and a
search Bundle that says it holds more than it sent (a ``total`` above its matches, a warning
OperationOutcome entry, a ``next`` link) is not all there: the call answers 412 (``fhir-incomplete``)
naming the key, as for a fetched search left in part, never a card
from the rest (a finding inside it would be lost). Reading nested Bundles would mean reading their
own paging, totals and outcomes, each a way to read a record in part.

Malformed FHIR under a declared key (a Bundle ``entry`` that is not an array, a value that is not a
resource) is a 400 naming the key; under a key the service never asked for, it is ignored.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Optional

from ..problems import ApiProblem
from .fetch import (CannotFetch, FetchFailed, FetchSettings, FhirFetchError, allowed_base, fetch_all,
                    normalise_base, token_of, unread_matches)

FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
SAFE_KEY = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")   # a prefetch key echoed in a problem only when it looks like one
OTHER_PATIENT = "urn:mscc-triage:problem:fhir-other-patient"
INCOMPLETE = "urn:mscc-triage:problem:fhir-incomplete"
log = logging.getLogger("mscc_triage.api")


@dataclass(frozen=True)
class Template:
    query: str                 # with {{context.patientId}}
    types: tuple[str, ...]     # what it yields; the first one decides whether it was sent under another key
    required: bool
    # Required only when the request offers a fhirServer (a failed fetch is then a 412); a client that
    # sends neither the data nor a server gets a card in which every such finding is "not assessed".
    soft: bool = False


TEMPLATES: dict[str, Template] = {
    "patient": Template("Patient/{{context.patientId}}", ("Patient",), True),
    "conditions": Template("Condition?patient={{context.patientId}}", ("Condition",), True),
    "observations": Template("Observation?patient={{context.patientId}}", ("Observation",), True, soft=True),
    "medicationRequests": Template("MedicationRequest?patient={{context.patientId}}&status=active",
                                   ("MedicationRequest", "Medication"), False),
    "medicationStatements": Template("MedicationStatement?patient={{context.patientId}}&status=active",
                                     ("MedicationStatement", "Medication"), False),
    # case-format 2.2: a neuraxial procedure in the last 7 days. Optional, like the medications: when it
    # cannot be had, recent_neuraxial_procedure stays unknown and the card says so.
    "procedures": Template("Procedure?patient={{context.patientId}}", ("Procedure",), False),
}


def discovery_prefetch() -> dict[str, str]:
    return {key: t.query for key, t in TEMPLATES.items()}


@dataclass
class Record:
    """The resources of one call by type, and where each template's data came from (for the card)."""

    resources: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)    # key -> 'sent' | 'sent empty' | 'fetched' | ...
    unavailable: dict[str, str] = field(default_factory=dict)   # optional key -> why it could not be had
    # resources set aside, about another patient: (where from, resourceType, why); never their content
    set_aside: list[tuple[str, str, str]] = field(default_factory=list)

    def of(self, resource_type: str) -> list[dict[str, Any]]:
        return self.resources.get(resource_type, [])


def bad_prefetch(detail: str) -> ApiProblem:
    return ApiProblem(400, "Bad prefetch", detail, "urn:mscc-triage:problem:bad-prefetch")


def _resources_of(value: Any, name: str, strict: bool) -> list[dict[str, Any]]:
    """The resources in one prefetch value (a resource, or a Bundle of them)."""
    if value is None:
        return []
    if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
        if strict:
            raise bad_prefetch(f"prefetch.{name} must be a FHIR resource or Bundle (an object with a resourceType)")
        return []
    if value["resourceType"] != "Bundle":
        return [value]
    entries = value.get("entry")
    if entries is None:
        return []
    if not isinstance(entries, list):
        if strict:
            raise bad_prefetch(f"prefetch.{name}.entry must be an array")
        return []
    found = []
    for entry in entries:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and isinstance(resource.get("resourceType"), str):
            if resource["resourceType"] == "Bundle":   # never skipped: a finding inside it would be lost
                raise incomplete_prefetch(name, "holds a Bundle inside a Bundle, which is not read")
            found.append(resource)
    unread = unread_matches(value, entries)
    if unread is not None:
        raise incomplete_prefetch(name, f"is a search answered in part ({unread})")
    links = value.get("link")
    if any(isinstance(link, dict) and link.get("relation") == "next" and link.get("url")
           for link in (links if isinstance(links, list) else [])):
        raise incomplete_prefetch(name, "is a search page with a next page, which was not sent")
    return found


def incomplete_prefetch(name: str, why: str) -> ApiProblem:
    """412: part of a prefetch value is not read (a Bundle inside a Bundle) or was not sent (a search
    that says it has more); never a card from the rest."""
    key = name if SAFE_KEY.match(name) else "(a key)"
    reason = f"prefetch.{key} {why}"
    return ApiProblem(412, "Precondition Failed",
                      f"{reason}: the record was not all read, and a card from part of it could wrongly reassure. "
                      f"Send each search whole under its own prefetch key (a searchset Bundle of resources).",
                      INCOMPLETE, errors=[{"prefetch": key, "code": "fhir-incomplete", "reason": reason}])


# The resource types the mapping reads about the patient: each must name its patient, by a reference to
# ``Patient/<context.patientId>`` (FHIR R4: ``subject`` 1..1 on all but Observation, where a search by
# patient always fills it). A subject that cannot be checked (an identifier only, a Group, a contained or
# malformed reference, an absolute URL on another server than the call's fhirServer, none at all) is not
# shown to be about this patient: set aside like one about another patient, never triaged.
ABOUT_THE_PATIENT = frozenset({"Condition", "Observation", "MedicationRequest", "MedicationStatement", "Procedure"})
_PATIENT_REFERENCE = re.compile(r"^Patient/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?$")


def _reference_target(reference: str, server: Optional[str]) -> Optional[str]:
    """The Patient id a reference names, relative or absolute on the call's FHIR server (None: neither)."""
    if "://" in reference:
        if server is None:
            return None
        base, _, rest = reference.rpartition("/Patient/")
        if not base or normalise_base(base) != server:
            return None
        reference = "Patient/" + rest
    match = _PATIENT_REFERENCE.match(reference)
    return match.group(1) if match else None


def _names_a_patient(ref: Any) -> bool:
    """Whether a reference, whatever its form, says it is a Patient (by its ``type``, or a ``Patient/``,
    ``Patient?`` segment in its URL)."""
    if not isinstance(ref, dict):
        return False
    reference = ref.get("reference")
    return ref.get("type") == "Patient" or (
        isinstance(reference, str) and re.search(r"(?:^|/)Patient(?:[/?]|$)", reference) is not None)


def _reference_problem(name: str, ref: Any, patient_id: str, server: Optional[str], strict: bool) -> Optional[str]:
    """Why the reference ``ref`` (under ``name``) is not shown to be ``Patient/<patient_id>`` (None: it is).

    ``strict`` (a resource the triage reads): anything that cannot be told safely to be this patient (an
    identifier only, a ``type`` other than Patient, a contained, ``urn:uuid``, search or malformed
    reference, an absolute URL on another server) is a reason. Otherwise only a reference that says it
    is a Patient and is not shown to be this one."""
    reference = ref.get("reference") if isinstance(ref, dict) else None
    kind = ref.get("type") if isinstance(ref, dict) else None
    if not isinstance(reference, str) or (kind is not None and kind != "Patient"):
        if strict or _names_a_patient(ref):
            return f"{name} is not a reference to a Patient by id"
        return None
    target = _reference_target(reference, server)
    if target is None:
        if not strict and server is None and "://" in reference:   # an absolute URL, nothing to check it against
            match = re.match(r"^.*/Patient/([^/]+)$", reference)
            if match and match.group(1) == patient_id:
                return None
        if strict or _names_a_patient(ref):
            return f"{name} is not a reference to a Patient on the call's FHIR server"
        return None
    if target != patient_id:
        return "focus is another patient than context.patientId" if name == "focus" else f"{name} is not context.patientId"
    return None


def _about_other_patient(resource: dict[str, Any], patient_id: Optional[str],
                         server: Optional[str] = None) -> Optional[str]:
    """Why the resource is not shown to be about ``patient_id`` (None: it is, or nothing to check).

    A resource is this patient's only when every reference it carries that says whose data it is
    (``subject``, ``patient``, ``focus``) is shown to be ``Patient/<patient_id>``: relative, versioned
    (``/_history/N``) or an absolute URL under the call's fhirServer. ``patient_id`` None: no check
    (offline mapping); "" (the call has no ``context.patientId``): every resource that names a patient
    is about another one. ``server``: the call's fhirServer (normalised), against which an absolute
    reference is checked."""
    if patient_id is None:
        return None
    kind = resource.get("resourceType")
    if kind == "Patient":
        if not isinstance(resource.get("id"), str):
            return "a Patient without an id"
        if resource["id"] != patient_id:
            return "Patient.id is not context.patientId"
        return None
    checked = kind in ABOUT_THE_PATIENT
    named = [name for name in ("subject", "patient") if resource.get(name) is not None]
    if not named and checked:
        return f"{kind} has no subject"
    for name in named:   # 0..1 in FHIR: a list is malformed, not a list of patients
        why = _reference_problem(name, resource[name], patient_id, server, checked)
        if why is not None:
            return why
    # Observation.focus: what it is about when not its subject (a relative, a donor, a fetus): read as this
    # patient's finding only when it is this patient.
    focus = resource.get("focus")
    for ref in focus if isinstance(focus, list) else [focus] if focus is not None else []:
        why = _reference_problem("focus", ref, patient_id, server, checked)
        if why is not None:
            return why
    return None


def _add(record: Record, resources: list[dict[str, Any]], patient_id: Optional[str], source: str,
         server: Optional[str] = None) -> None:
    for resource in resources:
        why = _about_other_patient(resource, patient_id, server)
        if why is not None:
            record.set_aside.append((source, resource["resourceType"], why))
            continue
        record.resources.setdefault(resource["resourceType"], []).append(resource)


def other_patient_problem(record: Record, patient_id_missing: bool = False) -> ApiProblem:
    """412: the record holds resources about another patient; counts by source, type and reason only."""
    counts = Counter(record.set_aside)
    by_type = Counter(resource_type for _, resource_type, _ in record.set_aside)
    types = ", ".join(f"{n} {t}" for t, n in sorted(by_type.items()))
    total = len(record.set_aside)
    why = ("the call has no context.patientId, so no resource can be tied to the patient in view"
           if patient_id_missing else "; ".join(sorted({reason for _, _, reason in record.set_aside})))
    log.warning("CDS call refused (412): %d resource(s) about another patient than context.patientId set aside (%s)",
                total, types)
    return ApiProblem(
        412, "Precondition Failed",
        f"{total} resource(s) set aside ({types}): {why}. This is an integration error of the calling EHR or "
        f"client (its prefetch or its FHIR server answered for another patient than the one in view; every "
        f"prefetch template must use {{{{context.patientId}}}}). Nothing was triaged: a card from another "
        f"patient's record, or from what is left of this one, could wrongly reassure. Triage this patient "
        f"with the MSCC triage form until the integration is fixed.",
        OTHER_PATIENT,
        setAside=[{"source": source, "resourceType": resource_type, "count": n, "reason": reason}
                  for (source, resource_type, reason), n in sorted(counts.items())])


def read_prefetch(prefetch: Any, patient_id: Optional[str] = None,
                  server: Optional[str] = None) -> tuple[Record, set[str]]:
    """The record in the prefetch, and the declared keys it covers (present, even null, or sent by type).

    With ``patient_id`` (a call's ``context.patientId``, "" when it has none), resources about another
    patient are put in ``set_aside``, not in the record; without it (offline mapping), nothing is checked."""
    record = Record()
    if prefetch is None:
        return record, set()
    if not isinstance(prefetch, dict):
        raise bad_prefetch("prefetch must be an object of FHIR resources")
    for name, value in prefetch.items():
        source = f"prefetch.{name}" if SAFE_KEY.match(str(name)) else "prefetch (a key)"
        _add(record, _resources_of(value, str(name), strict=name in TEMPLATES), patient_id, source, server)
    covered = set()
    for key, template in TEMPLATES.items():
        if key in prefetch:
            covered.add(key)
            record.origin[key] = "sent empty (null)" if prefetch[key] is None else "sent"
        elif record.of(template.types[0]):
            covered.add(key)
            record.origin[key] = "sent under another key"
    return record, covered


def _query(template: Template, patient_id: str) -> str:
    return template.query.replace("{{context.patientId}}", patient_id)


def _precondition_failed(errors: list[FhirFetchError], missing_required: list[str]) -> ApiProblem:
    first = errors[0]
    said = "; ".join(f"{e.key}: {e.reason}" for e in errors)
    return ApiProblem(412, "Precondition Failed",
                      f"Required prefetch missing: {', '.join(missing_required)}, and the FHIR server could not "
                      f"provide it ({said}).",
                      f"urn:mscc-triage:problem:{first.code}",
                      errors=[{"prefetch": e.key, "code": e.code, "reason": e.reason} for e in errors])


def gather(body: dict[str, Any], settings: FetchSettings) -> Record:
    """The record of a CDS Hooks request: prefetch first, then the FHIR server for what is missing."""
    context = body.get("context") if isinstance(body.get("context"), dict) else {}
    patient_id = context.get("patientId") if isinstance(context.get("patientId"), str) else None
    server = normalise_base(body["fhirServer"]) if isinstance(body.get("fhirServer"), str) else None
    record, covered = read_prefetch(body.get("prefetch"), patient_id or "", server)
    if record.set_aside:   # never a card, never a fetch, for a record about someone else
        raise other_patient_problem(record, patient_id_missing=not patient_id)
    missing = [key for key in TEMPLATES if key not in covered]
    if not missing:
        return record
    required = [key for key in missing if TEMPLATES[key].required
                and not (TEMPLATES[key].soft and "fhirServer" not in body)]
    try:
        if "fhirServer" not in body:
            raise CannotFetch("the request has no fhirServer to fetch from")
        base = allowed_base(settings, body["fhirServer"])
        token = token_of(body.get("fhirAuthorization"))
        if patient_id is None or not FHIR_ID.match(patient_id) or not patient_id.strip("."):   # never "Patient/.."
            raise CannotFetch("context.patientId is not a FHIR id")
    except FhirFetchError as exc:
        if required:
            raise _precondition_failed([_for_key(exc, key) for key in required], required) from None
        for key in missing:
            record.unavailable[key] = exc.reason
        return record
    try:
        fetched = fetch_all(base, token, {key: _query(TEMPLATES[key], patient_id) for key in missing}, settings)
        failed: list[FhirFetchError] = []
    except FetchFailed as exc:
        failed = exc.errors
        fetched = exc.found
    if any(TEMPLATES[e.key].required for e in failed):
        raise _precondition_failed([e for e in failed if TEMPLATES[e.key].required], required)
    for error in failed:
        record.unavailable[error.key] = error.reason
    for key, resource in fetched.items():
        _add(record, _resources_of(resource, key, strict=False), patient_id, f"fetched.{key}", server)
        record.origin[key] = "fetched from the FHIR server"
    if record.set_aside:   # the FHIR server answered for another patient
        raise other_patient_problem(record)
    return record


def _for_key(exc: FhirFetchError, key: str) -> FhirFetchError:
    """The same error, about one key (one error per missing template in the 412)."""
    return type(exc)(exc.reason, key)

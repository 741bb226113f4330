"""Gather the record for one CDS Hooks call: the prefetch read liberally, then what is missing fetched.

Reading is liberal: every prefetch value is a FHIR resource or a Bundle of them, and resources are
used by their ``resourceType`` whatever key they came under (HealthChain sends one Condition under
``condition``). A declared template counts as sent when its key is present, even as ``null`` (the EHR
looked and found nothing: never fetched again), or when resources of its type came under another key.
Resources whose subject is another patient than ``context.patientId`` are set aside and counted.

What is still missing is fetched from ``fhirServer`` (see :mod:`.fhir_fetch`), when the server is on
the allow-list. A required template (patient, conditions, observations) that cannot be had answers
412 naming it and why; an optional one (medications) that cannot be had stays unknown, and the card
says so (a record without medication scopes still gets its triage).

Malformed FHIR under a declared key (a Bundle ``entry`` that is not an array, a value that is not a
resource) is a 400 naming the key; under a key the service never asked for, it is ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Optional

from .fhir_fetch import (CannotFetch, FetchFailed, FetchSettings, FhirFetchError, allowed_base, fetch_all, token_of)
from .problems import ApiProblem

FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


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
}


def discovery_prefetch() -> dict[str, str]:
    return {key: t.query for key, t in TEMPLATES.items()}


@dataclass
class Record:
    """The resources of one call by type, and where each template's data came from (for the card)."""

    resources: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)    # key -> 'sent' | 'sent empty' | 'fetched' | ...
    unavailable: dict[str, str] = field(default_factory=dict)   # optional key -> why it could not be had
    other_patient: int = 0    # resources set aside: their subject is another patient

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
        if isinstance(resource, dict) and isinstance(resource.get("resourceType"), str) \
                and resource["resourceType"] != "Bundle":
            found.append(resource)
    return found


def _about_other_patient(resource: dict[str, Any], patient_id: Optional[str]) -> bool:
    if not patient_id:
        return False
    if resource.get("resourceType") == "Patient":
        return isinstance(resource.get("id"), str) and resource["id"] != patient_id
    for name in ("subject", "patient"):
        ref = resource.get(name)
        if isinstance(ref, dict) and isinstance(ref.get("reference"), str):
            match = re.match(r"^(?:.*/)?Patient/([^/]+)$", ref["reference"])
            if match and match.group(1) != patient_id:
                return True
    return False


def _add(record: Record, resources: list[dict[str, Any]], patient_id: Optional[str]) -> None:
    for resource in resources:
        if _about_other_patient(resource, patient_id):
            record.other_patient += 1
            continue
        record.resources.setdefault(resource["resourceType"], []).append(resource)


def read_prefetch(prefetch: Any, patient_id: Optional[str] = None) -> tuple[Record, set[str]]:
    """The record in the prefetch, and the declared keys it covers (present, even null, or sent by type)."""
    record = Record()
    if prefetch is None:
        return record, set()
    if not isinstance(prefetch, dict):
        raise bad_prefetch("prefetch must be an object of FHIR resources")
    for name, value in prefetch.items():
        _add(record, _resources_of(value, str(name), strict=name in TEMPLATES), patient_id)
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
    record, covered = read_prefetch(body.get("prefetch"), patient_id)
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
        _add(record, _resources_of(resource, key, strict=False), patient_id)
        record.origin[key] = "fetched from the FHIR server"
    return record


def _for_key(exc: FhirFetchError, key: str) -> FhirFetchError:
    """The same error, about one key (one error per missing template in the 412)."""
    return type(exc)(exc.reason, key)

"""A result as FHIR R4 ``GuidanceResponse``, for EHRs that store decision support as FHIR.

An EHR that keeps what a decision-support service said (to show it later, to audit it, or to act on
its proposals with its own order entry) stores a ``GuidanceResponse``: the service's answer to one
request, naming the module (here the ruleset, with its version) that gave it. This builder makes one
from a result:

- ``status``: ``success``; ``moduleUri``: the ruleset's URL under the service (``v1/ruleset``) with
  ``#name-version-sha256`` so an auditor can reproduce the answer;
- ``occurrenceDateTime`` is left to the caller (the result itself holds no time);
- ``reasonCode``: the urgency and the headline; the critical flags too;
- ``outputParameters``: a contained ``Parameters`` with the urgency, each action (id, timing, label,
  the rules that asked for it), each flag, each finding still to ask and what it could raise to, and
  each action held back with its reason: the whole explanation, machine-readable;
- ``result``: a contained ``RequestGroup`` (R4) of the result's orderable actions, each a draft
  ``ServiceRequest`` or ``MedicationRequest`` (the same drafts as the CDS card's suggestions), with
  its timing as priority. Nothing the result does not hold is proposed.
"""

from __future__ import annotations

from typing import Any, Optional

import triage

from .cds.cards import PRIORITY, _draft, orderable

SYSTEM = "urn:mscc-triage"


def _coding(kind: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": f"{SYSTEM}:{kind}", "code": code, "display": display}], "text": display}


def guidance_response(result: triage.Result, ruleset: triage.Ruleset, root: str, patient_id: Optional[str] = None,
                      request_id: Optional[str] = None) -> dict[str, Any]:
    """The FHIR R4 GuidanceResponse (a dict, JSON-ready) of a result from ``ruleset`` (which names the scans'
    orders); ``root`` is the service's base URL."""
    if result.ruleset.sha256 != ruleset.sha256:
        raise ValueError("the result was not given by this ruleset")
    parameters: list[dict[str, Any]] = [
        {"name": "urgency", "valueCode": result.urgency},
        {"name": "headline", "valueString": result.headline},
    ]
    for action in result.actions:
        parameters.append({"name": "action", "part": [
            {"name": "id", "valueCode": action.id}, {"name": "timing", "valueCode": action.timing},
            {"name": "label", "valueString": action.label},
            *({"name": "because", "valueString": rule} for rule in action.because)]})
    for flag in result.flags:
        parameters.append({"name": "flag", "part": [
            {"name": "id", "valueCode": flag.id}, {"name": "severity", "valueCode": flag.severity},
            {"name": "label", "valueString": flag.label}]})
    for unknown in result.unknowns:
        parameters.append({"name": "still-to-ask", "part": [
            {"name": "field", "valueString": unknown.field},
            {"name": "could-raise-to", "valueCode": unknown.could_raise_to},
            *({"name": "would-add-flag", "valueCode": f} for f in unknown.would_add_flags),
            *({"name": "would-add-action", "valueCode": a} for a in unknown.would_add_actions)]})
    for held in result.withheld:
        parameters.append({"name": "withheld", "part": [
            {"name": "id", "valueCode": held.id}, {"name": "label", "valueString": held.label},
            *({"name": "reason", "valueString": f"{h.rule}: {h.reason}"} for h in held.held_by)]})
    for rule in result.fired_rules:
        parameters.append({"name": "fired-rule", "valueString": f"{rule.id} v{rule.version}"})

    # Draft orders need a subject (FHIR): without a patient (the JSON API) the group names them only.
    orders = []
    for action in result.actions:
        if not orderable(action.id, ruleset):
            continue
        resource = dict(_draft(action, patient_id, ruleset)["resource"], id=f"order-{len(orders) + 1}")
        orders.append((action, resource if patient_id else None))
    request_group: dict[str, Any] = {
        "resourceType": "RequestGroup", "id": "orders", "status": "draft", "intent": "proposal",
        "priority": "stat" if result.urgency == "emergency" else "urgent" if result.urgency == "urgent" else "routine",
        "action": [{"title": action.label, "priority": PRIORITY[action.timing],
                    **({"resource": {"reference": f"#{resource['id']}"}} if resource else {})}
                   for action, resource in orders],
    }
    if patient_id:
        request_group["subject"] = {"reference": f"Patient/{patient_id}"}

    reasons = [_coding("urgency", result.urgency, result.headline)]
    reasons += [_coding("flag", f.id, f.label) for f in result.flags if f.severity == "critical"]
    response: dict[str, Any] = {
        "resourceType": "GuidanceResponse",
        "moduleUri": f"{root}v1/ruleset#{ruleset.name}-{ruleset.version}-{ruleset.sha256}",
        "status": "success",
        "reasonCode": reasons,
        "contained": [{"resourceType": "Parameters", "id": "explanation", "parameter": parameters},
                      request_group, *(resource for _, resource in orders if resource)],
        "outputParameters": {"reference": "#explanation"},
        "note": [{"text": result.disclaimer}],
    }
    if orders:
        response["result"] = {"reference": "#orders"}
    if patient_id:
        response["subject"] = {"reference": f"Patient/{patient_id}"}
    if request_id:
        response["requestIdentifier"] = {"system": f"{SYSTEM}:request", "value": request_id}
    return response

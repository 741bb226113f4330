"""HL7 CDS Hooks 2.0: discovery, the ``mscc-triage`` service on ``patient-view``, feedback, security.

FHIR R4 prefetch resources are mapped to a case through the declarative code map
``api/fhir_codemap.yaml``. Anything not mapped stays unknown (null), never absent: the card lists
what is still to be assessed. When trusted issuers are configured (``CDS_TRUSTED_ISSUERS``:
``{issuer: JWKS dict}``), every call must carry a JWT signed with an asymmetric algorithm, with
``aud`` the called URL under ``PUBLIC_BASE_URL`` (never the request's Host header), ``exp``, ``iat``,
``jti`` (never seen before) and a trusted ``iss``. Seen ``jti`` and feedback are kept in a small SQLite
file shared by the worker processes (``CDS_STORE_PATH``); when it cannot be written (read-only, full,
missing) the calls that need it answer 503 with the reason, and ``/healthz`` reports it.

Malformed FHIR (an ``entry`` or a ``coding`` that is not an array, a resource that is not an object)
is a 400 naming what is wrong; a ``birthDate`` that is not a FHIR date maps no age.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sqlite3
import time
import uuid
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Optional

import jwt
import yaml
from flask import Blueprint, Flask, Response, current_app, request

import triage

from .problems import ApiProblem, unavailable

bp = Blueprint("cds", __name__)
SERVICE_ID = "mscc-triage"
PREFETCH = {
    "patient": "Patient/{{context.patientId}}",
    "conditions": "Condition?patient={{context.patientId}}",
    "observations": "Observation?patient={{context.patientId}}",
}
ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
INDICATOR = {"emergency": "critical", "urgent": "warning", "routine": "info"}
TIMING_WORDS = {"immediately": "Now", "within_4h": "Within 4 hours", "within_24h": "Within 24 hours",
                "within_1_week": "Within 1 week", "routine": "Routine"}
CODEMAP_PATH = Path(__file__).with_name("fhir_codemap.yaml")
FHIR_DATE = re.compile(r"^[0-9]{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12][0-9]|3[01]))?)?$")
log = logging.getLogger("mscc_triage.api")


def _bad_prefetch(detail: str) -> ApiProblem:
    return ApiProblem(400, "Bad prefetch", detail, "urn:mscc-triage:problem:bad-prefetch")


def _coding_list(concept: Any) -> list[Any]:
    """A CodeableConcept's codings; 400 when ``coding`` is there but not an array."""
    if not isinstance(concept, dict):
        return []
    coding = concept.get("coding")
    if coding is None:
        return []
    if not isinstance(coding, list):
        raise _bad_prefetch("A CodeableConcept's 'coding' must be an array.")
    return coding


# ------------------------------------------------------------------------------------ code map

class CodeMap:
    """The code map, indexed: (system family, code) -> what it means."""

    def __init__(self, data: dict[str, Any]):
        self.systems = {url: family for family, urls in data["systems"].items() for url in urls}
        self.cancer = [(e["system"], str(e["code"]), e["primary"]) for e in data["conditions"]["cancer"]]
        self.condition_findings = [(e["system"], str(e["code"]), e["field"]) for e in data["conditions"]["findings"]]
        self.observations = {(e["system"], str(e["code"])): e["field"] for e in data["observations"]}
        self.present = {(c["system"], str(c["code"])) for c in data["value_codes"]["present"]}
        self.absent = {(c["system"], str(c["code"])) for c in data["value_codes"]["absent"]}
        for _, _, field in self.condition_findings:
            _check_field(field)
        for field in self.observations.values():
            _check_field(field)

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
        return code.startswith(entry_code) if family == "icd10" else code == entry_code


def _check_field(field: str) -> None:
    from triage._case import FIELDS

    if field not in FIELDS or FIELDS[field].kind != "tristate":
        raise ValueError(f"fhir_codemap.yaml: {field} is not a tri-state field of the case")


@lru_cache(maxsize=1)
def default_codemap() -> CodeMap:
    return CodeMap(yaml.safe_load(CODEMAP_PATH.read_text(encoding="utf-8")))


# ------------------------------------------------------------------------------------ mapping

def _resources(bundle: Any, name: str, resource_type: str) -> list[dict[str, Any]]:
    if bundle is None:
        return []
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise _bad_prefetch(f"prefetch.{name} must be a FHIR Bundle")
    entries = bundle.get("entry")
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise _bad_prefetch(f"prefetch.{name}.entry must be an array")
    found = []
    for entry in entries:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and resource.get("resourceType") == resource_type:
            found.append(resource)
    return found


def _status(concept: Any) -> Optional[str]:
    for coding in _coding_list(concept):
        if isinstance(coding, dict) and isinstance(coding.get("code"), str) and coding["code"]:
            return coding["code"]
    return None


def _set(case: dict[str, Any], path: str, value: Any) -> None:
    node = case
    parts = path.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


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


HISTORY_RANK = {"current": 3, "suspected": 2, "past": 1}


def case_from_prefetch(prefetch: dict[str, Any], codemap: CodeMap, today: dt.date) -> tuple[dict[str, Any], list[str]]:
    """A case-format v1 case from FHIR R4 prefetch, and a list of what was mapped (for the card)."""
    case: dict[str, Any] = {}
    mapped: list[str] = []
    patient = prefetch.get("patient")
    if patient is not None:
        if not isinstance(patient, dict) or patient.get("resourceType") != "Patient":
            raise _bad_prefetch("prefetch.patient must be a FHIR Patient")
        age = _age(patient.get("birthDate"), today)
        if age is not None:
            _set(case, "patient.age_years", age)
            mapped.append(f"age {age} years (Patient.birthDate)")

    history: Optional[str] = None
    primary: Optional[str] = None
    for condition in _resources(prefetch.get("conditions"), "conditions", "Condition"):
        verification = _status(condition.get("verificationStatus"))
        if verification in ("refuted", "entered-in-error"):
            continue
        clinical = _status(condition.get("clinicalStatus"))
        codings = codemap.codings(condition.get("code"))
        for family, code in codings:
            for entry_family, entry_code, entry_primary in codemap.cancer:
                if codemap.matches(family, code, entry_family, entry_code):
                    if verification in ("provisional", "differential", "unconfirmed"):
                        level = "suspected"
                    elif clinical in ("inactive", "remission", "resolved"):
                        level = "past"
                    else:
                        level = "current"
                    if history is None or HISTORY_RANK[level] > HISTORY_RANK[history] or (
                            level == history and primary in (None, "unknown")):
                        history, primary = level, entry_primary if entry_primary != "unknown" else primary
                    mapped.append(f"cancer {code} -> {level}{', ' + entry_primary if entry_primary != 'unknown' else ''}")
            if clinical in (None, "active", "recurrence", "relapse"):
                for entry_family, entry_code, field in codemap.condition_findings:
                    if codemap.matches(family, code, entry_family, entry_code):
                        _set(case, field, True)
                        mapped.append(f"{field} = true (Condition {code})")
    if history:
        _set(case, "patient.cancer.history", history)
        if primary:
            _set(case, "patient.cancer.primary", primary)

    observed: dict[str, bool] = {}
    for obs in _resources(prefetch.get("observations"), "observations", "Observation"):
        if obs.get("status") in ("cancelled", "entered-in-error"):
            continue
        field = next((codemap.observations[c] for c in codemap.codings(obs.get("code")) if c in codemap.observations), None)
        if field is None:
            continue
        value: Optional[bool] = None
        if isinstance(obs.get("valueBoolean"), bool):
            value = obs["valueBoolean"]
        else:
            codes = set(codemap.codings(obs.get("valueCodeableConcept")))
            if codes & codemap.present:
                value = True
            elif codes & codemap.absent:
                value = False
        if value is None:
            continue
        observed[field] = observed.get(field, False) or value  # present wins
    for field, value in observed.items():
        _set(case, field, value)
        mapped.append(f"{field} = {'present' if value else 'absent'} (Observation)")
    return case, mapped


# ------------------------------------------------------------------------------------ cards

def card_for(result: triage.Result, ruleset: triage.Ruleset, mapped: list[str]) -> dict[str, Any]:
    lines = [f"**{result.urgency.upper()}**: {result.headline}", ""]
    if result.actions:
        lines.append("**Actions**")
        lines += [f"- {TIMING_WORDS[a.timing]}: {a.label} ({a.source})" for a in result.actions]
        lines.append("")
    if result.flags:
        lines.append("**Flags**")
        lines += [f"- [{f.severity}] {f.label}" for f in result.flags]
        lines.append("")
    if result.unknowns:
        lines.append("**Not yet assessed** (each would raise the urgency or add a critical flag)")
        for u in result.unknowns:
            added = [ruleset.data.flags[f].label for f in u.would_add_flags]
            lines.append(f"- {u.field}: if present, {u.could_raise_to}" + (f"; adds: {'; '.join(added)}" if added else ""))
        lines.append("")
    lines.append("**From the record**: " + ("; ".join(mapped) if mapped else "nothing mapped"))
    lines.append("")
    lines.append(f"Rules fired: {', '.join(r.id for r in result.fired_rules)}. {result.disclaimer}")
    root = public_root()
    return {
        "uuid": str(uuid.uuid4()),
        "summary": result.headline[:140],
        "indicator": INDICATOR[result.urgency],
        "detail": "\n".join(lines),
        "source": {"label": f"mscc-triage ruleset {ruleset.name} {ruleset.version}", "url": f"{root}v1/ruleset"},
        "links": [{"label": "Rules and sources", "url": f"{root}v1/ruleset", "type": "absolute"}],
    }


# ------------------------------------------------------------------------------------ store and security

def public_root() -> str:
    """The service's public base URL (``PUBLIC_BASE_URL``), or, when none is set, the request's root."""
    return current_app.config.get("PUBLIC_BASE_URL") or request.url_root


STORE_STATES = {"SQLITE_READONLY": "read-only", "SQLITE_FULL": "full", "SQLITE_CANTOPEN": "missing or cannot be opened",
                "SQLITE_BUSY": "busy", "SQLITE_LOCKED": "busy", "SQLITE_IOERR": "failing (input/output error)",
                "SQLITE_CORRUPT": "corrupt", "SQLITE_NOTADB": "not a SQLite database",
                "SQLITE_PERM": "not writable (permission denied)"}


class StoreUnavailable(ApiProblem):
    """The CDS store (seen JWT ids, feedback) cannot be used: 503 with the reason."""

    def __init__(self, reason: str):
        super().__init__(503, "Service Unavailable")
        self.reason = reason
        self.response = unavailable(f"The CDS Hooks store is {reason}; nothing was recorded. "
                                    "The operator has been told (see /healthz).", "urn:mscc-triage:problem:cds-store")


def _store_reason(exc: sqlite3.Error) -> str:
    name = getattr(exc, "sqlite_errorname", "") or ""
    for prefix, reason in STORE_STATES.items():
        if name == prefix or name.startswith(prefix + "_"):
            return reason
    return "failing"


def _connect(path: str) -> sqlite3.Connection:
    """Open the store (``CDS_STORE_PATH``: a file, or a SQLite ``file:`` URI)."""
    return sqlite3.connect(path, timeout=5, isolation_level=None, uri=path.startswith("file:"))


@contextmanager
def store(app: Flask) -> Iterator[sqlite3.Connection]:
    """A connection to the CDS store; any SQLite failure becomes :class:`StoreUnavailable` (503)."""
    path = app.config["CDS_STORE_PATH"]
    conn: Optional[sqlite3.Connection] = None
    try:
        conn = _connect(path)
        conn.execute("CREATE TABLE IF NOT EXISTS jti (iss TEXT, jti TEXT, exp REAL, PRIMARY KEY (iss, jti))")
        conn.execute("CREATE TABLE IF NOT EXISTS feedback (received REAL, card TEXT, outcome TEXT, "
                     "accepted INTEGER, override TEXT)")
        yield conn
    except sqlite3.IntegrityError:
        raise
    except sqlite3.Error as exc:
        reason = _store_reason(exc)
        log.error("CDS store %s is %s: %s", path, reason, exc)
        raise StoreUnavailable(reason) from None
    finally:
        if conn is not None:
            conn.close()


def store_health(app: Flask) -> Optional[str]:
    """None when the store can be written, else why not (a real write, in a transaction rolled back)."""
    try:
        with store(app) as conn:   # closing the connection rolls the write back
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("CREATE TABLE IF NOT EXISTS health (id INTEGER PRIMARY KEY, at REAL)")
            conn.execute("INSERT OR REPLACE INTO health VALUES (1, ?)", (time.time(),))
    except StoreUnavailable as exc:
        return exc.reason
    return None


def _unauthorized(detail: str) -> ApiProblem:
    return ApiProblem(401, "Unauthorized", detail, "urn:mscc-triage:problem:cds-jwt")


def verify_jwt() -> None:
    """Enforce CDS Hooks security: a JWT of a trusted issuer on every call.

    Without trusted issuers every call is refused, unless the server was started in the explicit
    development mode (``CDS_ALLOW_UNAUTHENTICATED``), which the start announces on stderr.
    """
    issuers: dict[str, Any] = current_app.config.get("CDS_TRUSTED_ISSUERS") or {}
    if not issuers:
        if current_app.config.get("CDS_ALLOW_UNAUTHENTICATED"):
            return
        raise _unauthorized("No trusted CDS Hooks issuer is configured on this server: set MSCC_CDS_ISSUERS_FILE "
                            "(and MSCC_PUBLIC_BASE_URL), or start it with 'triage serve "
                            "--allow-unauthenticated-cds' for development.")
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("Bearer "):
        raise _unauthorized("A CDS Hooks call must carry 'Authorization: Bearer <JWT>'.")
    token = auth[len("Bearer "):].strip()
    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise _unauthorized("The bearer token is not a JWT.") from None
    alg = header.get("alg")
    if alg not in ASYMMETRIC:
        raise _unauthorized(f"JWT algorithm {alg!r} is not accepted: asymmetric algorithms only.")
    iss = unverified.get("iss")
    if not isinstance(iss, str) or iss not in issuers:
        raise _unauthorized("The JWT issuer is not trusted.")
    keys = [k for k in (issuers[iss] or {}).get("keys", [])
            if isinstance(header.get("kid"), (str, type(None))) and header.get("kid") in (None, k.get("kid"))]
    if not keys:
        raise _unauthorized("No key of the issuer matches the JWT's kid.")
    url = current_app.config["PUBLIC_BASE_URL"] + request.path.lstrip("/")   # never the Host header
    audience = [url]
    if request.path.endswith("/feedback"):
        audience.append(url.rsplit("/feedback", 1)[0])
    try:
        key = jwt.PyJWK(keys[0], algorithm=alg).key
        claims = jwt.decode(token, key, algorithms=[alg], audience=audience, issuer=iss,
                            options={"require": ["iss", "aud", "exp", "iat", "jti"]})
    except jwt.PyJWTError as exc:
        raise _unauthorized(f"The JWT is not valid: {exc}.") from None
    try:
        with store(current_app) as conn:
            conn.execute("DELETE FROM jti WHERE exp < ?", (time.time() - 60,))
            conn.execute("INSERT INTO jti VALUES (?, ?, ?)", (iss, str(claims["jti"]), float(claims["exp"])))
    except sqlite3.IntegrityError:
        raise _unauthorized("This JWT (jti) was already used.") from None


# ------------------------------------------------------------------------------------ routes

@bp.get("/cds-services")
def discovery() -> Response:
    body = {"services": [{
        "hook": "patient-view",
        "id": SERVICE_ID,
        "title": "MSCC triage",
        "description": "Triage of suspected metastatic spinal cord compression from the record's conditions "
                       "and observations; decision support for clinicians.",
        "prefetch": PREFETCH,
    }]}
    return Response(json.dumps(body), mimetype="application/json")


@bp.post(f"/cds-services/{SERVICE_ID}")
def service() -> Response:
    from . import ruleset_of
    from .http import read_json_body

    verify_jwt()
    body = read_json_body()
    if not isinstance(body, dict) or body.get("hook") != "patient-view" or not isinstance(body.get("hookInstance"), str):
        raise ApiProblem(400, "Bad request", "A CDS Hooks request for patient-view with a hookInstance is expected.")
    prefetch = body.get("prefetch")
    missing = [k for k in PREFETCH if not isinstance(prefetch, dict) or k not in prefetch]
    if missing:
        raise ApiProblem(412, "Precondition Failed",
                         f"Required prefetch missing: {', '.join(missing)} (this service does not query the FHIR server).")
    case, mapped = case_from_prefetch(prefetch, current_app.extensions.get("mscc_codemap") or default_codemap(),
                                      dt.date.today())
    rs = ruleset_of(current_app)
    result = rs.evaluate(case)
    return Response(json.dumps({"cards": [card_for(result, rs, mapped)]}, ensure_ascii=False),
                    mimetype="application/json")


@bp.post(f"/cds-services/{SERVICE_ID}/feedback")
def feedback() -> Response:
    from .http import read_json_body

    verify_jwt()
    body = read_json_body()
    items = body.get("feedback") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        raise ApiProblem(400, "Bad request", "Feedback is {'feedback': [{'card': ..., 'outcome': ...}]}.")
    rows = [_feedback_row(i, item) for i, item in enumerate(items)]   # every item checked before any write
    with store(current_app) as conn:   # one transaction: all the items or none (closing rolls back)
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO feedback VALUES (?, ?, ?, ?, ?)", rows)
        conn.execute("COMMIT")
    return Response("{}", mimetype="application/json")


def _feedback_row(index: int, item: Any) -> tuple[float, str, str, int, Optional[str]]:
    """One CDS Hooks 2.0 feedback item, checked, as a row (card id, outcome, counts; no patient data)."""
    def bad(detail: str) -> ApiProblem:
        return ApiProblem(400, "Bad request", f"feedback[{index}]: {detail}", "urn:mscc-triage:problem:bad-feedback")

    if not isinstance(item, dict):
        raise bad("each feedback item is an object with a card and an outcome (accepted or overridden).")
    card, outcome = item.get("card"), item.get("outcome")
    if not isinstance(card, str) or not card:
        raise bad("'card' must be the card's id (a string).")
    if outcome not in ("accepted", "overridden"):
        raise bad("'outcome' must be 'accepted' or 'overridden'.")
    accepted = item.get("acceptedSuggestions", [])
    if accepted is None:
        accepted = []
    if not isinstance(accepted, list) or not all(isinstance(a, dict) for a in accepted):
        raise bad("'acceptedSuggestions' must be an array of objects ({'id': ...}).")
    override = item.get("overrideReason")
    code: Optional[str] = None
    if override is not None:
        if not isinstance(override, dict):
            raise bad("'overrideReason' must be an object ({'reason': Coding, 'userComment': ...}).")
        reason = override.get("reason")
        if reason is not None:
            if not isinstance(reason, dict) or not isinstance(reason.get("code", ""), str):
                raise bad("'overrideReason.reason' must be a Coding (an object with a string 'code').")
            code = reason.get("code") or None
        if not isinstance(override.get("userComment", ""), str):
            raise bad("'overrideReason.userComment' must be a string.")
    if not isinstance(item.get("outcomeTimestamp", ""), str):
        raise bad("'outcomeTimestamp' must be a string (an instant).")
    return (time.time(), card[:64], outcome, len(accepted), code[:64] if code else None)


def recorded_feedback(app: Flask) -> list[dict[str, Any]]:
    """What the feedback endpoint recorded (no patient data is ever stored)."""
    with store(app) as conn:
        rows = conn.execute("SELECT card, outcome, accepted, override FROM feedback ORDER BY rowid").fetchall()
    return [{"card": r[0], "outcome": r[1], "accepted_suggestions": r[2], "override_reason": r[3]} for r in rows]


def init_app(app: Flask) -> None:
    default_codemap()  # a broken code map stops the start, like a broken rule file
    app.register_blueprint(bp)

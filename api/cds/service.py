"""HL7 CDS Hooks 2.0: discovery, the ``mscc-triage`` service on ``patient-view``, feedback, security.

A call travels through small rooms, each testable alone: check the caller (:func:`verify_jwt`, here)
-> gather the record (:mod:`..fhir.record`: prefetch read liberally, then what is missing fetched by
:mod:`..fhir.fetch` from an allow-listed FHIR server) -> map FHIR to a case (:mod:`..fhir.map`, the
declarative ``api/fhir/codemap.yaml``; units converted only in :mod:`..fhir.units`) ->
``triage.evaluate`` -> the card, its suggestions and override reasons (:mod:`.cards`).

Never a reassuring card for the wrong record: resources about another patient than
``context.patientId`` answer 412 (:func:`..fhir.record.other_patient_problem`), and a record read for
this patient that held no finding (:func:`..fhir.map.findings`) gets the warning
:func:`.cards.thin_card` ("Not enough in the record to triage: open the form"), never an info card.

When trusted issuers are configured (``CDS_TRUSTED_ISSUERS``: ``{issuer: {"keys": [JWK, ...]}}`` or
``{issuer: {"jku": URL}}``, a JWK Set fetched and cached by :mod:`.jwks`), every call
must carry a JWT signed with an asymmetric algorithm, with ``aud`` the called URL under
``PUBLIC_BASE_URL`` (never the request's Host header), ``exp``, ``iat``, ``jti`` (never seen before)
and a trusted ``iss``. Seen ``jti`` and feedback are kept in a small SQLite file shared by the worker
processes (``CDS_STORE_PATH``); when it cannot be written (read-only, full, missing) the calls that
need it answer 503 with the reason, and ``/healthz`` reports it.

Settings of the fetch (read when the app starts; a bad value stops the start):
``MSCC_TRIAGE_FHIR_SERVERS`` (or the app config ``FHIR_SERVERS``): the FHIR servers that may be
queried, comma-separated base URLs; unset, nothing is fetched. ``FHIR_FETCH_TIMEOUT_S``,
``FHIR_FETCH_BUDGET_S``, ``FHIR_FETCH_MAX_BYTES`` (app config) tune one request's timeout, the call's
total budget and the response size cap.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import secrets
import logging
import time
from typing import Any, Optional

import jwt
from flask import Blueprint, Flask, Response, current_app, request

from triage import load_form_texts, validate_case

from .. import record_hook
from ..body import read_json_body
from ..fhir import fetch as fhir_fetch
from ..fhir.map import (CODEMAP_PATH, CodeMap, CodeMapError, case_from_prefetch, case_from_record, default_codemap,
                        findings)
from ..fhir.record import discovery_prefetch, gather
from ..problems import ApiProblem
from ..web import SYMPTOM_GROUPS
from . import cards, jwks
from .store import Duplicate, StoreUnavailable, store, store_health

__all__ = ["CODEMAP_PATH", "CodeMap", "case_from_prefetch", "default_codemap", "feedback_summary",
           "recorded_feedback", "store", "store_health", "verify_jwt", "init_app"]

bp = Blueprint("cds", __name__)
SERVICE_ID = "mscc-triage"
PREFETCH = discovery_prefetch()
FETCH = "mscc_fhir_fetch"   # app.extensions key of the FetchSettings
ISSUERS = "mscc_cds_issuers"   # app.extensions key of the trusted issuers ({iss: jwks.Issuer})
JWKS = "mscc_jwks"           # app.extensions key of the JWK Set cache (one per process)
CARD_WORDS = "mscc_card_words"   # app.extensions key of the cards' words (cards.CardWords)
ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
log = logging.getLogger("mscc_triage.api")


# ------------------------------------------------------------------------------------ store and security

def public_root() -> str:
    """The service's public base URL (``PUBLIC_BASE_URL``), or, when none is set, the request's root."""
    return current_app.config.get("PUBLIC_BASE_URL") or request.url_root


def _unauthorized(detail: str) -> ApiProblem:
    # Refused calls are logged (there is no access log by default): a security officer sees a run of
    # bad tokens, or a server that refuses its EHR. It names the view (no request path is logged), and
    # its detail no patient and no token; the detail is written as a Python string (%r), so nothing the
    # caller sent can start a log line of its own.
    log.warning("CDS Hooks: refused a call to %s (401): %r", request.endpoint, detail)
    problem = ApiProblem(401, "Unauthorized", detail, "urn:mscc-triage:problem:cds-jwt")
    # RFC 9110 11.6.1: a 401 names the scheme it asks for; RFC 6750 3: invalid_token when one was sent
    sent = request.headers.get("Authorization", "")[:len("Bearer ")].lower() == "bearer "
    problem.response.headers["WWW-Authenticate"] = (
        'Bearer realm="mscc-triage", error="invalid_token"' if sent else 'Bearer realm="mscc-triage"')
    return problem


def verify_jwt() -> Optional[dict[str, Any]]:
    """Enforce CDS Hooks security: a JWT of a trusted issuer on every call; its verified claims.

    Without trusted issuers every call is refused, unless the server was started in the explicit
    development mode (``CDS_ALLOW_UNAUTHENTICATED``), which the start announces on stderr.
    """
    issuers: dict[str, jwks.Issuer] = current_app.extensions.get(ISSUERS) or {}
    if not issuers:
        if current_app.config.get("CDS_ALLOW_UNAUTHENTICATED"):
            return None
        raise _unauthorized("No trusted CDS Hooks issuer is configured on this server: set MSCC_CDS_ISSUERS_FILE "
                            "(and MSCC_PUBLIC_BASE_URL), or start it with 'triage serve "
                            "--allow-unauthenticated-cds' for development.")
    auth = request.headers.get("Authorization", "")
    if auth[:len("Bearer ")].lower() != "bearer ":   # the scheme is case-insensitive (RFC 9110 11.1)
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
    kid = header.get("kid")
    if not isinstance(kid, (str, type(None))):
        raise _unauthorized("The JWT's kid must be a string.")
    keys = _issuer_keys(issuers[iss], header.get("jku"), kid)
    for name in ("exp", "iat"):   # NumericDate (RFC 7519): a number; PyJWT would also read "exp": "9999999999"
        value = unverified.get(name)
        if name in unverified and (isinstance(value, bool) or not isinstance(value, (int, float))
                                   or (isinstance(value, float) and not math.isfinite(value))
                                   or abs(value) > 2 ** 53):   # an int of 400 digits: no date, and no 500
            raise _unauthorized(f"The JWT's {name!r} must be a number (seconds since the epoch).")
    url = current_app.config["PUBLIC_BASE_URL"] + request.path.lstrip("/")   # never the Host header
    audience = [url]
    if request.path.endswith("/feedback"):
        audience.append(url.rsplit("/feedback", 1)[0])
    claims = _verified_claims(token, keys, alg, audience, iss)
    lifetime = float(current_app.config.get("CDS_JWT_MAX_LIFETIME_S") or MAX_LIFETIME_S)
    if claims["exp"] - claims["iat"] > lifetime:
        raise _unauthorized(f"The JWT lives too long: exp is more than {lifetime:g} seconds after iat "
                            "(CDS Hooks: at most 5 minutes).")
    if claims["iat"] > time.time() + JWT_LEEWAY_S:
        raise _unauthorized("The JWT was issued in the future (iat).")
    if not isinstance(claims["jti"], str) or not claims["jti"] or not _utf8(claims["jti"]) \
            or not all(_utf8(claims[name]) for name in ("sub",) if isinstance(claims.get(name), str)):
        raise _unauthorized("The JWT's jti must be a non-empty string, and its claims valid Unicode text.")
    try:
        with store(current_app) as conn:
            conn.execute("DELETE FROM jti WHERE exp < ?", (time.time() - 60,))
            conn.execute("INSERT INTO jti VALUES (?, ?, ?)", (iss, str(claims["jti"]), float(claims["exp"])))
    except Duplicate:
        raise _unauthorized("This JWT (jti) was already used.") from None
    return claims


def _issuer_keys(issuer: jwks.Issuer, jku: Any, kid: Optional[str]) -> list[dict[str, Any]]:
    """The issuer's keys that may have signed the token: with a kid, that key; without one, every key.

    A ``jku`` header is honoured only when it is the issuer's JWK Set URL, exactly (else 401, nothing
    fetched); then only that set is used. Without one, the inline keys first, then the issuer's set."""
    if jku is not None and jku != issuer.jku:
        raise _unauthorized("The JWT's jku is not the JWK Set URL this service trusts for its issuer "
                            "(it was not fetched).")
    keys = [] if jku is not None else [dict(k) for k in issuer.keys
                                       if isinstance(k, dict) and kid in (None, k.get("kid"))]
    if not keys and issuer.jku:
        try:
            keys = current_app.extensions[JWKS].keys(issuer.jku, kid)
        except jwks.JwksError as exc:
            raise _unauthorized(f"The JWK Set of the JWT's issuer could not be fetched: {exc.reason}.") from None
    if not keys:
        raise _unauthorized("No key of the issuer matches the JWT's kid.")
    return keys


MAX_LIFETIME_S = 300.0   # CDS_JWT_MAX_LIFETIME_S: exp at most this long after iat (CDS Hooks recommends 5 minutes)
JWT_LEEWAY_S = 60.0


def _utf8(text: str) -> bool:
    """Whether the text is valid Unicode (JSON lets a lone surrogate through: no store can keep it)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _verified_claims(token: str, keys: list[dict[str, Any]], alg: str, audience: list[str],
                     iss: str) -> dict[str, Any]:
    """The claims, verified with the first key of ``keys`` whose signature matches; 401 otherwise."""
    failure: Optional[Exception] = None
    for jwk in keys:
        try:
            key = jwt.PyJWK(jwk, algorithm=alg).key
        except (jwt.PyJWTError, ValueError, TypeError, KeyError) as exc:   # a key of another type: the next one
            failure = failure or exc
            continue
        try:
            claims: dict[str, Any] = jwt.decode(token, key, algorithms=[alg], audience=audience, issuer=iss,
                                                options={"require": ["iss", "aud", "exp", "iat", "jti"]})
            return claims
        except jwt.InvalidSignatureError as exc:
            failure = exc
            continue
        except jwt.InvalidAudienceError:
            raise _unauthorized(f"The JWT's aud is not this service: this service expects aud "
                                f"{audience[0]!r} (the URL the EHR calls, under the public URL).") from None
        except jwt.PyJWTError as exc:
            raise _unauthorized(f"The JWT is not valid: {exc}.") from None
    raise _unauthorized(f"The JWT is not valid: {failure or 'no key of the issuer verifies its signature'}.")


# ------------------------------------------------------------------------------------ routes

@bp.get("/cds-services")
def discovery() -> Response:
    body = {"services": [{
        "hook": "patient-view",
        "id": SERVICE_ID,
        "title": "MSCC triage",
        "description": "Triage of suspected metastatic spinal cord compression from the record's conditions, "
                       "observations (findings, labs), medications and recent procedures; decision support for clinicians.",
        "prefetch": PREFETCH,
    }]}
    return Response(json.dumps(body), mimetype="application/json")


@bp.post(f"/cds-services/{SERVICE_ID}")
def service() -> Response:
    from .. import ruleset_of

    claims = verify_jwt() or {}
    body = read_json_body()
    if not isinstance(body, dict) or body.get("hook") != "patient-view" or not isinstance(body.get("hookInstance"), str) \
            or not _utf8(body["hookInstance"]) or len(body["hookInstance"]) > 200:
        raise ApiProblem(400, "Bad request", "A CDS Hooks request for patient-view with a hookInstance (a string of "
                                             "at most 200 characters) is expected.")
    context = body.get("context")
    if not isinstance(context, dict) or not isinstance(context.get("patientId"), str) or not context["patientId"]:
        # patient-view's context.patientId is required (CDS Hooks): without it no record is this patient's
        raise ApiProblem(400, "Bad request", "context.patientId is required: the id (a non-empty string) of the "
                                             "patient in view; nothing was read or triaged without it.")
    record = gather(body, current_app.extensions[FETCH])
    codemap = current_app.extensions.get("mscc_codemap") or default_codemap()
    case, mapped = case_from_record(record, codemap, dt.datetime.now(dt.timezone.utc))
    rs = ruleset_of(current_app)
    valid = validate_case(case)   # once: the evaluation and the record share it
    result = rs.evaluate(valid)
    patient_id = context["patientId"]
    words = _card_words(rs)
    found = findings(case)
    # Nothing about the five symptom groups, and nothing above routine (a cancer alone, bone metastases
    # alone): not "No MSCC pathway today", which the form never shows before a symptom is answered either.
    no_symptom = result.urgency == "routine" and not any(path.startswith(SYMPTOM_PATHS) for path in found)
    if found and not no_symptom:
        card = cards.card_for(result, rs, mapped, public_root(), record, patient_id,
                              form_token=_keep_for_the_form(case), words=words)
    else:   # read for this patient, but nothing to triage on: ask for the form, never "nothing to do"
        card = cards.thin_card(result, rs, words.labels, mapped, public_root(), record, patient_id,
                               form_token=_keep_for_the_form(case), words=words, no_symptom=bool(found))
    _remember_card(card)
    # Recorded before answering (503 when it cannot be): the card's uuid joins its feedback to it.
    record_hook.record("cds", valid, result, hook_instance=body["hookInstance"], cards=[card["uuid"]],
                       iss=_text(claims.get("iss")), sub=_text(claims.get("sub")))
    return Response(json.dumps({"cards": [card]}, ensure_ascii=False), mimetype="application/json")


def _texts(rs: Any) -> Any:
    """The form's words (``rules/form.yaml``, checked when the app started): labels and citations."""
    from ..web import TEXTS

    loaded = current_app.extensions.get(TEXTS)
    if loaded is None:   # an app without the form (never in create_app): load the words once
        loaded = current_app.extensions[TEXTS] = load_form_texts(rs)
    return loaded


def _card_words(rs: Any) -> cards.CardWords:
    """The cards' words in the language of ``CDS_CARD_LANGUAGE`` (``MSCC_CDS_CARD_LANGUAGE``), made once."""
    words = current_app.extensions.get(CARD_WORDS)
    if words is None:
        words = current_app.extensions[CARD_WORDS] = cards.CardWords.of(_texts(rs), current_app.config["CDS_CARD_LANGUAGE"])
    return words


def _text(value: Any) -> Optional[str]:
    return value[:200] if isinstance(value, str) else None


# The five symptom groups (the form's): a record that says nothing of them gives no reassurance.
SYMPTOM_PATHS = tuple(f"presentation.{group}." for group in SYMPTOM_GROUPS)
PREFILL_SECONDS = 1800   # the card's form link opens the form filled in for 30 minutes, then an empty form


def _remember_card(card: dict[str, Any]) -> None:
    """Keep the card's type (its uuid and indicator, no patient data) so that feedback can be summed up per
    card type (:func:`feedback_summary`). When the store cannot keep it the card is still answered: its
    feedback then counts under the indicator ``unknown``."""
    try:
        with store(current_app) as conn:
            conn.execute("INSERT INTO card (card, indicator, issued) VALUES (?, ?, ?) ON CONFLICT (card) "
                         "DO UPDATE SET indicator = excluded.indicator, issued = excluded.issued",
                         (card["uuid"], card["indicator"], time.time()))
    except StoreUnavailable:
        log.warning("CDS store: the card's type was not kept; its feedback will count as 'unknown'")


def _keep_for_the_form(case: dict[str, Any]) -> Optional[str]:
    """Keep what the record says for 30 minutes (``PREFILL_SECONDS``), under a random token, so the card's link opens the form
    with it filled in (the link carries no finding). None when the store cannot keep it: the link
    then opens an empty form, and the card itself is not held back."""
    token = secrets.token_urlsafe(18)
    try:
        with store(current_app) as conn:
            conn.execute("DELETE FROM prefill WHERE expires < ?", (time.time(),))
            conn.execute("INSERT INTO prefill (token, answers, expires) VALUES (?, ?, ?)",
                         (token, json.dumps(case, sort_keys=True), time.time() + PREFILL_SECONDS))
    except StoreUnavailable:
        return None
    return token


def prefilled_answers(app: Flask, token: str) -> Optional[dict[str, Any]]:
    """The answers a card's link refers to, while they are kept; None otherwise (or when unreadable)."""
    if not token or len(token) > 64:
        return None
    try:
        with store(app) as conn:
            row = conn.execute("SELECT answers FROM prefill WHERE token = ? AND expires >= ?",
                               (token, time.time())).fetchone()
    except StoreUnavailable:
        return None
    return json.loads(row[0]) if row else None


@bp.post(f"/cds-services/{SERVICE_ID}/feedback")
def feedback() -> Response:

    verify_jwt()
    body = read_json_body()
    items = body.get("feedback") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        raise ApiProblem(400, "Bad request", "Feedback is {'feedback': [{'card': ..., 'outcome': ...}]}.")
    rows = [_feedback_row(i, item) for i, item in enumerate(items)]   # every item checked before any write
    with store(current_app) as conn:   # one transaction: all the items or none (closing rolls back)
        conn.begin()
        conn.executemany("INSERT INTO feedback (received, card, outcome, accepted, override) VALUES (?, ?, ?, ?, ?)",
                         rows)
        conn.commit()
    return Response("{}", mimetype="application/json")


def _feedback_row(index: int, item: Any) -> tuple[float, str, str, int, Optional[str]]:
    """One CDS Hooks 2.0 feedback item, checked, as a row (card id, outcome, counts; no patient data)."""
    def bad(detail: str) -> ApiProblem:
        return ApiProblem(400, "Bad request", f"feedback[{index}]: {detail}", "urn:mscc-triage:problem:bad-feedback")

    if not isinstance(item, dict):
        raise bad("each feedback item is an object with a card and an outcome (accepted or overridden).")
    card, outcome = item.get("card"), item.get("outcome")
    if not isinstance(card, str) or not card or not _utf8(card):
        raise bad("'card' must be the card's id (a string of valid Unicode text).")
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
            if not isinstance(reason, dict) or not isinstance(reason.get("code", ""), str) \
                    or not _utf8(reason.get("code", "")):
                raise bad("'overrideReason.reason' must be a Coding (an object with a string 'code').")
            code = reason.get("code") or None
            # only the reasons the cards offer: anything else would be counted as a reason nobody was given
            if code is not None and (code not in cards.OVERRIDE_CODES
                                     or reason.get("system", cards.OVERRIDE_SYSTEM) != cards.OVERRIDE_SYSTEM):
                raise bad(f"'overrideReason.reason' must be one of the reasons the card offers (system "
                          f"{cards.OVERRIDE_SYSTEM}: {', '.join(sorted(cards.OVERRIDE_CODES))}).")
        if not isinstance(override.get("userComment", ""), str):
            raise bad("'overrideReason.userComment' must be a string.")
    stamp = item.get("outcomeTimestamp")
    if stamp is not None and not _instant(stamp):
        raise bad("'outcomeTimestamp' must be an ISO 8601 date and time (such as 2026-12-05T10:00:00Z).")
    return (time.time(), card[:64], outcome, len(accepted), code[:64] if code else None)


def _instant(value: Any) -> bool:
    """Whether ``value`` is an ISO 8601 date and time (CDS Hooks' ``outcomeTimestamp``)."""
    if not isinstance(value, str) or len(value) > 40 or "T" not in value.upper():
        return False
    try:
        dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return False
    return True


@bp.get(f"/cds-services/{SERVICE_ID}/feedback/summary")
def feedback_summary_view() -> Response:
    verify_jwt()
    return Response(json.dumps(feedback_summary(current_app)), mimetype="application/json")


def feedback_summary(app: Flask) -> dict[str, Any]:
    """For the service's operators: cards issued per indicator, and feedback counted per card indicator x
    outcome x override reason (``unknown`` indicator: feedback about a card this store did not issue).
    Only counts: no card id, no patient data."""
    with store(app) as conn:
        issued = conn.execute("SELECT indicator, COUNT(*) FROM card GROUP BY indicator ORDER BY indicator").fetchall()
        rows = conn.execute(
            "SELECT COALESCE(c.indicator, 'unknown') AS ind, f.outcome, f.override, COUNT(*), "
            "CAST(SUM(f.accepted) AS INTEGER) "
            "FROM feedback f LEFT JOIN card c ON c.card = f.card "
            "GROUP BY ind, f.outcome, f.override ORDER BY ind, f.outcome, f.override").fetchall()
    return {"cardsIssued": {indicator: count for indicator, count in issued},
            "outcomes": [{"indicator": r[0], "outcome": r[1], "overrideReason": r[2], "count": r[3],
                          "acceptedSuggestions": r[4] or 0} for r in rows]}


def recorded_feedback(app: Flask) -> list[dict[str, Any]]:
    """What the feedback endpoint recorded (no patient data is ever stored)."""
    with store(app) as conn:
        rows = conn.execute(f"SELECT card, outcome, accepted, override FROM feedback ORDER BY {conn.order}").fetchall()
    return [{"card": r[0], "outcome": r[1], "accepted_suggestions": r[2], "override_reason": r[3]} for r in rows]


def fetch_settings(app: Flask) -> fhir_fetch.FetchSettings:
    """The outbound FHIR settings, from the app config or the environment; ApiConfigError when unusable."""
    from .. import ApiConfigError

    config = app.config
    servers = config.get("FHIR_SERVERS")   # MSCC_TRIAGE_FHIR_SERVERS, read with every setting by create_app
    defaults = fhir_fetch.FetchSettings()
    try:
        settings = fhir_fetch.FetchSettings(
            servers=fhir_fetch.parse_servers(servers),
            request_timeout_s=float(config.get("FHIR_FETCH_TIMEOUT_S", defaults.request_timeout_s)),
            budget_s=float(config.get("FHIR_FETCH_BUDGET_S", defaults.budget_s)),
            max_bytes=int(config.get("FHIR_FETCH_MAX_BYTES", defaults.max_bytes)),
        )
    except ValueError as exc:
        raise ApiConfigError(str(exc)) from None
    if not (0 < settings.request_timeout_s <= settings.budget_s <= 2.0) or settings.max_bytes < 1024:
        raise ApiConfigError("FHIR fetch: need 0 < FHIR_FETCH_TIMEOUT_S <= FHIR_FETCH_BUDGET_S <= 2 seconds and "
                             "FHIR_FETCH_MAX_BYTES >= 1024")
    return settings


def init_app(app: Flask) -> None:
    from .. import ApiConfigError

    try:
        default_codemap()  # a broken code map stops the start, like a broken rule file
    except CodeMapError as exc:
        raise ApiConfigError(f"api/fhir/codemap.yaml cannot be used: {exc}") from None
    app.extensions[FETCH] = fetch_settings(app)
    configured = app.config.get("CDS_TRUSTED_ISSUERS") or {}
    try:
        app.extensions[ISSUERS] = jwks.parse_issuers(configured) if configured else {}
    except ValueError as exc:
        raise ApiConfigError(f"CDS_TRUSTED_ISSUERS (MSCC_CDS_ISSUERS_FILE): {exc}") from None
    app.extensions[JWKS] = jwks.JwksCache()
    language = app.config.get("CDS_CARD_LANGUAGE") or "en"
    if language not in cards.LANGUAGES:
        raise ApiConfigError(f"CDS_CARD_LANGUAGE (MSCC_CDS_CARD_LANGUAGE) must be one of "
                             f"{', '.join(cards.LANGUAGES)}, not {language!r}")
    app.config["CDS_CARD_LANGUAGE"] = language
    app.register_blueprint(bp)

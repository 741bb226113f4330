"""CDS Hooks 2.0: discovery, the FHIR R4 mapping of every code in the map, cards, 412, feedback, JWT."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec, rsa

import triage
from mscc_triage_api import create_app
from mscc_triage_api.cds.service import CODEMAP_PATH, case_from_prefetch, default_codemap, recorded_feedback

SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
SERVICE = "/cds-services/mscc-triage"


def condition(system: str, code: str, clinical: str = "active", verification: str = "confirmed") -> dict:
    return {
        "resourceType": "Condition", "id": str(uuid.uuid4())[:8],
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                       "code": clinical}]},
        "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                                           "code": verification}]},
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": "Patient/p1"},
    }


def observation(code: str, value=True, status: str = "final", when: str | None = "now") -> dict:
    """An Observation of a finding, made ``when`` (default: this moment; None: undated)."""
    obs = {"resourceType": "Observation", "id": str(uuid.uuid4())[:8], "status": status,
           "code": {"coding": [{"system": SNOMED, "code": code}]}, "subject": {"reference": "Patient/p1"}}
    if when is not None:
        obs["effectiveDateTime"] = (dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
                                    if when == "now" else when)
    if isinstance(value, bool):
        obs["valueBoolean"] = value
    else:
        obs["valueCodeableConcept"] = {"coding": [{"system": SNOMED, "code": value}]}
    return obs


def bundle(*resources: dict) -> dict:
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}


def request_body(conditions=(), observations=(), birth="1958-03-14") -> dict:
    return {"hook": "patient-view", "hookInstance": str(uuid.uuid4()),
            "context": {"userId": "Practitioner/1", "patientId": "p1"},
            "prefetch": {"patient": {"resourceType": "Patient", "id": "p1", "birthDate": birth},
                         "conditions": bundle(*conditions), "observations": bundle(*observations)}}


def test_discovery(client):
    service = client.get("/cds-services").get_json()["services"][0]
    assert service["id"] == "mscc-triage" and service["hook"] == "patient-view"
    assert service["prefetch"] == {
        "patient": "Patient/{{context.patientId}}",
        "conditions": "Condition?patient={{context.patientId}}",
        "observations": "Observation?patient={{context.patientId}}",
        "medicationRequests": "MedicationRequest?patient={{context.patientId}}&status=active",
        "medicationStatements": "MedicationStatement?patient={{context.patientId}}&status=active",
        "procedures": "Procedure?patient={{context.patientId}}"}


def test_emergency_card(client):
    body = request_body([condition(SNOMED, "399068003")],
                        [observation("161891005"), observation("26544005")])
    card = client.post(SERVICE, json=body).get_json()["cards"][0]
    assert card["indicator"] == "critical"
    assert card["summary"] == "Suspected metastatic spinal cord compression: act now"
    assert len(card["summary"]) <= 140
    assert "Now: Call the MSCC coordinator now" in card["detail"]
    assert f"mscc {triage.load_ruleset().version}" in card["source"]["label"]


def test_an_emergency_card_names_the_critical_flags_still_to_ask(client):
    # cancer with bone metastases and new leg weakness: an emergency, but saddle sensation and the pace
    # of the weakness are not in the record
    body = request_body([condition(SNOMED, "399068003"), condition(SNOMED, "94222008")],
                        [observation("26544005")])
    card = client.post(SERVICE, json=body).get_json()["cards"][0]
    assert card["indicator"] == "critical"
    asked = card["detail"].split("Not yet assessed")[1].split("From the record")[0]
    # in the form's words (issue 20), never the field path
    assert "Limb weakness (Getting worse): if present, emergency; adds: Deficit progressing fast, recent, or unable to walk" in asked
    assert "presentation." not in asked


def test_nothing_mapped_stays_unknown_and_the_card_says_what_to_ask(client):
    body = request_body([condition(SNOMED, "254837009")], [observation("161891005")])
    card = client.post(SERVICE, json=body).get_json()["cards"][0]
    assert card["indicator"] == "warning"   # pain in cancer, neurology unknown: urgent, not routine
    assert "Limb weakness: if present, emergency" in card["detail"]


def test_absent_observation_is_absent(client):
    body = request_body([condition(SNOMED, "254837009")],
                        [observation("161891005", False), observation("26544005", "2667000")])
    card = client.post(SERVICE, json=body).get_json()["cards"][0]
    assert card["indicator"] == "info"
    assert "presentation.weakness.present" not in card["detail"].split("Not yet assessed")[-1].split("From the record")[0]


def _case(conditions=(), observations=(), birth="1958-03-14"):
    return case_from_prefetch(request_body(conditions, observations, birth)["prefetch"], default_codemap(),
                              dt.date(2026, 11, 22))[0]


CODEMAP = yaml.safe_load(CODEMAP_PATH.read_text())


@pytest.mark.parametrize("entry", CODEMAP["conditions"]["cancer"], ids=lambda e: f"{e['system']}-{e['code']}")
def test_every_cancer_code_maps(entry):
    system = SNOMED if entry["system"] == "snomed" else ICD10
    code = entry["code"] + (".9" if entry["system"] == "icd10" and "." not in entry["code"] else "")
    cancer = _case([condition(system, code)])["patient"]["cancer"]
    assert cancer["history"] == "current"
    if entry["primary"] != "unknown":
        assert cancer["primary"] == entry["primary"]


@pytest.mark.parametrize("entry", CODEMAP["conditions"]["findings"], ids=lambda e: f"{e['system']}-{e['code']}")
def test_every_metastasis_code_maps(entry):
    system = SNOMED if entry["system"] == "snomed" else ICD10
    case = _case([condition(system, entry["code"])])
    node = case
    for part in entry["field"].split("."):
        node = node[part]
    assert node is True


@pytest.mark.parametrize("entry", CODEMAP["observations"], ids=lambda e: e["code"])
def test_every_observation_code_maps_present_and_absent(entry):
    for value, expected in ((True, True), (False, False), ("52101004", True), ("2667000", False)):
        node = _case(observations=[observation(entry["code"], value, when="2026-11-22T09:00:00Z")])
        for part in entry["field"].split("."):
            node = node[part]
        assert node is expected


def test_condition_statuses():
    assert _case([condition(SNOMED, "254837009", clinical="remission")])["patient"]["cancer"]["history"] == "past"
    assert _case([condition(SNOMED, "254837009", verification="provisional")])["patient"]["cancer"]["history"] == "suspected"
    assert "patient" not in _case([condition(SNOMED, "254837009", verification="refuted")]) or \
        "cancer" not in _case([condition(SNOMED, "254837009", verification="refuted")])["patient"]
    both = _case([condition(SNOMED, "254837009", clinical="resolved"), condition(ICD10, "C61")])
    assert both["patient"]["cancer"] == {"history": "current", "primary": "prostate"}


def test_unmapped_codes_and_cancelled_observations_are_ignored():
    case = _case([condition(SNOMED, "38341003")], [observation("26544005", True, status="entered-in-error"),
                                                   observation("12345", True)])
    assert "presentation" not in case and "cancer" not in case.get("patient", {})


def test_present_wins_over_absent():
    case = _case(observations=[observation("26544005", False), observation("26544005", True)])
    assert case["presentation"]["weakness"]["present"] is True


def test_age_from_birth_date_never_overstated():
    assert _case(birth="2010-11-23")["patient"]["age_years"] == 15
    assert _case(birth="2010-11-22")["patient"]["age_years"] == 16
    assert _case(birth="2010")["patient"]["age_years"] == 15   # latest possible day: 2010-12-31


def test_missing_prefetch_is_412(client):
    body = request_body()
    del body["prefetch"]["conditions"]
    response = client.post(SERVICE, json=body)
    assert response.status_code == 412 and response.mimetype == "application/problem+json"
    assert "conditions" in response.get_json()["detail"]


def test_without_observations_or_a_server_every_finding_is_still_to_ask(client):
    body = request_body([condition(SNOMED, "399068003")])
    del body["prefetch"]["observations"]
    card = client.post(SERVICE, json=body).get_json()["cards"][0]
    assert "Limb weakness: if present, emergency" in card["detail"]
    assert "observations" in card["detail"].split("**Record**", 1)[1]   # the card says they were not had


def test_bad_requests(client):
    assert client.post(SERVICE, json={"hook": "order-select"}).status_code == 400
    body = request_body()
    body["prefetch"]["conditions"] = {"code": {"coding": []}}   # not a resource: no resourceType
    assert client.post(SERVICE, json=body).status_code == 400
    body["prefetch"]["conditions"] = [{"resourceType": "Condition"}]
    assert client.post(SERVICE, json=body).status_code == 400
    body["prefetch"]["conditions"] = {"resourceType": "Condition",   # one Condition, not a Bundle: read liberally
                                      "subject": {"reference": "Patient/" + body["context"]["patientId"]}}
    assert client.post(SERVICE, json=body).status_code == 200


def test_feedback_is_recorded_without_patient_data(client, app):
    response = client.post(SERVICE + "/feedback", json={"feedback": [
        {"card": "abc-123", "outcome": "overridden", "overrideReason": {"reason": {"code": "already-done"}},
         "outcomeTimestamp": "2026-11-22T10:00:00Z"}]})
    assert response.status_code == 200
    assert recorded_feedback(app) == [{"card": "abc-123", "outcome": "overridden", "accepted_suggestions": 0,
                                       "override_reason": "already-done"}]
    assert client.post(SERVICE + "/feedback", json={"feedback": [{"outcome": "maybe"}]}).status_code == 400


@pytest.mark.parametrize("change, named", [
    ({"overrideReason": {"reason": {"code": "too-busy"}}}, "reasons the card offers"),
    ({"overrideReason": {"reason": {"system": "http://other.example/reasons", "code": "already-done"}}},
     "reasons the card offers"),
    ({"outcomeTimestamp": "yesterday"}, "outcomeTimestamp"),
    ({"outcomeTimestamp": "2026-11-22"}, "outcomeTimestamp"),
    ({"outcomeTimestamp": 1764000000}, "outcomeTimestamp"),
])
def test_feedback_a_card_could_not_have_given_is_refused(client, app, change, named):
    """Reviewer B (5 December): an override reason the cards never offer, or a timestamp that is no
    instant, was stored and counted in the summary as if it were feedback on a card."""
    item = {"card": "abc-123", "outcome": "overridden", "outcomeTimestamp": "2026-11-22T10:00:00Z", **change}
    response = client.post(SERVICE + "/feedback", json={"feedback": [item]})
    assert response.status_code == 400 and named in response.get_json()["detail"]
    assert recorded_feedback(app) == []
    item.pop("outcomeTimestamp")   # CDS Hooks requires it; read liberally when absent, as before
    item.pop("overrideReason", None)
    assert client.post(SERVICE + "/feedback", json={"feedback": [item]}).status_code == 200


# ------------------------------------------------------------------------------ JWT

@pytest.fixture
def keys():
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    jwk.update(kid="k1", alg="RS384", use="sig")
    return private, {"keys": [jwk]}


@pytest.fixture
def secured(tmp_path, keys):
    app = create_app({"TESTING": True, "CDS_STORE_PATH": str(tmp_path / "cds.sqlite3"),
                      "PUBLIC_BASE_URL": "http://localhost/",
                      "CDS_TRUSTED_ISSUERS": {"https://ehr.example.org": keys[1]}})
    return app.test_client()


def token(private, aud="http://localhost/cds-services/mscc-triage", iss="https://ehr.example.org", alg="RS384",
          exp_in=300, **claims) -> str:
    now = int(time.time())
    payload = {"iss": iss, "aud": aud, "exp": now + exp_in, "iat": now, "jti": str(uuid.uuid4())}
    payload.update(claims)
    return jwt.encode(payload, private, algorithm=alg, headers={"kid": "k1"})


def call(client, bearer=None):
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    return client.post(SERVICE, json=request_body(), headers=headers)


def test_valid_jwt_is_accepted(secured, keys):
    assert call(secured, token(keys[0])).status_code == 200


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "BeArEr"])
def test_the_bearer_scheme_is_case_insensitive(secured, keys, scheme):
    """RFC 9110 11.1: the scheme is case-insensitive (audit of 5 December: 'bearer <JWT>' was a 401)."""
    response = secured.post(SERVICE, json=request_body(), headers={"Authorization": f"{scheme} {token(keys[0])}"})
    assert response.status_code == 200
    assert secured.post(SERVICE, json=request_body(), headers={"Authorization": f"Basic {token(keys[0])}"}).status_code == 401


def test_missing_jwt_is_401(secured):
    response = call(secured)
    assert response.status_code == 401 and response.mimetype == "application/problem+json"
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="mscc-triage"'   # RFC 9110 11.6.1


def test_a_refused_token_is_named_invalid_in_www_authenticate(secured, keys):
    """RFC 6750 3: a bearer token that was sent and refused is error="invalid_token" (audit of 6 December:
    401 answers carried no WWW-Authenticate at all)."""
    response = call(secured, token(keys[0], iss="https://attacker.example"))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="mscc-triage", error="invalid_token"'


def test_replayed_jti_is_refused(secured, keys):
    t = token(keys[0])
    assert call(secured, t).status_code == 200
    assert call(secured, t).status_code == 401


@pytest.mark.parametrize("change", ["wrong_aud", "expired", "untrusted_iss", "no_jti", "other_key", "hs256", "none"])
def test_invalid_jwts_are_refused(secured, keys, change):
    private = keys[0]
    if change == "wrong_aud":
        t = token(private, aud="http://localhost/cds-services/other")
    elif change == "expired":
        t = token(private, exp_in=-120)
    elif change == "untrusted_iss":
        t = token(private, iss="https://attacker.example")
    elif change == "no_jti":
        now = int(time.time())
        t = jwt.encode({"iss": "https://ehr.example.org", "aud": "http://localhost/cds-services/mscc-triage",
                        "exp": now + 60, "iat": now}, private, algorithm="RS384", headers={"kid": "k1"})
    elif change == "other_key":
        t = token(ec.generate_private_key(ec.SECP256R1()), alg="ES256")
    elif change == "hs256":
        t = token("a-shared-secret-that-is-long-enough-for-hmac", alg="HS256")
    else:
        t = jwt.encode({"iss": "https://ehr.example.org"}, None, algorithm="none")
    assert call(secured, t).status_code == 401


def test_without_configured_issuers_no_jwt_is_needed(client):
    assert call(client).status_code == 200


def test_every_scan_of_the_ruleset_has_a_draft_order_in_both_languages_and_is_the_recommended_one():
    """A scan action without a draft order would vanish from the card without a word: every action of
    the scans table (rules/vocabulary.yaml) is ordered by the words of the table, in both languages."""
    from mscc_triage_api.cds.cards import ENGLISH, CardWords, orderable

    ruleset = triage.default_ruleset()
    scans = ruleset.data.scan_actions
    assert scans, "the ruleset has a scans table"
    assert set(ruleset.scan_orders) == scans
    french = CardWords.of(triage.load_form_texts(ruleset), "fr")
    for action in scans:
        assert orderable(action, ruleset)
        assert ENGLISH.ordered(action, ruleset).startswith(("MRI of the ", "CT of the "))
        assert french.ordered(action, ruleset).startswith(("IRM du ", "Scanner du "))


def _copy_yaml(path, change):
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")


def test_a_new_scan_route_reaches_the_card_in_both_languages_from_the_two_tables_alone(tmp_path):
    """A route added to the scans table (vocabulary.yaml) with its French words (labels.fr.yaml), and one
    rule swapping to it: the card orders it, recommended, in English and French, and the French headline
    names it; no code is edited (the "add a finding" checklist, docs/extending.md)."""
    import shutil

    from mscc_triage_api.cds.cards import CardWords, suggestions_for
    from triage._ruleset import DEFAULT_RULES_DIR

    folder = tmp_path / "rules"
    shutil.copytree(DEFAULT_RULES_DIR, folder, ignore=shutil.ignore_patterns("__pycache__"))

    def add_route(vocabulary):
        vocabulary["scans"]["routes"]["open"] = {"word": "open MRI", "order": "Open MRI of the {reach}"}
        for scan in vocabulary["scans"]["entries"]:
            vocabulary["actions"].append({"id": f"open_{scan['mri']}", "timing": "within_4h",
                                          "label": f"Open MRI ({scan['id']})"})
            scan["open"] = f"open_{scan['mri']}"

    def add_french(labels):
        labels["scans"]["routes"]["open"] = {"word": "IRM ouverte", "order": "IRM ouverte du {reach}"}
        for scan in yaml.safe_load((folder / "vocabulary.yaml").read_text(encoding="utf-8"))["scans"]["entries"]:
            labels["actions"][scan["open"]] = f"IRM ouverte ({scan['id']})"

    def swap_to_open(rules):
        rule = next(r for r in rules["rules"] if r["id"] == "mscc.ct_when_mri_contraindicated")
        rule["replaces"] = {"scans": "open"}

    _copy_yaml(folder / "vocabulary.yaml", add_route)
    _copy_yaml(folder / "labels.fr.yaml", add_french)
    _copy_yaml(folder / "mscc.yaml", swap_to_open)
    ruleset = triage.load_ruleset(folder)
    texts = triage.load_form_texts(ruleset)
    assert texts.unused == ()
    case = {"patient": {"cancer": {"history": "current", "primary": "prostate"}},
            "presentation": {"focal_vertebral_pain": {"present": True, "region": "lumbar"},
                             "sphincter_disturbance": {"present": True, "urinary_retention": True}},
            "assessment": {"mri_contraindicated": True}}
    result = ruleset.evaluate(case)
    assert "open_mri_whole_spine_within_4h" in result.action_ids(), result.action_ids()
    english = suggestions_for(result, "p1", ruleset)
    french = suggestions_for(result, "p1", ruleset, CardWords.of(texts, "fr"))
    assert english[0]["isRecommended"] and french[0]["isRecommended"]
    assert english[0]["actions"][0]["resource"]["code"]["text"] == "Open MRI of the whole spine"
    assert french[0]["actions"][0]["resource"]["code"]["text"] == "IRM ouverte du rachis entier"
    assert "open MRI" in result.headline
    assert "IRM ouverte du rachis entier dans les 4 heures" in texts.headlines[result.headline]["fr"]


WEAKNESS = "26544005"


@pytest.mark.parametrize("obs, why", [
    (observation(WEAKNESS, False, when="2009-06-01"), "absent_too_old"),
    (observation(WEAKNESS, False, when="2026-11-21T10:00:00Z"), "absent_too_old"),   # 26 hours before noon
    (observation(WEAKNESS, False, when=None), "absent_undated"),
    (observation(WEAKNESS, False, status="preliminary", when="2026-11-22T09:00:00Z"), "absent_not_final"),
    (observation(WEAKNESS, "2667000", status="registered", when="2026-11-22T09:00:00Z"), "absent_not_final"),
])
def test_a_finding_recorded_absent_long_ago_undated_or_not_final_stays_unknown(obs, why):
    """Audit of 5 December: "weakness absent" from 2009 was read as absent today, so the card no longer
    asked about weakness (unknown is not absent). Absent counts when final and within 24 hours."""
    case, mapped = case_from_prefetch(request_body(observations=[obs])["prefetch"], default_codemap(),
                                      dt.date(2026, 11, 22))
    assert "weakness" not in case.get("presentation", {})
    line = next(m for m in mapped if m.path == "presentation.weakness.present")
    assert line.value is None and line.why == why
    # a recent final "absent" is absent; a "present" of any date or status is present
    for other, expected in ((observation(WEAKNESS, False, when="2026-11-22T01:00:00Z"), False),
                            (observation(WEAKNESS, True, when="2009-06-01", status="preliminary"), True)):
        case, _ = case_from_prefetch(request_body(observations=[obs, other])["prefetch"], default_codemap(),
                                     dt.date(2026, 11, 22))
        assert case["presentation"]["weakness"]["present"] is expected


def test_an_old_absent_weakness_is_still_asked_on_the_card(client):
    body = request_body([condition(SNOMED, "254837009")], [observation(WEAKNESS, False, when="2009-06-01")])
    card = client.post(SERVICE, json=body).get_json()["cards"][0]
    text = json.dumps(card)
    assert "recorded absent on 2009-06-01" in text and "not taken as absent now" in text
    fresh = request_body([condition(SNOMED, "254837009")], [observation(WEAKNESS, False)])
    assert "not taken as absent" not in json.dumps(client.post(SERVICE, json=fresh).get_json()["cards"][0])


@pytest.mark.parametrize("conditions", [[condition(SNOMED, "254837009")], [condition(SNOMED, "94222008")]])
def test_a_cancer_and_no_symptom_is_a_warning_that_asks_never_no_mscc_pathway(client, conditions):
    """Audit of 5 December: a record holding only an active cancer (or bone metastases) got the info card
    "No MSCC pathway today", the most reassuring card for the patient most at risk, with nothing asked.
    The form shows no routine banner before a symptom is answered either."""
    for language, summary, asked in (("en", "No symptom in the record", "Ask first"),
                                     ("fr", "Aucun symptôme dans le dossier", "À demander d'abord")):
        client.application.config["CDS_CARD_LANGUAGE"] = language
        client.application.extensions.pop("mscc_card_words", None)
        card = client.post(SERVICE, json=request_body(conditions)).get_json()["cards"][0]
        assert card["indicator"] == "warning" and card["summary"].startswith(summary), card["summary"]
        assert asked in card["detail"] and "No MSCC pathway today" not in json.dumps(card)
    client.application.config["CDS_CARD_LANGUAGE"] = "en"
    client.application.extensions.pop("mscc_card_words", None)
    # a symptom recorded absent today, and the rest unknown: the triage's own answer again
    card = client.post(SERVICE, json=request_body(conditions, [observation("161891005", False)])).get_json()["cards"][0]
    assert card["summary"] != "No symptom in the record: open the form to triage"


def test_a_refused_call_is_logged_with_its_reason_and_no_token(secured, keys, caplog):
    """No access log by default: a refused CDS call must still leave a trace an operator can see."""
    import logging
    t = token(keys[0], iss="https://attacker.example")
    with caplog.at_level(logging.WARNING, logger="mscc_triage.api"):
        assert call(secured, t).status_code == 401
        assert call(secured).status_code == 401
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 2
    assert "refused a call to cds.service (401)" in refused[0] and "issuer is not trusted" in refused[0]
    assert "Authorization: Bearer" in refused[1]
    assert all(t not in m and t.split(".")[1] not in m and SERVICE not in m for m in refused)


def test_a_routine_card_that_a_missing_finding_could_raise_says_so_far(client):
    """Audit of 6 December: weakness recorded absent and the four other symptom groups never recorded gave
    the info card "No MSCC pathway today", when the form says "routine so far". The indicator stays info
    (the result's own); the summary and the first line say "so far" and what it could become."""
    card = client.post(SERVICE, json=request_body([condition(SNOMED, "254837009")],
                                                  [observation(WEAKNESS, False)])).get_json()["cards"][0]
    assert card["indicator"] == "info"
    assert card["summary"] == "So far: No MSCC pathway today"
    assert card["detail"].startswith("**ROUTINE** (so far: a finding not in the record could make it emergency (below))")
    emergency = client.post(SERVICE, json=request_body([condition(SNOMED, "254837009")],
                                                       [observation(WEAKNESS, True)])).get_json()["cards"][0]
    assert emergency["indicator"] == "critical"   # nothing can raise it: no "so far"
    assert not emergency["summary"].startswith("So far") and "so far" not in emergency["detail"].split("\n")[0]

"""Issue 20: every card string a clinician reads is in words: never a rule id, an action or flag id, a field
path or a raw source key (they stay in the machine-readable parts); checked over every vignette's case."""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
from collections import Counter
from pathlib import Path

import pytest

import triage
from mscc_triage_api.cds import cards
from mscc_triage_api.fhir.map import case_from_record, default_codemap, findings
from mscc_triage_api.fhir.record import read_prefetch
from triage import load_form_texts
from triage._vignettes import load_suite

ROOT = Path(__file__).resolve().parents[2]
SUITES = [ROOT / "tests" / "vignettes"] + ([ROOT.parent / "shared" / "vignettes"]
                                           if (ROOT.parent / "shared" / "vignettes").is_dir() else [])


@pytest.fixture(scope="module")
def words(ruleset):
    texts = load_form_texts(ruleset)
    labels = {path: text["en"] for path, text in texts.fields.items()}
    return labels, (lambda source: "; ".join(texts.citations(source, "en")))


def _shown(card: dict) -> str:
    parts = [card["summary"], card["detail"], *(link["label"] for link in card.get("links", []))]
    for suggestion in card.get("suggestions", []):
        parts += [suggestion["label"], *(action["description"] for action in suggestion["actions"])]
    return "\n".join(parts)


def test_no_card_shows_an_id_a_field_path_or_a_source_key(ruleset, words):
    labels, cite = words
    ids = [r.id for r in ruleset.data.rules] + list(ruleset.data.actions) + list(ruleset.data.flags)
    paths = list(triage.FIELDS)
    pattern = re.compile(r"(?<![\w.])(" + "|".join(re.escape(i) for i in sorted(ids + paths, key=len, reverse=True))
                         + r")(?![\w.])")
    checked = 0
    for _, vignette in load_suite([str(s) for s in SUITES]):
        if vignette.expect.error:
            continue
        result = ruleset.evaluate(vignette.case)
        for make in (cards.card_for, cards.thin_card):
            if make is cards.card_for:
                card = make(result, ruleset, [], "https://mscc.example/", labels=labels, cite=cite)
            else:
                card = make(result, ruleset, labels, [], "https://mscc.example/", cite=cite)
            text = _shown(card)
            found = pattern.findall(text)
            assert not found, (vignette.key, found[:5])
            assert "seed-003" not in text, vignette.key
            assert _citations_whole(card), vignette.key
            checked += 1
    assert checked > 600


def _citations_whole(card: dict) -> bool:
    """Every numbered source is one whole citation (a ';' inside a citation's parentheses never cuts it)."""
    block = card["detail"].split("**Sources**\n", 1)[1].split("\n\n")[0] if "**Sources**" in card["detail"] else ""
    return all(line.count("(") == line.count(")") for line in block.splitlines())


def test_the_card_names_what_was_held_back(ruleset, words):
    labels, cite = words
    result = ruleset.evaluate({"patient": {"cancer": {"history": "suspected", "primary": "lymphoma"}},
                               "presentation": {"weakness": {"present": True, "limbs": "legs"}}})
    detail = cards.card_for(result, ruleset, [], "https://mscc.example/", labels=labels, cite=cite)["detail"]
    held = detail.split("**Not given, and why**")[1].split("\n\n")[0]
    assert "dexamethasone 16 mg" in held and "Lymphoma or leukaemia not excluded" in held
    assert "proton pump" not in held      # its companion is named through it
    sources = detail.split("**Sources**")[1]
    assert sources.index("NICE NG234") < sources.index("French oncology reference")   # national first


def test_a_child_s_48_hour_assessment_has_its_timing_words(ruleset, words):
    labels, cite = words
    result = ruleset.evaluate({"patient": {"age_years": 9, "cancer": {"history": "none"}},
                               "presentation": {"focal_vertebral_pain": {"present": True, "nocturnal": True}}})
    assert "paediatric_assessment_within_48h" in result.action_ids()
    detail = cards.card_for(result, ruleset, [], "https://mscc.example/", labels=labels, cite=cite)["detail"]
    assert "Within 48 hours: Full blood count and imaging within 48 hours" in detail


# ------------------------------------------------------------------------------------ French cards (a setting)

WORD = re.compile(r"[^\W\d_]{3,}")


def _tokens(texts) -> set[str]:
    return {w.lower() for text in texts for w in WORD.findall(text)}


@pytest.fixture(scope="module")
def french(ruleset):
    """The French card words, and the English-only words: every word of the English texts a card can
    show that no French text uses ("within", "spine", "MRI"); a French card must hold none of them."""
    texts = load_form_texts(ruleset)
    sections = [texts.fields, texts.actions, texts.flags, texts.headlines, texts.titles, texts.reasons,
                texts.sources, texts.words, texts.choices, texts.orders]
    english = [t["en"] for section in sections for t in section.values()]
    french_texts = [t["fr"] for section in sections for t in section.values()]
    english += [en for en, _ in cards.PHRASES.values()] + [o[1] for o in cards.ORDERABLE.values()]
    english += [r["display"] for r in cards.OVERRIDE_REASONS] + list(cards.TIMING_WORDS.values())
    french_texts += [fr for _, fr in cards.PHRASES.values()] + list(cards.ORDERABLE_FR.values())
    french_texts += list(cards.OVERRIDE_DISPLAY_FR.values())
    return cards.CardWords.of(texts, "fr"), _tokens(english) - _tokens(french_texts)


def _shown_everywhere(card: dict) -> list[str]:
    """Every string of the card a clinician may read, the draft orders' texts and override reasons included."""
    parts = [card["summary"], card["detail"], card["source"]["label"], *(link["label"] for link in card["links"]),
             *(reason["display"] for reason in card["overrideReasons"])]
    for suggestion in card.get("suggestions", []):
        parts += [suggestion["label"]]
        for action in suggestion["actions"]:
            resource = action["resource"]
            concept = resource.get("code") or resource.get("medicationCodeableConcept")
            parts += [action["description"], concept["text"], *(n["text"] for n in resource.get("note", [])),
                      *(d["text"] for d in resource.get("dosageInstruction", []))]
    return parts


def test_every_french_card_string_is_french_and_never_an_id(ruleset, french):
    words, english_only = french
    ids = [r.id for r in ruleset.data.rules] + list(ruleset.data.actions) + list(ruleset.data.flags)
    pattern = re.compile(r"(?<![\w.])(" + "|".join(re.escape(i) for i in sorted(ids + list(triage.FIELDS), key=len,
                                                                                 reverse=True)) + r")(?![\w.])")
    checked, headings = 0, Counter()
    for _, vignette in load_suite([str(s) for s in SUITES]):
        if vignette.expect.error:
            continue
        result = ruleset.evaluate(vignette.case)
        for card in (cards.card_for(result, ruleset, [], "https://mscc.example/", words=words),
                     cards.thin_card(result, ruleset, words.labels, [], "https://mscc.example/", words=words)):
            for text in _shown_everywhere(card):
                assert not pattern.findall(text), (vignette.key, pattern.findall(text)[:5], text[:200])
                english = sorted(_tokens([text]) & english_only)
                assert not english, (vignette.key, english, text[:300])
                assert "seed-003" not in text, vignette.key
            assert _citations_whole(card), vignette.key
            headings.update(line for line in card["detail"].splitlines() if line.startswith("**"))
            checked += 1
    assert checked > 600
    # the card's sections and its urgency words are French
    seen = "\n".join(headings)
    for heading in ("**URGENCE IMMÉDIATE**", "**Actions**", "**Points d'attention**",
                    "**Non proposé, et pourquoi**", "**Non évalué**", "**Pas assez d'éléments dans le dossier pour trier**",
                    "**À demander d'abord**", "**D'après le dossier**", "**Sources**"):
        assert heading in seen, heading


def test_a_french_card_reads_as_the_french_form_does(ruleset, french):
    words, _ = french
    result = ruleset.evaluate({"patient": {"cancer": {"history": "suspected", "primary": "lymphoma"}},
                               "presentation": {"weakness": {"present": True, "limbs": "legs"}}})
    card = cards.card_for(result, ruleset, ["presentation.weakness.present = true (Condition 26544005)",
                                            "age 70 years (Patient.birthDate)", "cancer 118600007 -> suspected, lymphoma",
                                            "labs.corrected_calcium_mmol_l = 2.61 (Observation 29265-6: 2.61 mmol/L)"],
                          "https://mscc.example/", words=words)
    detail = card["detail"]
    texts = words.texts
    assert detail.startswith(f"**{texts.words['emergency']['fr']}**\u00a0: {texts.headlines[result.headline]['fr']}")
    held = detail.split("**Non proposé, et pourquoi**")[1].split("\n\n")[0]
    assert texts.actions["dexamethasone_16mg"]["fr"] in held
    record = detail.split("**D'après le dossier**")[1].split("\n")[0]
    assert f"{texts.fields['presentation.weakness.present']['fr']}\u00a0: Oui (Condition 26544005)" in record
    assert "Âge (ans)\u00a0: 70 (date de naissance)" in record
    assert "Antécédent de cancer\u00a0: Suspecté, Cancer primitif\u00a0: Lymphome (problème 118600007)" in record
    assert "Calcémie corrigée (mmol/L)\u00a0: 2,61 (Observation 29265-6" in record
    assert card["links"][1]["url"] == "https://mscc.example/fr/"            # the French form first
    assert card["links"][1]["label"].startswith("Ouvrir le formulaire")
    assert [r["code"] for r in card["overrideReasons"]] == [r["code"] for r in cards.OVERRIDE_REASONS]
    mri = card["suggestions"][0]
    assert mri["isRecommended"] and mri["label"].startswith("IRM")
    english = cards.card_for(result, ruleset, [], "https://mscc.example/")["suggestions"]
    for fr, en in zip(card["suggestions"], english, strict=True):            # the codes never change
        assert [(a["resource"]["resourceType"], a["resource"]["priority"]) for a in fr["actions"]] \
            == [(a["resource"]["resourceType"], a["resource"]["priority"]) for a in en["actions"]]


def test_every_orderable_action_has_its_french_text(ruleset):
    assert set(cards.ORDERABLE_FR) == set(cards.ORDERABLE)
    french = cards.CardWords.of(load_form_texts(ruleset), "fr")
    for action_id in ruleset.scan_orders:          # the scans: from the table and labels.fr.yaml
        assert cards.orderable(action_id, ruleset)
        assert french.ordered(action_id, ruleset) != cards.ENGLISH.ordered(action_id, ruleset)


def test_the_card_language_is_a_setting(tmp_path, monkeypatch):
    from mscc_triage_api import ApiConfigError, create_app
    from triage.settings import SettingsError, load_settings

    assert load_settings({}).cds_card_language == "en"
    assert load_settings({"MSCC_CDS_CARD_LANGUAGE": "FR"}).cds_card_language == "fr"
    with pytest.raises(SettingsError, match="MSCC_CDS_CARD_LANGUAGE='de': must be one of en, fr"):
        load_settings({"MSCC_CDS_CARD_LANGUAGE": "de"})
    with pytest.raises(ApiConfigError, match="CDS_CARD_LANGUAGE"):
        create_app({"TESTING": True, "CDS_STORE_PATH": str(tmp_path / "c.sqlite3"), "CDS_CARD_LANGUAGE": "de"})
    monkeypatch.setenv("MSCC_CDS_CARD_LANGUAGE", "fr")
    client = create_app({"TESTING": True, "CDS_STORE_PATH": str(tmp_path / "cds.sqlite3"),
                         "CDS_ALLOW_UNAUTHENTICATED": True}).test_client()
    body = {"hook": "patient-view", "hookInstance": "fr-1", "context": {"patientId": "p1"},
            "prefetch": {"patient": {"resourceType": "Patient", "id": "p1", "birthDate": "1950-01-01"},
                         "conditions": {"resourceType": "Bundle", "type": "searchset", "entry": []}}}
    card = client.post("/cds-services/mscc-triage", json=body).get_json()["cards"][0]
    assert card["indicator"] == "warning"
    assert card["summary"] == "Pas assez d'éléments dans le dossier pour trier\u00a0: ouvrir le formulaire"
    assert "**Dossier**\u00a0: patient\u00a0: envoyé" in card["detail"]


# ------------------------------------------------------------------------------------ cards from real FHIR records

FHIR = Path(__file__).with_name("fhir")
NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.timezone.utc)
FIELD_PATH = re.compile(r"\b(patient|presentation|assessment|labs)\.[a-z_.]+")


def _resource(name: str) -> dict:
    return json.loads((FHIR / f"{name}.json").read_text())


def _fhir_records() -> list[tuple[str, dict]]:
    """Prefetches of real FHIR records: the captured CDS Hooks requests (a matched record, HealthChain's own
    request, a thin one), every FHIR fixture alone beside the Patient and all together, and the records the
    map refuses a part of (a unit it does not convert, a value past the limits, an undated steroid, a
    heparin, one antiplatelet only), so that every kind of "From the record" entry is worded."""
    records = []
    for name in ("breast-bone-mets-weakness", "healthchain-patient-view", "thin-record"):
        records.append((name, json.loads((FHIR / "requests" / f"{name}.json").read_text())["prefetch"]))
    resources = {p.stem: json.loads(p.read_text()) for p in sorted([*FHIR.glob("*.json"), *FHIR.glob("v22/*.json")])}
    calcium, platelets = copy.deepcopy(resources["observation-calcium-mmol"]), copy.deepcopy(resources["observation-platelets"])
    calcium["valueQuantity"] = {"value": 3.1, "unit": "furlong", "system": "http://unitsofmeasure.org", "code": "furlong"}
    platelets["valueQuantity"]["value"] = 1e9
    variants = {"calcium-unit-not-converted": calcium, "platelets-beyond-limits": platelets}
    patient = resources["patient"]
    for name, resource in [*resources.items(), *variants.items()]:
        entries = [resource] if name == "patient" else [patient, resource]
        records.append((name, {"r": {"resourceType": "Bundle", "entry": [{"resource": r} for r in entries]}}))
    records.append(("everything", {"r": {"resourceType": "Bundle", "entry": [{"resource": r} for r in resources.values()]}}))
    return records


def _record_parts(line: str) -> list[str]:
    """The parts of a "From the record" line, split at the semicolons outside parentheses."""
    parts, depth, current = [], 0, ""
    for i, char in enumerate(line):
        escaped = i > 0 and line[i - 1] == "\\"
        depth += (char == "(" and not escaped) - (char == ")" and not escaped)
        if char == ";" and depth == 0 and not escaped:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    return [p for p in [*parts, current.strip()] if p]


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_every_card_from_a_real_fhir_record_speaks_in_the_form_s_words(ruleset, lang):
    """Issue 20: a card built from a real FHIR record names what it read with the form's labels and choice
    words (English and French), never a field path or a rule, action or flag id; the field paths stay in
    the machine lines (``str()`` of each mapped entry)."""
    texts = load_form_texts(ruleset)
    words = cards.CardWords.of(texts, lang)
    colon = "\u00a0: " if lang == "fr" else ": "
    ids = [r.id for r in ruleset.data.rules] + list(ruleset.data.actions) + list(ruleset.data.flags)
    id_pattern = re.compile(r"(?<![\w.-])(" + "|".join(re.escape(i) for i in sorted(ids, key=len, reverse=True))
                            + r")(?![\w.-])")
    values = {texts.words[w][lang] for w in ("yes", "no", "not_known")} | {c[lang] for c in texts.choices.values()}
    kinds = Counter()
    for name, prefetch in _fhir_records():
        record, _ = read_prefetch(prefetch)
        case, mapped = case_from_record(record, default_codemap(), NOW)
        assert all(m.path in texts.fields for m in mapped), (name, [m.path for m in mapped if m.path not in texts.fields])
        assert any(FIELD_PATH.search(str(m)) or str(m).startswith(("age ", "cancer ")) for m in mapped) or not mapped
        result = ruleset.evaluate(case)
        if findings(case):
            card = cards.card_for(result, ruleset, mapped, "https://mscc.example/", record, "p1", words=words)
        else:
            card = cards.thin_card(result, ruleset, words.labels, mapped, "https://mscc.example/", record, "p1",
                                   words=words)
        shown = "\n".join(_shown_everywhere(card))
        assert not FIELD_PATH.search(shown), (name, FIELD_PATH.findall(shown)[:5])
        assert not id_pattern.search(shown), (name, id_pattern.findall(shown)[:5])
        heading = f"**{words.phrase('from_record')}**{colon}"
        line = next(line for line in card["detail"].splitlines() if line.startswith(heading))[len(heading):]
        parts = _record_parts(line) if mapped else []
        assert len(parts) == len(mapped), (name, parts)
        for part, entry in zip(parts, mapped, strict=True):
            label = texts.fields[entry.path][lang]
            assert part.startswith(label + colon), (name, part)
            said = part[len(label + colon):].split(" (")[0].split(",")[0].strip()
            assert said in values or re.fullmatch(r"\d+([.,]\d+)?", said), (name, part)
            kinds[entry.why or ("unknown" if entry.value is None else type(entry.value).__name__)] += 1
        if lang == "fr":   # the card's own words about the record are French; the record's displays are its own
            assert not re.search(r"\b(started|days ago|left unknown|not converted|no usable value|Yes|No|Not known|"
                                 r"medication statement|date of birth|within)\b", line), (name, line)
    # every kind of entry was worded: findings, numbers, choices, unknowns and each reason the map gives
    assert {"bool", "int", "float", "str", "unknown", "this_episode", "long_term", "no_start", "unit_not_converted",
            "outside_limits", "one_antiplatelet", "fever", "procedure"} <= set(kinds), kinds


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_the_service_s_card_from_a_real_record_names_what_it_read_in_words(tmp_path, monkeypatch, lang):
    """The same, through the CDS Hooks service (api/cds/service.py passes what it mapped to the card)."""
    from mscc_triage_api import create_app

    monkeypatch.setenv("MSCC_CDS_CARD_LANGUAGE", lang)
    client = create_app({"TESTING": True, "CDS_STORE_PATH": str(tmp_path / "cds.sqlite3"),
                         "CDS_ALLOW_UNAUTHENTICATED": True}).test_client()
    body = json.loads((FHIR / "requests" / "breast-bone-mets-weakness.json").read_text())
    card = client.post("/cds-services/mscc-triage", json=body).get_json()["cards"][0]
    detail = card["detail"]
    assert not FIELD_PATH.search(detail), FIELD_PATH.findall(detail)
    if lang == "en":
        assert "**From the record**: " in detail and "Limb weakness: Yes (observation " in detail
        assert "Cancer history: Current, Primary cancer: Breast (condition " in detail
    else:
        assert "**D'après le dossier**\u00a0: " in detail
        assert "Faiblesse d'un ou plusieurs membres\u00a0: Oui (observation " in detail
        assert "Antécédent de cancer\u00a0: En cours, Cancer primitif\u00a0: Sein (problème " in detail

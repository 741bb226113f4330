"""Issue 20: every card string a clinician reads is in words: never a rule id, an action or flag id, a field
path or a raw source key (they stay in the machine-readable parts); checked over every vignette's case."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import triage
from mscc_triage_api import cards
from mscc_triage_api.form_texts import load_texts
from triage._vignettes import load_suite

ROOT = Path(__file__).resolve().parents[2]
SUITES = [ROOT / "tests" / "vignettes"] + ([ROOT.parent / "shared" / "vignettes"]
                                           if (ROOT.parent / "shared" / "vignettes").is_dir() else [])


@pytest.fixture(scope="module")
def words(ruleset):
    texts = load_texts(ruleset)
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
            checked += 1
    assert checked > 600


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

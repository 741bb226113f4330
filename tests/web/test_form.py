"""The form without a browser: every word in both languages, parsing, error mapping, contrast."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

import triage
from api.web import case_from_form, load_texts
from triage._case import FIELDS

RULES = Path(__file__).resolve().parents[2] / "rules"


@pytest.fixture(scope="module")
def texts():
    return load_texts(triage.load_ruleset(RULES))


def test_every_vocabulary_id_has_a_label_in_both_languages(texts):
    rs = triage.load_ruleset(RULES)
    for table, ids in ((texts.actions, rs.data.actions), (texts.flags, rs.data.flags)):
        for item in ids:
            assert table[item]["en"] and table[item]["fr"], item


def test_every_case_field_choice_and_word_in_both_languages(texts):
    form = yaml.safe_load((RULES / "form.yaml").read_text())
    for section in ("fields", "choices", "words", "messages"):
        for key, value in form[section].items():
            assert set(value) == {"en", "fr"} and all(value.values()), (section, key)
    assert set(texts.fields) == set(FIELDS)
    grouped = [f for g in texts.groups for f in g["fields"]]
    assert sorted(grouped) == sorted(FIELDS) and len(grouped) == len(set(grouped))
    for spec in FIELDS.values():
        for value in spec.values:
            assert value in texts.choices, value
    for rule in triage.load_ruleset(RULES).data.rules:
        if rule.headline:
            assert texts.headlines[rule.headline]["fr"], rule.id


@pytest.mark.parametrize("lang, marker", [("/", "Spinal pain"), ("/fr/", "Douleur rachidienne")])
def test_form_renders_every_field_with_a_label(client, lang, marker):
    html = client.get(lang).get_data(as_text=True)
    assert marker in html and f'<html lang="{lang.strip("/") or "en"}">' in html
    for path, spec in FIELDS.items():
        assert f'name="{path}"' in html, path
        if spec.kind != "tristate":
            control_id = "f-" + path.replace(".", "-")
            assert f'<label for="{control_id}">' in html, path
    assert html.count('<fieldset class="tri"') == sum(s.kind == "tristate" for s in FIELDS.values())


def test_form_says_findings_are_new_or_worsening(client):
    assert "new or worsening" in client.get("/").get_data(as_text=True)
    assert "nouveaux ou en aggravation" in client.get("/fr/").get_data(as_text=True)


def test_widgets_become_a_typed_case():
    case, errors = case_from_form({"presentation.weakness.present": "true", "presentation.sciatica.present": "false",
                                   "presentation.gait_difficulty": "", "patient.age_years": "64",
                                   "labs.corrected_calcium_mmol_l": "2,61", "patient.cancer.history": "current"})
    assert errors == {}
    assert case == {"presentation": {"weakness": {"present": True}, "sciatica": {"present": False}},
                    "patient": {"age_years": 64, "cancer": {"history": "current"}},
                    "labs": {"corrected_calcium_mmol_l": 2.61}}


def test_unreadable_values_are_field_errors_never_dropped():
    _, errors = case_from_form({"patient.age_years": "64.5", "labs.vitamin_d_nmol_l": "abc",
                                "presentation.weakness.present": "maybe", "patient.cancer.history": "active"})
    assert errors == {"patient.age_years": "not_a_whole_number", "labs.vitamin_d_nmol_l": "not_a_number",
                      "presentation.weakness.present": "invalid_value", "patient.cancer.history": "invalid_value"}


def test_result_page(client):
    html = client.post("/", data={"patient.cancer.history": "current",
                                  "presentation.focal_vertebral_pain.present": "true"}).get_data(as_text=True)
    assert "URGENT" in html and "Contact the MSCC coordinator within 24 hours" in html
    assert "Still to ask" in html and "Limb weakness" in html
    assert "mscc.suspected_spinal_metastases" in html and "sha256" in html
    assert 'name="presentation.focal_vertebral_pain.present" value="true" checked' in html


def test_errors_next_to_the_field_in_the_page_language_keeping_the_answers(client):
    data = {"patient.age_years": "121", "presentation.weakness.present": "true"}
    en = client.post("/", data=data)
    assert en.status_code == 422
    html = en.get_data(as_text=True)
    assert re.search(r'id="f-patient-age_years-err">Must be ≤ 120\.<', html)
    assert 'value="121"' in html and 'name="presentation.weakness.present" value="true" checked' in html
    fr = client.post("/fr/", data={"presentation.sciatica.present": "false", "presentation.sciatica.bilateral": "true"})
    assert "Incohérent avec « Des deux côtés »" in fr.get_data(as_text=True)


def _luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def test_colour_pairs_meet_wcag_aa():
    css = (Path(__file__).resolve().parents[2] / "api" / "static" / "form.css").read_text()
    for level in ("emergency", "urgent", "routine"):
        background = re.search(rf"\.banner-{level} {{ background: (#[0-9a-f]{{6}})", css).group(1)
        assert contrast(background, "#ffffff") >= 4.5, level
    for colour in ("#a4161a", "#8a4b00", "#0a3d91", "#444444"):   # error and severity text, links, muted text
        assert contrast(colour, "#ffffff") >= 4.5, colour
    assert contrast("#a4161a", "#fff0f0") >= 4.5   # error text on the error background

"""The form's questions say what their field means, so that a truthful answer records the right finding.

An outside clinical review (5 December 2026) found questions narrower than their field: a "No" to the
question as worded hid the follow-up that records the red flag ("Loss or retention of urine" hid
difficulty starting to pass urine; "Focal spinal pain" hid band-like pain; "Saddle anaesthesia" read as
complete loss only), French time fields that read as a clock time ("Début de la faiblesse (heures)": "8"
for 8 a.m. is a deficit of 8 hours, which withholds dexamethasone in an anticoagulated patient), and a
"still to ask" line that read the wrong way round ("Walking now: if present: EMERGENCY").
"""

from __future__ import annotations

import re
import shutil
from html import unescape
from pathlib import Path

import pytest
import yaml

import triage
from mscc_triage_api.web import case_from_form
from triage import RulesetError, load_form_texts

RULES = Path(triage.load_ruleset().path)


@pytest.fixture(scope="module")
def texts():
    return load_form_texts(triage.load_ruleset(RULES))


@pytest.fixture
def client(tmp_path):
    from mscc_triage_api import create_app

    return create_app({"TESTING": True, "CDS_STORE_PATH": str(tmp_path / "cds.sqlite3")}).test_client()


def _said(texts, path: str, lang: str) -> str:
    """The question and its help text, as the page shows them."""
    return (texts.fields[path][lang] + " " + texts.help.get(path, {}).get(lang, "")).lower()


# (gate question, words each language must use: the follow-ups it opens, so a "No" is not truthful for them)
GATES = [
    ("presentation.sphincter_disturbance.present",
     {"en": ["retention", "difficulty starting", "reduced sensation"], "fr": ["rétention", "difficulté", "sensation diminuée"]}),
    ("presentation.focal_vertebral_pain.present", {"en": ["band around the chest or abdomen"], "fr": ["en ceinture"]}),
    ("presentation.paraesthesia.present", {"en": ["dysaesthesia", "numbness"], "fr": ["dysesthésies", "engourdissement"]}),
]


@pytest.mark.parametrize("path, words", GATES, ids=[g[0] for g in GATES])
@pytest.mark.parametrize("lang", ["en", "fr"])
def test_a_gate_question_names_what_its_follow_ups_record(texts, path, words, lang):
    said = _said(texts, path, lang)
    for word in words[lang]:
        assert word in said, (path, lang, word, said)


NO_CANCER_LUMBAR_PAIN = {"patient.age_years": "40", "patient.cancer.history": "none",
                         "presentation.focal_vertebral_pain.present": "true",
                         "presentation.focal_vertebral_pain.region": "lumbar", "presentation.weakness.present": "false",
                         "presentation.sciatica.present": "false", "presentation.gait_difficulty": "false"}
LUNG_CANCER_NO_SYMPTOM = {"patient.cancer.history": "current", "patient.cancer.primary": "lung",
                          "presentation.weakness.present": "false", "presentation.paraesthesia.present": "false",
                          "presentation.sphincter_disturbance.present": "false", "presentation.sciatica.present": "false",
                          "presentation.gait_difficulty": "false"}


@pytest.mark.parametrize("base, gate, hidden", [
    (NO_CANCER_LUMBAR_PAIN, "presentation.sphincter_disturbance.present",
     "presentation.sphincter_disturbance.altered_urinary_sensation"),
    (NO_CANCER_LUMBAR_PAIN, "presentation.paraesthesia.present", "presentation.paraesthesia.saddle_anaesthesia"),
    (LUNG_CANCER_NO_SYMPTOM, "presentation.focal_vertebral_pain.present", "presentation.focal_vertebral_pain.band_like"),
], ids=["hesitancy", "saddle-tingling", "band-like-pain"])
def test_the_finding_a_gate_hides_is_what_makes_the_emergency(client, base, gate, hidden):
    """Why the gate's wording matters: answered "No", the case is not an emergency; the finding behind it is."""
    answered_no = client.post("/", data={**base, gate: "false"}).get_data(as_text=True)
    finding = client.post("/", data={**base, hidden: "true"}).get_data(as_text=True)
    assert "banner-emergency" not in answered_no and 'id="urgency-banner"' in answered_no
    assert "banner-emergency" in finding


@pytest.mark.parametrize("lang, words", [("en", ["tingling", "reduced sensation"]),
                                         ("fr", ["fourmillement", "diminution de la sensibilité"])])
def test_saddle_question_asks_any_sensory_change_not_only_anaesthesia(texts, lang, words):
    said = _said(texts, "presentation.paraesthesia.saddle_anaesthesia", lang)
    assert not texts.fields["presentation.paraesthesia.saddle_anaesthesia"][lang].lower().startswith(("saddle anaesth", "anesthésie"))
    for word in words:
        assert word in said, said


@pytest.mark.parametrize("lang, word", [("en", "glove-and-stocking"), ("fr", "en gants et chaussettes")])
def test_both_legs_help_leaves_out_a_glove_and_stocking_neuropathy(texts, lang, word):
    """case-format 2.2: such a neuropathy is not ``bilateral_legs`` (it would bring a false cauda equina flag)."""
    said = _said(texts, "presentation.paraesthesia.bilateral_legs", lang)
    assert word in said and ("answer no" in said or "répondre non" in said)


@pytest.mark.parametrize("path", ["presentation.weakness.onset_hours", "presentation.non_ambulatory_hours",
                                  "presentation.complete_paraplegia_hours",
                                  "patient.treatments.checkpoint_inhibitor_start_days_ago"])
def test_french_durations_read_as_a_number_of_hours_or_days_never_a_clock_time(texts, path):
    french = texts.fields[path]["fr"].lower()
    assert "il y a" in french or "nombre d'heures" in french, french
    assert not french.startswith("début de"), french


def test_no_french_page_word_calls_mscc_a_threat_to_life(texts):
    """"Urgence vitale" is the resuscitation tier in French triage; seed 003 calls MSCC "médico-chirurgicale"."""
    assert "vitale" not in texts.words["emergency"]["fr"].lower()
    assert texts.words["emergency"]["fr"] != texts.words["urgent"]["fr"]


def test_significant_hypercalcaemia_says_its_symptomatic_threshold(client, texts):
    assert "2.90" in texts.flags["significant_hypercalcaemia"]["en"]
    assert "2,90" in texts.flags["significant_hypercalcaemia"]["fr"]
    html = client.post("/", data={"labs.corrected_calcium_mmol_l": "2.95", "presentation.hypercalcaemia_symptoms": "true",
                                  "presentation.weakness.present": "false"}).get_data(as_text=True)
    assert 'data-id="significant_hypercalcaemia"' in html and "2.90 or more with symptoms" in unescape(html)


WEAK_LEGS = {"patient.cancer.history": "current", "patient.cancer.primary": "lung", "presentation.weakness.present": "true",
             "presentation.weakness.bilateral": "true", "presentation.weakness.limbs": "legs"}


@pytest.mark.parametrize("url, onset, walking", [
    ("/", "Weakness began (hours ago): if it began less than 48 hours ago: EMERGENCY",
     "Walking now: if unable to walk: EMERGENCY"),
    ("/fr/", "Faiblesse apparue il y a (heures) : si elle est apparue il y a moins de 48 heures : URGENCE IMMÉDIATE",
     "Marche actuelle : s'il ne peut plus marcher : URGENCE IMMÉDIATE"),
])
def test_still_to_ask_says_which_answer_raises_a_field_that_is_not_yes_or_no(client, url, onset, walking):
    html = client.post(url, data=WEAK_LEGS).get_data(as_text=True)
    lines = {m[0]: unescape(re.sub(r"<[^>]+>", "", m[1])).replace("\u00a0", " ")
             for m in re.findall(r'<li data-field="([^"]+)">(.*?)</li>', html, re.S)}
    assert lines["presentation.weakness.onset_hours"].startswith(onset)
    assert lines["presentation.ambulatory_status"].startswith(walking)
    note = unescape(re.search(r'<pre id="note-text">(.*?)</pre>', html, re.S).group(1)).replace("\u00a0", " ")
    assert f"- {walking}" in note and f"- {onset}" in note


@pytest.mark.parametrize("url, scan", [("/", "Whole-spine MRI within 4 hours of the request"),
                                       ("/fr/", None)])
def test_still_to_ask_names_the_scan_an_answer_would_add(client, url, scan):
    """Audit of 6 December: the page and the note showed the urgency and the critical flags an answer would
    bring, never the scan (would_add_actions), which the CDS card shows: for an anticoagulated patient with
    weakness, an onset under 24 hours means a possible epidural haematoma and the 4-hour scan."""
    import triage as _triage

    scan = scan or load_form_texts(_triage.load_ruleset()).actions["mri_whole_spine_within_4h"]["fr"]
    data = {"patient.cancer.history": "current", "patient.cancer.primary": "breast",
            "patient.treatments.anticoagulant": "true", "presentation.weakness.present": "true"}
    html = client.post(url, data=data).get_data(as_text=True)
    onset = re.search(r'<li data-field="presentation.weakness.onset_hours">(.*?)</li>', html, re.S).group(1)
    assert 'class="adds-action" data-id="mri_whole_spine_within_4h"' in onset
    assert unescape(re.sub(r"<[^>]+>", "", onset)).replace("\u00a0", " ").endswith(scan)
    note = unescape(re.search(r'<pre id="note-text">(.*?)</pre>', html, re.S).group(1)).replace("\u00a0", " ")
    line = next(x for x in note.splitlines() if x.startswith("- ") and ("48" in x))
    assert line.endswith(scan), line


def test_the_card_says_which_answer_raises_too():
    from mscc_triage_api.cds import cards

    ruleset = triage.load_ruleset()
    result = ruleset.evaluate({"patient": {"cancer": {"history": "current", "primary": "lung"}},
                               "presentation": {"weakness": {"present": True, "bilateral": True, "limbs": "legs"}}})
    for lang, walking, present in (("en", "- Walking now: if unable to walk, emergency", ": if present, "),
                                   ("fr", "- Marche actuelle: s'il ne peut plus marcher, urgence immédiate", ": si oui, ")):
        lines = cards._unknown_lines(result, ruleset, cards.CardWords.of(load_form_texts(ruleset), lang))
        assert any(line.startswith(walking) for line in lines), lines
        assert any(present in line for line in lines), lines   # a yes/no finding still reads "if present"


def _copy(tmp_path) -> Path:
    folder = tmp_path / "rules"
    shutil.copytree(RULES, folder)
    return folder


def test_a_field_still_to_ask_without_yes_or_no_needs_its_condition(tmp_path):
    folder = _copy(tmp_path)
    form = yaml.safe_load((folder / "form.yaml").read_text(encoding="utf-8"))
    del form["fields"]["presentation.ambulatory_status"]["condition"]
    (folder / "form.yaml").write_text(yaml.safe_dump(form, allow_unicode=True, sort_keys=False), encoding="utf-8")
    with pytest.raises(RulesetError, match=r"fields\.presentation\.ambulatory_status\.condition.*missing"):
        load_form_texts(triage.load_ruleset(folder))


def test_a_yes_or_no_finding_takes_no_condition(tmp_path):
    folder = _copy(tmp_path)
    form = yaml.safe_load((folder / "form.yaml").read_text(encoding="utf-8"))
    form["fields"]["presentation.gait_difficulty"] = {"en": "Difficulty walking", "fr": "Difficulté à marcher",
                                                      "condition": {"en": "if it is new", "fr": "si c'est nouveau"}}
    (folder / "form.yaml").write_text(yaml.safe_dump(form, allow_unicode=True, sort_keys=False), encoding="utf-8")
    with pytest.raises(RulesetError, match=r"fields\.presentation\.gait_difficulty\.condition"):
        load_form_texts(triage.load_ruleset(folder))


@pytest.mark.parametrize("typed, value", [("67.0", 67), ("67,0", 67), ("67.00", 67), ("+67", 67)])
def test_a_whole_number_with_a_zero_fraction_is_read_as_in_the_api(typed, value):
    case, errors = case_from_form({"patient.age_years": typed})
    assert errors == {} and case == {"patient": {"age_years": value}}


@pytest.mark.parametrize("typed, code", [("67.5", "not_a_whole_number"), ("67,000", "ambiguous_number"),
                                         ("67.", "not_a_whole_number"), ("6.70", "not_a_whole_number")])
def test_a_fraction_or_a_grouped_number_is_still_refused(typed, code):
    case, errors = case_from_form({"patient.age_years": typed})
    assert errors == {"patient.age_years": code} and case == {}

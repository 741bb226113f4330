"""The form and its French words for case format and clinical rules 2.2 (issue 21).

The new questions are asked where a clinician looks for them, in both languages; the region names
its levels (T11-L1, the conus, is new); the new timing has its words; every headline of every rule,
each variant included, has a French headline that names the same scan and the same timing; the
French labels that changed in 2.2 say what the English says.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml
from markupsafe import escape

import triage
from mscc_triage_api.web import case_from_form
from triage import load_form_texts
from triage._case import FIELDS
from triage._ruleset import TIMINGS as ENGINE_TIMINGS

RULES = Path(triage.load_ruleset().path)

NEW_IN_2_2 = {   # field -> group it is asked in
    "patient.treatments.long_term_corticosteroids": "cancer",
    "patient.treatments.anticoagulant": "cancer",
    "presentation.recent_neuraxial_procedure": "infection",
    "presentation.hypocalcaemia_symptoms": "labs",
    "presentation.hypercalcaemia_symptoms": "labs",
    "assessment.mri_contraindicated": "imaging",
    "labs.platelets_10e9_l": "labs",
}
WITH_HELP = set(NEW_IN_2_2) - {"labs.platelets_10e9_l"}


@pytest.fixture(scope="module")
def ruleset():
    return triage.load_ruleset(RULES)


@pytest.fixture(scope="module")
def texts(ruleset):
    return load_form_texts(ruleset)


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    from mscc_triage_api import create_app

    store = tmp_path_factory.mktemp("cds") / "cds.sqlite3"
    client = create_app({"TESTING": True, "CDS_STORE_PATH": str(store)}).test_client()
    return {"en": client.get("/").get_data(as_text=True), "fr": client.get("/fr/").get_data(as_text=True)}


def _group_html(html: str, group: str) -> str:
    section = html[html.index(f'id="group-{group}"'):]
    following = re.search(r'id="group-(?!' + re.escape(group) + r'")', section)
    return section[:following.start()] if following else section


@pytest.mark.parametrize("path, group", sorted(NEW_IN_2_2.items()))
def test_questions_of_case_format_2_2_are_asked_in_their_group_in_both_languages(texts, pages, path, group):
    assert path in FIELDS, f"{path}: not in the case model"
    assert path in next(g for g in texts.groups if g.id == group).fields
    for lang in ("en", "fr"):
        section = _group_html(pages[lang], group)
        assert f'name="{path}"' in section, (path, lang)
        assert str(escape(texts.fields[path][lang])) in section, (path, lang)
        if path in WITH_HELP:
            assert str(escape(texts.help[path][lang])) in section, (path, lang)
    assert texts.fields[path]["en"] != texts.fields[path]["fr"]


def test_the_new_questions_sit_beside_the_questions_they_belong_with(texts):
    order = {g.id: list(g.fields) for g in texts.groups}
    cancer = order["cancer"]
    # the two steroid questions together, then the anticoagulant, with the other treatments
    steroids = cancer.index("patient.treatments.corticosteroids")
    assert cancer[steroids + 1] == "patient.treatments.long_term_corticosteroids"
    assert cancer.index("patient.treatments.anticoagulant") < cancer.index("patient.treatments.bone_modifying_agent")
    # the calcium symptoms just after the calcium value, the platelets among the labs
    labs = order["labs"]
    calcium = labs.index("labs.corrected_calcium_mmol_l")
    assert labs[calcium + 1:calcium + 3] == ["presentation.hypocalcaemia_symptoms", "presentation.hypercalcaemia_symptoms"]
    # "MRI cannot be done" is asked before "MRI done" (it decides which scan is asked)
    imaging = order["imaging"]
    assert imaging.index("assessment.mri_contraindicated") < imaging.index("assessment.mri_performed")
    # none of them is hidden behind another answer
    gated = {f for g in texts.groups for _, follow in g.items for f in follow}
    assert not gated & set(NEW_IN_2_2)


def test_corticosteroids_now_means_started_for_this_episode(texts):
    now, long_term = (texts.fields[f"patient.treatments.{k}"] for k in ("corticosteroids", "long_term_corticosteroids"))
    assert "this episode" in now["en"] and "cet épisode" in now["fr"]
    assert "dexamethasone" in texts.help["patient.treatments.corticosteroids"]["en"]
    assert "dexaméthasone" in texts.help["patient.treatments.corticosteroids"]["fr"]
    assert "before this episode" in long_term["en"] and "avant cet épisode" in long_term["fr"]
    assert "prednisolone" in texts.help["patient.treatments.long_term_corticosteroids"]["fr"]


def test_help_says_what_case_format_2_2_means(texts):
    procedure = texts.help["presentation.recent_neuraxial_procedure"]
    for en, fr in (("epidural", "péridural"), ("lumbar puncture", "ponction lombaire"), ("spinal surgery", "chirurgie")):
        assert en in procedure["en"] and fr in procedure["fr"]
    assert "7 days" in texts.fields["presentation.recent_neuraxial_procedure"]["en"]
    assert "7 derniers jours" in texts.fields["presentation.recent_neuraxial_procedure"]["fr"]
    low = texts.help["presentation.hypocalcaemia_symptoms"]
    for en, fr in (("carpopedal", "carpopédal"), ("tetany", "tétanie"), ("seizure", "convulsion")):
        assert en in low["en"] and fr in low["fr"]
    high = texts.help["presentation.hypercalcaemia_symptoms"]
    for en, fr in (("thirst", "Soif"), ("confusion", "confusion"), ("constipation", "constipation")):
        assert en in high["en"] and fr in high["fr"]
    anticoagulant = texts.fields["patient.treatments.anticoagulant"]
    assert "dual antiplatelet" in anticoagulant["en"] and "double antiagrégation" in anticoagulant["fr"]
    assert "10⁹/L" in texts.fields["labs.platelets_10e9_l"]["en"] and "10⁹/L" in texts.fields["labs.platelets_10e9_l"]["fr"]


def test_every_region_names_its_levels_and_thoracolumbar_the_conus(texts, pages):
    region = FIELDS["presentation.focal_vertebral_pain.region"]
    assert "thoracolumbar" in region.values
    for value in region.values:
        for lang in ("en", "fr"):
            assert re.search(r"\([^)]*[CTLS]\d", texts.choices[value][lang]), (value, lang)
    assert "T11" in texts.choices["thoracolumbar"]["en"] and "conus" in texts.choices["thoracolumbar"]["en"]
    assert "T11" in texts.choices["thoracolumbar"]["fr"] and "cône" in texts.choices["thoracolumbar"]["fr"]
    assert "T10)" in texts.choices["thoracic"]["en"] and "(L2" in texts.choices["lumbar"]["en"]
    for lang in ("en", "fr"):   # offered in the page (radio buttons or a list), between thoracic and lumbar
        html = pages[lang]
        field = html[html.index('id="f-presentation-focal_vertebral_pain-region-wrap"'):]
        field = field[:field.index('class="field"', 1)]
        values = re.findall(r'value="(\w+)"', field)
        assert values == ["cervical", "thoracic", "thoracolumbar", "lumbar", "sacral"], values
        assert str(escape(texts.choices["thoracolumbar"][lang])) in field


def test_every_timing_has_its_words_within_48h_included(texts):
    for timing in ENGINE_TIMINGS:
        assert texts.words[timing]["en"] and texts.words[timing]["fr"], timing
    assert "48" in texts.words["within_48h"]["en"] and "48" in texts.words["within_48h"]["fr"]
    form = yaml.safe_load((RULES / "form.yaml").read_text(encoding="utf-8"))
    assert list(form["words"]).index("within_24h") < list(form["words"]).index("within_48h") \
        < list(form["words"]).index("within_1_week")


def _headline_variants(ruleset):
    return [(rule.id, variant.text) for rule in ruleset.data.rules for variant in rule.headlines]


def test_every_headline_of_every_rule_has_a_french_one(ruleset, texts):
    variants = _headline_variants(ruleset)
    assert len(variants) > len([r for r in ruleset.data.rules if r.headline])   # some rules have several
    for rule_id, english in variants:
        assert english in texts.headlines, (rule_id, english)
        assert texts.headlines[english]["fr"] and texts.headlines[english]["fr"] != english, (rule_id, english)
    for english in ruleset.data.headlines.values():
        assert texts.headlines[english]["fr"], english


def test_the_shipped_french_headlines_are_keyed_by_the_english_text():
    # A French headline by rule id would silently keep an old meaning when the English changes.
    data = yaml.safe_load((RULES / "labels.fr.yaml").read_text(encoding="utf-8"))["headlines"]
    assert "rules" not in data and data["texts"]


_NUMBER = re.compile(r"\d+(?:[.,\u00a0 ]\d+)*")


def _numbers(text: str) -> set[str]:
    """The numbers of a text, written the same way in both languages (2.60 and 2,60; 100,000 and 100 000)."""
    out = set()
    for match in _NUMBER.findall(text):
        if re.fullmatch(r"\d{1,3}(?:[,\u00a0 ]\d{3})+", match):
            out.add(re.sub(r"\D", "", match))
        else:
            out.update(m.replace(",", ".") for m in re.findall(r"\d+(?:[.,]\d+)?", match))
    return out


SAME_WORDS = [   # (English, French): said in one language, said in the other
    (r"\bCT\b", r"(?i)\bscanner\b"), (r"\bMRI\b", r"\bIRM\b"), (r"lumbosacral", r"lombo-sacr"),
    (r"whole-spine", r"rachis entier"), (r"\bnow\b", r"maintenant"),
]


def _check_same_meaning(english: str, french: str) -> None:
    assert _numbers(english) <= _numbers(french), (english, french)
    for en, fr in SAME_WORDS:
        assert bool(re.search(en, english)) == bool(re.search(fr, french)), (en, english, french)


def test_each_french_headline_names_the_same_scan_timing_and_numbers(ruleset, texts):
    # A French headline must never name a scan the English (and so the result) does not hold (X1).
    for _, english in _headline_variants(ruleset):
        _check_same_meaning(english, texts.headlines[english]["fr"])


def test_each_french_action_label_names_the_same_scan_and_numbers(texts):
    for action, label in texts.actions.items():
        assert _numbers(label["en"]) <= _numbers(label["fr"]) | {"1"}, (action, label)   # "once" is "en 1"
        for en, fr in SAME_WORDS[:3]:
            assert bool(re.search(en, label["en"])) == bool(re.search(fr, label["fr"])), (action, label)


def test_each_french_flag_label_and_title_keeps_the_numbers(ruleset, texts):
    for flag, label in texts.flags.items():
        assert _numbers(label["en"]) <= _numbers(label["fr"]) | {"1"}, (flag, label)
    for rule, title in texts.titles.items():
        assert _numbers(title["en"]) <= _numbers(title["fr"]), (rule, title)


NEW_IDS = {
    "actions": ["neurology_review_now", "immune_related_adverse_event_pathway_now", "spinal_surgical_opinion_now",
                "haemato_oncology_discussion_today", "anticoagulation_review_now", "urgent_tissue_diagnosis_route",
                "paediatric_assessment_within_48h", "contact_paediatric_oncology_now", "goals_of_care_discussion",
                "ct_whole_spine_within_4h", "ct_whole_spine_within_24h", "ct_whole_spine_within_1_week",
                "ct_lumbosacral_within_4h"],
    "flags": ["tetraparesis", "consider_epidural_haematoma", "long_term_steroids_continue",
              "gait_assumed_from_non_ambulatory_status", "consider_ceiling_of_care", "mri_contraindicated_ct_route"],
}
NEW_RULES = ["mscc.epidural_haematoma", "mscc.tetraparesis", "mscc.suspected_spinal_infection",
             "mscc.one_surgical_opinion", "mscc.gait_assumed_new", "mscc.suspected_myeloma", "mscc.ceiling_of_care",
             "mscc.ct_when_mri_contraindicated"]


def test_new_ids_and_rules_of_2_2_have_french_words(ruleset, texts):
    for section, ids in NEW_IDS.items():
        for key in ids:
            assert key in getattr(ruleset.data, section), key
            label = getattr(texts, section)[key]
            assert label["fr"] and label["fr"] != label["en"], key
    for rule_id in NEW_RULES:
        assert texts.titles[rule_id]["fr"] != texts.titles[rule_id]["en"], rule_id


CHANGED_IN_2_2 = [   # (section, id, words the English says, words the French must say)
    ("actions", "spinal_precautions", ["neck in line"], ["cou dans l'axe"]),
    ("actions", "stop_calcium_vitamin_d", ["thiazide", "lithium"], ["thiazidiques", "lithium"]),
    ("flags", "rapidly_progressive_deficit", ["recent", "unable to walk"], ["récent", "marcher"]),
    ("flags", "haematological_malignancy_suspected_discuss_before_steroids", ["lymphoma", "leukaemia"],
     ["Lymphome", "leucémie"]),
    ("flags", "hypocalcaemia_correct_before_bone_agent", ["next dose"], ["prochaine dose"]),
    ("flags", "severe_hypocalcaemia", ["1.90", "with symptoms"], ["1,90", "symptômes"]),
]


@pytest.mark.parametrize("section, key, english, french", CHANGED_IN_2_2, ids=[c[1] for c in CHANGED_IN_2_2])
def test_french_labels_changed_in_2_2_say_what_the_english_says(texts, section, key, english, french):
    label = getattr(texts, section)[key]
    for word in english:
        assert word in label["en"], (word, label["en"])
    for word in french:
        assert word in label["fr"].replace("\u00a0", " "), (word, label["fr"])
    if key == "haematological_malignancy_suspected_discuss_before_steroids":
        assert "myélome" not in label["fr"].lower() and "myeloma" not in label["en"].lower()


def test_new_widgets_of_2_2_become_a_typed_case():
    case, errors = case_from_form({
        "patient.treatments.long_term_corticosteroids": "true", "patient.treatments.anticoagulant": "false",
        "presentation.recent_neuraxial_procedure": "true", "presentation.hypocalcaemia_symptoms": "false",
        "presentation.hypercalcaemia_symptoms": "", "assessment.mri_contraindicated": "true",
        "labs.platelets_10e9_l": "45", "presentation.focal_vertebral_pain.region": "thoracolumbar"})
    assert errors == {}
    assert case == {"patient": {"treatments": {"long_term_corticosteroids": True, "anticoagulant": False}},
                    "presentation": {"recent_neuraxial_procedure": True, "hypocalcaemia_symptoms": False,
                                     "focal_vertebral_pain": {"region": "thoracolumbar"}},
                    "assessment": {"mri_contraindicated": True}, "labs": {"platelets_10e9_l": 45}}


@pytest.mark.parametrize("url, message", [("/", "Must be ≤ 2000."), ("/fr/", "Doit être ≤ 2000.")])
def test_a_platelet_count_out_of_range_is_shown_next_to_its_field(tmp_path, url, message):
    from mscc_triage_api import create_app

    client = create_app({"TESTING": True, "CDS_STORE_PATH": str(tmp_path / "c.sqlite3")}).test_client()
    response = client.post(url, data={"labs.platelets_10e9_l": "2001", "presentation.weakness.present": "true"})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert f'id="f-labs-platelets_10e9_l-err">{message}<' in html and 'value="2001"' in html


def _visible(html: str) -> str:
    from html import unescape

    return unescape(re.sub(r"<[^>]+>", " ", html[html.index("<body>"):])).replace("\u00a0", " ")


@pytest.mark.parametrize("data, french", [
    ({"patient.cancer.history": "current", "patient.cancer.spinal_metastases": "true",
      "patient.treatments.anticoagulant": "true", "patient.treatments.long_term_corticosteroids": "true",
      "presentation.weakness.present": "true", "presentation.weakness.onset_hours": "2",
      "presentation.focal_vertebral_pain.present": "true", "presentation.focal_vertebral_pain.region": "thoracolumbar",
      "assessment.mri_contraindicated": "true", "labs.platelets_10e9_l": "40"},
     ["Scanner du rachis entier dans les 4 heures suivant la demande (IRM contre-indiquée)",
      "penser à un hématome épidural", "IRM contre-indiquée ; scanner dans le même délai",
      "Arrêter les anticoagulants"]),
    ({"patient.age_years": "10", "patient.cancer.history": "none", "presentation.focal_vertebral_pain.present": "true",
      "presentation.focal_vertebral_pain.nocturnal": "true"},
     ["Dans les 48 heures", "NFS et imagerie dans les 48 heures"]),
], ids=["haematoma-ct", "child-48h"])
def test_a_french_result_of_2_2_is_in_french(ruleset, texts, data, french, tmp_path):
    from mscc_triage_api import create_app

    client = create_app({"TESTING": True, "CDS_STORE_PATH": str(tmp_path / "c.sqlite3")}).test_client()
    html = client.post("/fr/", data=data).get_data(as_text=True)
    assert 'id="urgency-banner"' in html
    text = _visible(html)
    for words in french:
        assert words in text, words
    english = {a.label for a in ruleset.data.actions.values()} | {f.label for f in ruleset.data.flags.values()}
    english |= {text for _, text in _headline_variants(ruleset)} | {r.title for r in ruleset.data.rules}
    assert [e for e in english if e in text] == []


def test_a_changed_english_headline_leaves_its_french_missing_with_a_hint(tmp_path):
    folder = tmp_path / "rules"
    shutil.copytree(RULES, folder)
    mscc = folder / "mscc.yaml"
    template = "Weakness of all four limbs: {scan}, spinal surgeon now"   # one variant per scan route
    other = "Possible spinal epidural haematoma: {scan}, stop anticoagulants"
    text = mscc.read_text(encoding="utf-8")
    assert template in text
    assert other in text
    text = text.replace(template, template.replace("surgeon now", "surgeon at once"))
    mscc.write_text(text.replace(other, other.replace("stop", "hold")), encoding="utf-8")
    with pytest.raises(triage.RulesetError) as info:
        load_form_texts(triage.load_ruleset(folder))
    message = str(info.value)
    assert "labels.fr.yaml" in message and "missing" in message
    # named as the rule file writes it (once for every route), with the old text as a hint
    assert "headlines.texts.Possible spinal epidural haematoma: {scan}, hold anticoagulants" in message
    assert "mscc.epidural_haematoma" in message and f"did you mean {other}" in message
    # every headline without its French one is named at once, not one per run
    assert "1 more without a French one" in message
    assert "'Weakness of all four limbs: {scan}, spinal surgeon at once' (mscc.tetraparesis)" in message
    assert "whole-spine" not in message


def test_french_headlines_by_rule_id_are_still_read_for_older_rulesets(tmp_path):
    folder = tmp_path / "rules"
    shutil.copytree(RULES, folder)
    path = folder / "labels.fr.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    english = "Spinal pain suggesting metastases: contact the MSCC team within 24 hours"
    del data["headlines"]["texts"][english]
    data["headlines"]["rules"] = {"mscc.suspected_spinal_metastases": "Douleur évocatrice : équipe CMM dans les 24 heures"}
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    loaded = load_form_texts(triage.load_ruleset(folder))
    assert loaded.headlines[english]["fr"] == "Douleur évocatrice\u00a0: équipe CMM dans les 24 heures"
    assert loaded.unused == ()

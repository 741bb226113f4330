"""The form without a browser: every word in both languages, parsing, error mapping, contrast."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import triage
from triage import load_form_texts
from mscc_triage_api.web import case_from_form
from triage._case import FIELDS

RULES = Path(triage.load_ruleset().path)   # the ruleset the app serves by default


@pytest.fixture(scope="module")
def texts():
    return load_form_texts(triage.load_ruleset(RULES))


def test_every_vocabulary_id_has_a_label_in_both_languages(texts):
    rs = triage.load_ruleset(RULES)
    for table, ids in ((texts.actions, rs.data.actions), (texts.flags, rs.data.flags)):
        for item in ids:
            assert table[item]["en"] and table[item]["fr"], item


def test_every_case_field_choice_and_word_in_both_languages(texts):
    form = yaml.safe_load((RULES / "form.yaml").read_text())
    for section in ("fields", "choices", "words", "messages"):
        for key, value in form[section].items():
            assert set(value) - {"help", "condition"} == {"en", "fr"} and value["en"] and value["fr"], (section, key)
            for extra in ("help", "condition"):
                if extra in value:
                    assert set(value[extra]) == {"en", "fr"} and all(value[extra].values()), (section, key, extra)
    assert set(texts.fields) == set(FIELDS)
    grouped = [f for g in texts.groups for f in g.fields]
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
            # a select or a box has its label; a short choice is a row of radio buttons with a legend
            assert f'<label for="{control_id}">' in html or f'<fieldset class="choice" id="{control_id}"' in html, path
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


PVR = "presentation.sphincter_disturbance.post_void_residual_ml"


@pytest.mark.parametrize("typed", ["1,000", "1.000", "12.500", "2,610", "1,000,000", "+1,000"])
def test_a_thousands_separator_is_refused_never_read_as_a_decimal(typed):
    """'1,000' mL read as 1.0 would drop the retention (>= 200 mL) and the cauda equina red flag."""
    case, errors = case_from_form({PVR: typed, "patient.age_years": typed})
    assert errors == {PVR: "ambiguous_number", "patient.age_years": "ambiguous_number"} and case == {}


@pytest.mark.parametrize("typed, value", [("1000", 1000.0), ("2,61", 2.61), ("2.61", 2.61), ("0,125", 0.125),
                                          ("1000,5", 1000.5), (",5", 0.5), ("300.", 300.0), ("+300", 300.0),
                                          ("-3", -3.0), ("12,5", 12.5)])
def test_a_number_with_one_decimal_mark_is_read(typed, value):
    case, errors = case_from_form({PVR: typed})
    assert errors == {} and case["presentation"]["sphincter_disturbance"]["post_void_residual_ml"] == value


@pytest.mark.parametrize("typed", ["1_000", "2e2", "\u0663\u0660\u0660", "\uff13\uff10\uff10", "1,000.5", "1.000,5",
                                   "1 000", "0x12c", "inf", "nan", "1,2,3", ".", "9" * 41])
def test_what_is_not_a_plain_number_is_refused(typed):
    case, errors = case_from_form({PVR: typed, "patient.age_years": typed})
    assert errors[PVR] == "not_a_number" and "patient.age_years" in errors and case == {}


CALCIUM = "labs.corrected_calcium_mmol_l"


@pytest.mark.parametrize("typed, value", [("2.495", 2.495), ("2,495", 2.495), ("1.250", 1.25), ("3.000", 3.0)])
def test_three_decimals_are_a_decimal_where_thousands_are_out_of_range(typed, value):
    """Audit of 5 December: a calcium converted from mg/dL (10 mg/dL = 2.495 mmol/L), prefilled by the CDS
    card's form link, was refused as "a thousands separator": 2495 mmol/L cannot be, 2.495 can."""
    case, errors = case_from_form({CALCIUM: typed})
    assert errors == {} and case["labs"]["corrected_calcium_mmol_l"] == value


@pytest.mark.parametrize("path, typed", [("labs.platelets_10e9_l", "1.500"),   # 1.5 and 1500 are both platelet counts
                                         (PVR, "1,000"), ("labs.creatinine_clearance_ml_min", "1,000.5")])
def test_three_decimals_stay_ambiguous_where_both_readings_can_be(path, typed):
    case, errors = case_from_form({path: typed})
    assert case == {} and errors[path] in ("ambiguous_number", "not_a_number")


def test_the_cds_prefill_of_a_converted_calcium_is_triaged_as_it_is(client):
    from mscc_triage_api.web import form_values

    values = form_values({"labs": {"corrected_calcium_mmol_l": 10.0 * 0.2495}, "patient": {"cancer": {"history": "current"}}})
    for url in ("/", "/fr/"):
        page = client.post(url, data=values)
        assert page.status_code == 200, page.get_data(as_text=True)[:300]


def test_two_different_answers_to_one_question_are_refused(client):
    from werkzeug.datastructures import MultiDict
    _, errors = case_from_form(MultiDict([("presentation.weakness.present", "false"),
                                          ("presentation.weakness.present", "true"), (PVR, "10"), (PVR, "900"),
                                          ("presentation.sciatica.present", "true"), ("presentation.sciatica.present", "true")]))
    assert errors == {"presentation.weakness.present": "answered_twice", PVR: "answered_twice"}
    for url, words in (("/", "Answered twice with different values"), ("/fr/", "Deux réponses différentes")):
        page = client.post(url, data=MultiDict([("presentation.weakness.present", "false"),
                                                ("presentation.weakness.present", "true")]))
        html = page.get_data(as_text=True)
        assert page.status_code == 422 and words in html and 'id="result"' not in html   # no result shown


def test_an_ambiguous_number_is_shown_next_to_its_field_in_both_languages(client):
    for url, words in (("/", "without a thousands separator"), ("/fr/", "sans séparateur de milliers")):
        page = client.post(url, data={"presentation.sphincter_disturbance.present": "true", PVR: "1,000"})
        html = page.get_data(as_text=True)
        assert page.status_code == 422 and words in html and 'value="1,000"' in html and 'id="result"' not in html


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
    assert "Incohérent avec «\u00a0Des deux côtés\u00a0»" in fr.get_data(as_text=True)   # French spacing


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


def test_shipped_form_files_hold_no_entry_the_ruleset_does_not_know(texts):
    # Labels for fields, ids or rules the case model and the ruleset do not have (a stale entry, or a
    # headline for a rule id that was renamed) are not refused at start-up, but the shipped files hold none.
    assert texts.unused == ()


# ------------------------------------------------------------------------------------ case-format 2.1

NEW_IN_2_1 = {   # field -> group it is asked in
    "presentation.focal_vertebral_pain.band_like": "pain",
    "presentation.paraesthesia.bilateral_legs": "sensation",
    "presentation.sphincter_disturbance.altered_urinary_sensation": "sphincters",
    "presentation.sexual_dysfunction": "sphincters",
    "presentation.infection_suspected": "infection",
    "presentation.complete_paraplegia_hours": "walking",
    "assessment.new_findings_since_mri": "imaging",
}


@pytest.mark.parametrize("path, group", sorted(NEW_IN_2_1.items()))
def test_questions_of_case_format_2_1_are_asked_with_help_in_both_languages(texts, client, path, group):
    assert path in FIELDS, f"{path}: not in the case model yet"
    assert path in next(g for g in texts.groups if g.id == group).fields
    assert texts.help[path]["en"] and texts.help[path]["fr"]
    for url, lang in (("/", "en"), ("/fr/", "fr")):
        html = client.get(url).get_data(as_text=True)
        section = html[html.index(f'id="group-{group}"'):]
        assert f'name="{path}"' in section.split("</fieldset>\n  {% endfor %}")[0]
        control_id = "f-" + path.replace(".", "-")
        help_html = f'<p class="help" id="{control_id}-help">'
        assert help_html in html and f'aria-describedby="{control_id}-help"' in html, (path, lang)
        assert _escape(texts.help[path][lang]) in html and _escape(texts.fields[path][lang]) in html


def _escape(text: str) -> str:
    from markupsafe import escape

    return str(escape(text))


def test_help_says_what_the_spec_means():
    form = yaml.safe_load((RULES / "form.yaml").read_text())["fields"]
    assert "38 °C" in form["presentation.infection_suspected"]["help"]["en"]
    assert "38 °C" in form["presentation.infection_suspected"]["help"]["fr"]
    assert "after that MRI" in form["assessment.new_findings_since_mri"]["help"]["en"]
    assert "après cette IRM" in form["assessment.new_findings_since_mri"]["help"]["fr"]


def test_new_widgets_become_a_typed_case():
    case, errors = case_from_form({"presentation.infection_suspected": "true", "presentation.sexual_dysfunction": "false",
                                   "presentation.complete_paraplegia_hours": "36,5",
                                   "assessment.new_findings_since_mri": "true"})
    assert errors == {}
    assert case == {"presentation": {"infection_suspected": True, "sexual_dysfunction": False,
                                     "complete_paraplegia_hours": 36.5},
                    "assessment": {"new_findings_since_mri": True}}


# ------------------------------------------------------------------------------------ broken files stop the start

def _broken_copy(tmp_path: Path, file: str, edit) -> Path:  # type: ignore[no-untyped-def]
    folder = tmp_path / "rules"
    shutil.copytree(RULES, folder)
    path = folder / file
    path.write_text(edit(path.read_text(encoding="utf-8")), encoding="utf-8")
    return folder


def _drop_line(prefix: str):  # type: ignore[no-untyped-def]
    def edit(text: str) -> str:
        lines = text.splitlines(keepends=True)
        found = [i for i, line in enumerate(lines) if line.startswith(prefix)]
        assert found, prefix
        del lines[found[0]]
        return "".join(lines)
    return edit


def _set_yaml(section_path: list[str], value):  # type: ignore[no-untyped-def]
    def edit(text: str) -> str:
        data = yaml.safe_load(text)
        node = data
        for key in section_path[:-1]:
            node = node[key]
        if value is _DELETE:
            del node[section_path[-1]]
        else:
            node[section_path[-1]] = value
        return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    return edit


_DELETE = object()


def _changed(before: str, after: str) -> str:
    assert after != before, "the edit found nothing to change"
    return after

BROKEN = [
    # (id, file, edit, words expected in the message)
    ("not yaml", "form.yaml", lambda t: t + "\nwords: [unclosed\n", ["form.yaml", "not valid YAML"]),
    ("a key twice", "labels.fr.yaml", lambda t: _changed(t, t.replace("flags:\n", "flags:\n  sins_unstable: x\n", 1)),
     ["labels.fr.yaml", "sins_unstable", "appears twice"]),
    ("field label missing", "form.yaml", _drop_line("  presentation.weakness.bilateral:"),
     ["form.yaml", "fields.presentation.weakness.bilateral", "missing"]),
    ("field asked in no group", "form.yaml", lambda t: _changed(t, t.replace(" presentation.weakness.bilateral,\n", "\n")),
     ["form.yaml", "presentation.weakness.bilateral", "no group"]),
    ("empty French field label", "form.yaml",
     _set_yaml(["fields", "presentation.sciatica.bilateral"], {"en": "Both legs", "fr": " "}),
     ["form.yaml", "fields.presentation.sciatica.bilateral.fr", "French text is empty"]),
    ("empty French help", "form.yaml",
     _set_yaml(["fields", "presentation.infection_suspected", "help", "fr"], ""),
     ["form.yaml", "fields.presentation.infection_suspected.help.fr", "empty"]),
    ("choice label missing", "form.yaml", _set_yaml(["choices", "lumbar"], _DELETE),
     ["form.yaml", "choices.lumbar", "missing"]),
    ("word missing", "form.yaml", _set_yaml(["words", "within_4h"], _DELETE), ["form.yaml", "words.within_4h", "missing"]),
    ("message placeholder unknown", "form.yaml",
     _set_yaml(["messages", "out_of_range", "fr"], "Doit être {op} {bounds}."),
     ["form.yaml", "messages.out_of_range.fr", "{bounds}", "did you mean bound?"]),
    ("French action label missing", "labels.fr.yaml", _set_yaml(["actions", "analgesia"], _DELETE),
     ["labels.fr.yaml", "actions.analgesia", "missing"]),
    ("French flag label empty", "labels.fr.yaml", _set_yaml(["flags", "sins_unstable"], ""),
     ["labels.fr.yaml", "flags.sins_unstable", "empty"]),
    ("French action label not text", "labels.fr.yaml", _set_yaml(["actions", "analgesia"], None),
     ["labels.fr.yaml", "actions.analgesia", "must be a string"]),
    ("French headline missing", "labels.fr.yaml",
     _set_yaml(["headlines", "texts", "Suspected metastatic spinal cord compression: act now"], _DELETE),
     ["labels.fr.yaml", "headlines.texts.Suspected metastatic spinal cord compression: act now", "missing",
      "mscc.suspected"]),
    ("French scan headline missing", "labels.fr.yaml",
     _set_yaml(["headlines", "texts", "Cauda equina red flags: {scan}, spinal surgeon now"], _DELETE),
     ["labels.fr.yaml", "headlines.texts.Cauda equina red flags: {scan}, spinal surgeon now", "missing",
      "mscc.cauda_equina"]),
    ("French headline too long for a card", "labels.fr.yaml",
     _set_yaml(["headlines", "texts", "Cauda equina red flags: {scan}, spinal surgeon now"],
               "Signes d'alerte de queue de cheval, à considérer comme une urgence absolue : {scan}, "
               "appeler le chirurgien du rachis maintenant"),
     ["labels.fr.yaml", "headlines.texts.Cauda equina red flags: {scan}, spinal surgeon now",
      "more than 139", "would lose its end"]),
    ("French scan headline without its scan", "labels.fr.yaml",
     _set_yaml(["headlines", "texts", "Cauda equina red flags: {scan}, spinal surgeon now"], "Queue de cheval"),
     ["labels.fr.yaml", "headlines.texts.Cauda equina red flags: {scan}, spinal surgeon now", "'{scan}'"]),
    ("French words of a scan route missing", "labels.fr.yaml", _set_yaml(["scans", "routes", "ct"], _DELETE),
     ["labels.fr.yaml", "scans.routes.ct", "missing", "every route of the vocabulary's scans table"]),
    ("French scan words without the route", "labels.fr.yaml",
     _set_yaml(["scans", "entries", "whole_spine_within_24h", "words"], "rachis entier dans les 24 heures"),
     ["labels.fr.yaml", "scans.entries.whole_spine_within_24h.words", "'{route}'"]),
    ("French route order without the reach", "labels.fr.yaml", _set_yaml(["scans", "routes", "mri", "order"], "IRM"),
     ["labels.fr.yaml", "scans.routes.mri.order", "'{reach}'"]),
    ("French scans section missing", "labels.fr.yaml", _set_yaml(["scans"], _DELETE),
     ["labels.fr.yaml", "scans", "missing"]),
    ("French default headline missing", "labels.fr.yaml", _set_yaml(["headlines", "default", "urgent"], _DELETE),
     ["labels.fr.yaml", "headlines.default.urgent", "missing"]),
    ("unknown section", "form.yaml", lambda t: t + "\nwrods: {}\n", ["form.yaml", "wrods", "did you mean words?"]),
    ("missing file", "labels.fr.yaml", None, ["labels.fr.yaml", "not found"]),
]


@pytest.mark.parametrize("file, edit, expected", [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_a_broken_form_file_names_file_key_and_reason(tmp_path, file, edit, expected):
    if edit is None:
        folder = tmp_path / "rules"
        shutil.copytree(RULES, folder)
        (folder / file).unlink()
    else:
        folder = _broken_copy(tmp_path, file, edit)
    with pytest.raises(triage.RulesetError) as info:
        load_form_texts(triage.load_ruleset(folder))
    message = str(info.value)
    for word in expected:
        assert word in message, (word, message)
    # ... and the app does not start (never a 500 on '/')
    from mscc_triage_api import create_app

    with pytest.raises(triage.RulesetError):
        create_app({"TESTING": True, "MSCC_RULES_PATH": str(folder), "CDS_STORE_PATH": str(tmp_path / "c.sqlite3")})


def test_an_entry_the_ruleset_does_not_know_is_listed_with_a_hint_not_refused(tmp_path):
    folder = _broken_copy(tmp_path, "labels.fr.yaml", lambda t: t.replace(
        "  analgesia:", "  analgesia_now: Antalgie\n  analgesia:", 1))
    unused = load_form_texts(triage.load_ruleset(folder)).unused
    assert any("actions.analgesia_now: not an id of the vocabulary" in note for note in unused), unused


@pytest.mark.parametrize("argv", [["rules", "check"], ["serve", "--dev", "--port", "1"]])
def test_cli_refuses_broken_form_files_with_exit_3_and_no_traceback(tmp_path, argv):
    folder = _broken_copy(tmp_path, "labels.fr.yaml", _set_yaml(["flags", "sins_unstable"], ""))
    done = subprocess.run([sys.executable, "-m", "triage", *argv, "--ruleset", str(folder)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "labels.fr.yaml" in done.stderr and "flags.sins_unstable" in done.stderr and "empty" in done.stderr
    assert "Traceback" not in done.stderr


# ------------------------------------------------------------------------------------ engine failure

def _fail_with(exc: Exception):  # type: ignore[no-untyped-def]
    def evaluate(self, case):  # type: ignore[no-untyped-def]
        raise exc
    return evaluate


@pytest.mark.parametrize("url, title, kept", [("/", "No result: the triage engine failed.", "clinical judgement"),
                                              ("/fr/", "Aucun résultat\u00a0: le moteur de triage a échoué.",
                                               "jugement clinique")])
def test_engine_failure_is_a_readable_page_in_its_language_keeping_the_answers(client, monkeypatch, url, title, kept):
    monkeypatch.setattr(triage.Ruleset, "evaluate", _fail_with(triage.EngineError("durable failed")))
    response = client.post(url, data={"presentation.weakness.present": "true", "patient.age_years": "70"})
    assert response.status_code == 503 and response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert _escape(title) in html and kept in html and 'id="engine-error"' in html
    assert 'name="presentation.weakness.present" value="true" checked' in html and 'value="70"' in html
    assert "durable failed" not in html and "problem" not in response.mimetype


@pytest.mark.parametrize("url, lang, words", [("/", "en", "This page could not be shown."),
                                              ("/fr/", "fr", "Cette page n'a pas pu être affichée.")])
def test_any_other_failure_of_a_form_page_is_html_never_json(client, monkeypatch, url, lang, words):
    monkeypatch.setattr(triage.Ruleset, "evaluate", _fail_with(RuntimeError("boom")))
    response = client.post(url, data={"presentation.weakness.present": "true"})
    assert response.status_code == 500 and response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert f'<html lang="{lang}">' in html and _escape(words) in html and "boom" not in html
    # the JSON API keeps its problem details
    assert client.post("/v1/triage", json={}).mimetype == "application/problem+json"


def test_form_texts_module_imports_without_flask():
    # The command line (triage rules check, triage serve) checks the form's words with it.
    code = ("import sys, triage; triage.load_form_texts(triage.load_ruleset()); "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('flask', 'werkzeug')); "
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_still_to_ask_names_the_critical_flag_an_unknown_would_add(client):
    # Already an emergency: an unknown is worth asking when it would add a critical flag (spec 2.1).
    html = client.post("/fr/", data={"patient.cancer.history": "current", "patient.cancer.primary": "breast",
                                     "presentation.weakness.present": "true"}).get_data(as_text=True)
    asked = html[html.index('class="unknowns"'):]
    asked = asked[:asked.index("</ul>")]
    assert 'data-field="presentation.weakness.progressive"' in asked
    assert "Déficit d'aggravation rapide, récent, ou impossibilité de marcher" in asked.replace("&#39;", "'")


# ------------------------------------------------------------------------------------ issue 13: words and citations

FRENCH_CASES = [
    {},
    {"patient.cancer.history": "current", "patient.cancer.primary": "prostate",
     "presentation.focal_vertebral_pain.present": "true", "presentation.sphincter_disturbance.present": "true",
     "presentation.sphincter_disturbance.urinary_retention": "true", "assessment.sins.total": "14"},
    {"patient.cancer.history": "current", "patient.cancer.bone_metastases": "true",
     "labs.corrected_calcium_mmol_l": "3,6", "labs.creatinine_clearance_ml_min": "25",
     "presentation.focal_vertebral_pain.present": "false", "presentation.weakness.present": "false"},
    {"patient.cancer.history": "none", "presentation.weakness.present": "true", "presentation.infection_suspected": "true",
     "patient.comorbidities.diabetes": "true", "patient.age_years": "12"},
]


def _visible_text(html: str) -> str:
    from html import unescape

    body = html[html.index("<body>"):]
    return unescape(re.sub(r"<[^>]+>", " ", body))


@pytest.mark.parametrize("data", FRENCH_CASES, ids=["empty", "cauda-equina", "hypercalcaemia", "no-known-cancer"])
def test_every_word_of_the_french_result_is_french(client, texts, data):
    rs = triage.load_ruleset(RULES)
    html = client.post("/fr/", data=data).get_data(as_text=True)
    text = _visible_text(html)
    assert 'id="urgency-banner"' in html or ('id="not-enough"' in html and not data)
    english = {r.title for r in rs.data.rules} | {r.headline for r in rs.data.rules if r.headline}
    english |= set(rs.data.headlines.values()) | {a.label for a in rs.data.actions.values()}
    english |= {f.label for f in rs.data.flags.values()}
    english |= {v["en"] for k, v in texts.sources.items() if v["en"] != v["fr"]}
    english |= {v["en"] for v in texts.words.values() if v["en"] != v["fr"] and len(v["en"]) > 3}
    french = " ".join(v["fr"] for v in texts.words.values())   # "Triage" is French too
    leaked = sorted(e for e in english if re.search(rf"(?<![\w-]){re.escape(e)}(?![\w-])", text) and e not in french)
    assert leaked == []
    assert "seed-003" not in html
    # French typography: no plain space before a colon, a semicolon or a closing guillemet
    assert not re.search(r"\w [:;»]", text), re.findall(r".{20}\w [:;»].{5}", text)
    assert not re.search(r"[^\W\d][:;](\s|$)", text), re.findall(r".{20}[^\W\d][:;]\s.{5}", text)


@pytest.mark.parametrize("url", ["/", "/fr/"])
def test_clinicians_see_readable_citations_never_internal_references(client, texts, url):
    html = client.post(url, data=FRENCH_CASES[1]).get_data(as_text=True)
    assert "seed-003" not in html and "NICE NG234 (2023)" in html
    assert texts.sources["seed-003"]["en" if url == "/" else "fr"].replace("'", "&#39;") in html
    rule_text = (RULES / "mscc.yaml").read_text()
    assert "seed-003" in rule_text   # the rule files keep their own references


def test_a_source_part_in_parentheses_keeps_its_semicolon():
    from triage import source_parts

    assert source_parts("seed-003; NHS MSCC pathways (a; b); NICE NG234") == [
        "seed-003", "NHS MSCC pathways (a; b)", "NICE NG234"]


@pytest.mark.parametrize("url", ["/", "/fr/"])
def test_one_not_known_choice_for_the_cancer_history(client, url):
    html = client.get(url).get_data(as_text=True)
    select = html[html.index('name="patient.cancer.history"'):]
    select = select[:select.index("</select>")]
    assert select.count("<option") == 5 and 'value="unknown"' not in select and 'value="" selected' in select
    # a posted "unknown" (the case model's word) shows as that one choice
    html = client.post(url, data={"patient.cancer.history": "unknown"}).get_data(as_text=True)
    select = html[html.index('name="patient.cancer.history"'):]
    assert 'value="" selected' in select[:select.index("</select>")]


@pytest.mark.parametrize("url", ["/", "/fr/"])
def test_a_short_choice_of_a_finding_is_one_tap(client, url):
    # issue 24: the level of the pain is a row of buttons (five levels and one "not known", checked by default)
    html = client.get(url).get_data(as_text=True)
    row = html[html.index('id="f-presentation-focal_vertebral_pain-region"'):]
    row = row[:row.index("</fieldset>")]
    assert row.count('name="presentation.focal_vertebral_pain.region"') == 6 and 'value="" checked' in row
    html = client.post(url, data={"presentation.focal_vertebral_pain.region": "thoracic"}).get_data(as_text=True)
    row = html[html.index('id="f-presentation-focal_vertebral_pain-region"'):]
    assert 'value="thoracic" checked' in row[:row.index("</fieldset>")]


def test_follow_up_questions_follow_their_question_in_the_page(client, texts):
    html = client.get("/").get_data(as_text=True)
    gated = html[html.index('data-gate="presentation.weakness.present"'):]
    gated = gated[:gated.index('id="group-sensation"')]
    follow = gated[gated.index('class="follow-ups"'):]
    for path in ("presentation.weakness.limbs", "presentation.weakness.bilateral", "presentation.weakness.progressive",
                 "presentation.weakness.onset_hours"):
        assert f'name="{path}"' in follow, path
    # the sexual dysfunction question is a red flag of its own: never behind another answer
    group = next(g for g in texts.groups if g.id == "sphincters")
    assert ("presentation.sexual_dysfunction", ()) in group.items


def test_the_language_button_keeps_the_answers_and_triages_only_a_triaged_page(client):
    kept = {"_switch": "1", "patient.age_years": "70", "presentation.weakness.present": "true"}
    html = client.post("/fr/", data=kept).get_data(as_text=True)
    assert 'value="70"' in html and 'name="presentation.weakness.present" value="true" checked' in html
    assert 'id="urgency-banner"' not in html and '<html lang="fr">' in html
    html = client.post("/", data={**kept, "_triaged": "1"}).get_data(as_text=True)
    assert 'id="urgency-banner"' in html and 'name="_triaged"' in html


def test_the_banner_says_so_far_when_an_unknown_could_raise_the_urgency(client):
    html = client.post("/", data={"presentation.sciatica.present": "false"}).get_data(as_text=True)
    banner = html[html.index('id="urgency-banner"'):html.index('id="still-to-ask"')]
    assert 'class="so-far"' in banner and "Ask these first" in banner and "EMERGENCY" in banner
    # already an emergency: an unknown that would add a critical flag is named right after the "Now" actions
    # (issue 24: banner, critical flags, "Now" first; the urgency cannot go higher)
    html = client.post("/", data={"patient.cancer.history": "current", "patient.cancer.primary": "breast",
                                  "presentation.weakness.present": "true"}).get_data(as_text=True)
    banner = html[html.index('id="urgency-banner"'):html.index('id="now-actions"')]
    assert 'class="so-far"' not in banner and "could add a critical point" not in banner
    after_now = html[html.index('id="now-actions"'):html.index('id="still-to-ask"')]
    assert "could add a critical point" in after_now


def test_the_note_lists_findings_actions_flags_date_and_ruleset(client):
    html = client.post("/", data=FRENCH_CASES[1]).get_data(as_text=True)
    from html import unescape

    note = unescape(re.search(r'<pre id="note-text">(.*?)</pre>', html, re.S).group(1))
    assert "&" not in note   # escaped once, as the page
    for text in ("MSCC triage: EMERGENCY", "Triaged on ", "CRITICAL: Cauda equina red flags", "Findings given:",
                 "- Urinary retention: Yes", "- SINS total (0 to 18): 14",
                 "- Within 4 hours: Whole-spine MRI within 4 hours of the request", "Ruleset: mscc 2.2.0, sha256 ",
                 "does not replace clinical judgement"):
        assert text in note, (text, note)
    assert re.search(r"Triaged on \d{4}-\d\d-\d\d \d\d:\d\d", note)
    assert _visible_text(html).count("does not replace clinical judgement") == 2   # the page's and the note's


BROKEN_13 = [
    ("French title missing", "labels.fr.yaml", _set_yaml(["titles", "mscc.analgesia"], _DELETE),
     ["labels.fr.yaml", "titles.mscc.analgesia", "missing"]),
    ("citation missing", "form.yaml", _set_yaml(["sources", "NICE QS56"], _DELETE),
     ["form.yaml", "sources.NICE QS56", "missing", "readable citation"]),
    ("follow-up of a number", "form.yaml",
     _set_yaml(["groups", 0, "follow_ups"], {"patient.age_years": ["patient.cancer.primary"]}),
     ["form.yaml", "groups.cancer.follow_ups.patient.age_years", "yes/no"]),
    ("follow-up from another group", "form.yaml",
     _set_yaml(["groups", 5, "follow_ups"], {"presentation.sciatica.present": ["presentation.weakness.bilateral"]}),
     ["form.yaml", "groups.sciatica.follow_ups", "presentation.weakness.bilateral", "not another question"]),
]


@pytest.mark.parametrize("file, edit, expected", [b[1:] for b in BROKEN_13], ids=[b[0] for b in BROKEN_13])
def test_a_broken_title_citation_or_follow_up_stops_the_start(tmp_path, file, edit, expected):
    folder = _broken_copy(tmp_path, file, edit)
    with pytest.raises(triage.RulesetError) as info:
        load_form_texts(triage.load_ruleset(folder))
    for word in expected:
        assert word in str(info.value), (word, str(info.value))


@pytest.mark.parametrize("lang, prefix, heading, reason", [
    ("en", "/", "Not given, and why", "Lymphoma or leukaemia not excluded"),
    ("fr", "/fr/", "Non proposé, et pourquoi", "Lymphome ou leucémie non exclu"),
])
def test_the_result_says_what_was_held_back_and_why(client, lang, prefix, heading, reason):
    """Issue 25: a held dexamethasone is named with its reason, in the page's language, and in the note."""
    html = client.post(prefix, data={"patient.cancer.history": "suspected", "patient.cancer.primary": "lymphoma",
                                     "presentation.weakness.present": "true"}).get_data(as_text=True)
    withheld = html.split('id="withheld"')[1].split("</details>")[0]
    assert heading in withheld and reason in withheld
    assert 'data-id="dexamethasone_16mg"' in withheld
    note = html.split('id="note-text">')[1].split("</pre>")[0]
    assert reason in note.replace("&#39;", "'")


# ------------------------------------------------------------------------------------ issue 24: the form at 3 a.m.

@pytest.mark.parametrize("url, words", [("/", ["Not enough answered yet", "Ask these first"]),
                                        ("/fr/", ["Pas encore assez de réponses", "À demander d'abord"])])
def test_nothing_asked_is_not_enough_never_routine(client, url, words):
    html = client.post(url, data={"patient.age_years": "70", "patient.cancer.history": "none"}).get_data(as_text=True)
    text = _visible_text(html)
    for word in words:
        assert word in text, word
    assert 'id="urgency-banner"' not in html and "ROUTINE" not in text and "NON URGENT" not in text
    assert 'id="note-text"' not in html   # no decision to copy into the notes
    asked = html[html.index('class="unknowns"'):]
    assert 'data-field="presentation.weakness.present"' in asked[:asked.index("</ul>")]
    # one symptom answered, even "No": the result is shown
    html = client.post(url, data={"presentation.weakness.present": "false"}).get_data(as_text=True)
    assert 'id="urgency-banner"' in html and 'id="not-enough"' not in html
    # a sub-finding counts too
    html = client.post(url, data={"presentation.sciatica.bilateral": "false"}).get_data(as_text=True)
    assert 'id="not-enough"' not in html


def test_an_emergency_from_the_labs_alone_is_never_hidden(client):
    html = client.post("/", data={"labs.corrected_calcium_mmol_l": "3.6"}).get_data(as_text=True)
    assert 'id="not-enough"' not in html and 'banner-emergency' in html and 'id="now-actions"' in html


def test_the_note_lists_the_symptom_questions_not_assessed(client):
    html = client.post("/", data={"patient.cancer.history": "current", "patient.cancer.primary": "breast",
                                  "presentation.weakness.present": "true", "presentation.sciatica.present": "false"}
                       ).get_data(as_text=True)
    from html import unescape

    note = unescape(re.search(r'<pre id="note-text">(.*?)</pre>', html, re.S).group(1))
    missing = note[note.index("Not assessed (not asked or not examined):"):]
    for label in ("Spinal pain (in the spine, or in a band around the chest or abdomen)", "Fever or suspected spinal infection", "New sexual dysfunction",
                  "Which limbs"):   # a follow-up of a "Yes" too
        assert f"- {label}" in missing, label
    assert "- Sciatica-type pain" not in missing and "- Both legs\n" not in missing   # answered; follow-up of a "No"
    still = note[note.index("Still to ask:"):note.index("Not assessed")]
    assert all(line[2:].split(":")[0] not in missing for line in still.splitlines()[1:] if line.startswith("- "))


def test_new_case_is_a_question_that_keeps_the_answers(client):
    data = {"patient.age_years": "70", "presentation.weakness.present": "true", "_triaged": "1"}
    html = client.post("/fr/new", data=data).get_data(as_text=True)
    assert "Effacer toutes les réponses" in html and 'name="patient.age_years" value="70"' in html
    assert 'name="_triaged"' in html and 'action="/fr/"' in html and 'method="get" action="/fr/"' in html
    page = client.post("/", data={"_switch": "1", "_triaged": "1", "patient.age_years": "70",
                                  "presentation.weakness.present": "true"}).get_data(as_text=True)
    assert 'id="urgency-banner"' in page and 'value="70"' in page
    # the button is in the header, not beside Triage
    form = client.get("/").get_data(as_text=True)
    assert form.index('id="new-case"') < form.index('<form method="post"') < form.index('id="submit"')


@pytest.mark.parametrize("field, raw", [("patient.age_years", "9" * 4301), ("patient.age_years", "1" * 40),
                                        ("labs.corrected_calcium_mmol_l", "1e400"),
                                        ("labs.corrected_calcium_mmol_l", "9" * 5000)])
def test_a_monstrous_number_is_a_field_error_never_a_500(client, field, raw):
    """Issue 19: a 4,301-digit age used to reach int() and Python's digit limit (500)."""
    answer = client.post("/", data={field: raw})
    assert answer.status_code == 422, answer.status_code
    assert f'id="{field}-error"' in answer.get_data(as_text=True) or "error" in answer.get_data(as_text=True)


def test_a_field_the_form_does_not_ask_is_named_and_nothing_is_triaged(client):
    """Audit of 5 December: 'presentation.weaknes.present=true' (misspelt) gave 'Not enough answered yet'."""
    for url, words in (("/", "is not a question of this form"), ("/fr/", "pas une question de ce formulaire")):
        page = client.post(url, data={"presentation.weaknes.present": "true", "presentation.sciatica.present": "false"})
        html = page.get_data(as_text=True)
        assert page.status_code == 422 and words in html and "presentation.weaknes.present" in html
        assert 'id="result"' not in html
    # the form's own controls (_switch, _triaged) are not questions and pass
    assert client.post("/", data={"presentation.weakness.present": "true", "_triaged": "1"}).status_code == 200


def test_a_body_that_is_not_form_data_is_refused_with_a_word(client):
    for headers, body in (({"Content-Type": "application/json"}, '{"presentation": {"weakness": {"present": true}}}'),
                          ({"Content-Type": "text/plain"}, "presentation.weakness.present=true")):
        page = client.post("/", data=body, headers=headers)
        html = page.get_data(as_text=True)
        assert page.status_code == 422 and "This page reads form answers" in html and 'id="result"' not in html


def test_an_answer_sent_as_a_file_is_named_and_nothing_is_triaged(client):
    """Audit of 5 December: a multipart part with a filename went to request.files and was dropped, so
    weakness sent that way came out routine (and was recorded); a multipart body without a boundary was
    dropped as "not enough answered"."""
    import io

    for url, words in (("/", "was sent as a file"), ("/fr/", "a été envoyé comme fichier")):
        page = client.post(url, content_type="multipart/form-data", data={
            "presentation.focal_vertebral_pain.present": "false",
            "presentation.weakness.present": (io.BytesIO(b"true"), "a.txt")})
        html = page.get_data(as_text=True)
        assert page.status_code == 422 and words in html and "presentation.weakness.present" in html
        assert 'id="result"' not in html
    page = client.post("/", data=b"presentation.weakness.present=true", content_type="multipart/form-data")
    assert page.status_code == 422 and "reads form answers" in page.get_data(as_text=True)
    page = client.post("/", content_type="multipart/form-data", data={"presentation.weakness.present": "true",
                                                                        "patient.cancer.history": "current"})
    assert page.status_code == 200 and "EMERGENCY" in page.get_data(as_text=True)


def test_a_sins_total_against_its_components_says_both_numbers(client):
    data = {"assessment.sins.total": "10", "assessment.sins.location": "junctional", "assessment.sins.pain": "mechanical",
            "assessment.sins.bone_lesion": "lytic", "assessment.sins.alignment": "normal", "assessment.sins.collapse": "none",
            "assessment.sins.posterolateral": "none"}
    for url, words in (("/", "Is 10, but the six SINS components add up to 8"),
                       ("/fr/", "Vaut 10, mais les six composantes du SINS totalisent 8")):
        page = client.post(url, data=data)
        html = page.get_data(as_text=True)
        assert page.status_code == 422 and words in html and "“”" not in html and "«  »" not in html

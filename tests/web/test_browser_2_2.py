"""The questions and words of case format 2.2 in a real browser (Debian's headless Chromium), in both
languages: screenshots of the groups that hold the new questions and of a result that uses them."""

from __future__ import annotations

from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from test_browser import fill, submit  # the same folder: the form's own helpers

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"

ANSWERS = {
    "patient.cancer.history": "current", "patient.cancer.spinal_metastases": "true",
    "patient.treatments.corticosteroids": "false", "patient.treatments.long_term_corticosteroids": "true",
    "patient.treatments.anticoagulant": "true",
    "presentation.focal_vertebral_pain.present": "true", "presentation.focal_vertebral_pain.region": "thoracolumbar",
    "presentation.weakness.present": "true", "presentation.weakness.onset_hours": "2",
    "presentation.recent_neuraxial_procedure": "false",
    "assessment.mri_contraindicated": "true",
    "labs.corrected_calcium_mmol_l": "2.1", "presentation.hypocalcaemia_symptoms": "true",
    "presentation.hypercalcaemia_symptoms": "false", "labs.platelets_10e9_l": "40",
}
EXPECTED = {
    "en": {"groups": {"group-cancer": ["Corticosteroids started for this episode", "Long-term corticosteroids",
                                       "On anticoagulation"],
                      "group-infection": ["Spinal procedure in the last 7 days"],
                      "group-imaging": ["MRI cannot be done"],
                      "group-labs": ["Symptoms of low calcium", "Symptoms of high calcium", "Platelets (10⁹/L)"]},
           "region": "Thoracolumbar (T11-L1, the conus)",
           "result": ["EMERGENCY", "Whole-spine CT within 4 hours of the request (MRI contraindicated)",
                      "consider an epidural haematoma", "Give intravenous calcium now"]},
    "fr": {"groups": {"group-cancer": ["Corticoïdes débutés pour cet épisode", "Corticothérapie au long cours",
                                       "Sous anticoagulant"],
                      "group-infection": ["Geste rachidien dans les 7 derniers jours"],
                      "group-imaging": ["IRM impossible"],
                      "group-labs": ["Symptômes d'hypocalcémie", "Symptômes d'hypercalcémie", "Plaquettes (10⁹/L)"]},
           "region": "Thoraco-lombaire (T11-L1, le cône)",
           "result": ["URGENCE IMMÉDIATE", "Scanner du rachis entier dans les 4 heures suivant la demande",
                      "penser à un hématome épidural", "Calcium par voie intraveineuse maintenant"]},
}


def _text(driver, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text.replace("\u00a0", " ")


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_questions_and_result_of_case_format_2_2_in_the_browser(browser, live_url, lang):
    browser.set_window_size(1280, 1800)
    browser.get(live_url + ("/" if lang == "en" else "/fr/"))
    fill(browser, ANSWERS)
    expected = EXPECTED[lang]
    for group, labels in expected["groups"].items():
        element = browser.find_element(By.ID, group)
        browser.execute_script("arguments[0].scrollIntoView({block: 'start'});", element)
        for label in labels:
            assert label in _text(browser, group), (group, label)
        element.screenshot(str(SCREENSHOTS / f"questions-2-2-{lang}-{group.removeprefix('group-')}.png"))
    region = browser.find_element(By.ID, "f-presentation-focal_vertebral_pain-region-wrap")
    if region.find_elements(By.TAG_NAME, "select"):
        chosen = Select(region.find_element(By.TAG_NAME, "select")).first_selected_option.text
    else:
        checked = region.find_element(By.CSS_SELECTOR, "input:checked")
        chosen = checked.find_element(By.XPATH, "./ancestor::label").text
    assert chosen.strip() == expected["region"]
    submit(browser)
    banner = browser.find_elements(By.ID, "urgency-banner")
    assert banner, browser.find_element(By.TAG_NAME, "body").text[:500]
    page = browser.find_element(By.TAG_NAME, "body").text.replace("\u00a0", " ")
    for words in expected["result"]:
        assert words in page, words
    # the answers stay on screen
    assert browser.find_element(By.CSS_SELECTOR, 'input[name="patient.treatments.anticoagulant"][value="true"]') \
        .is_selected()
    assert browser.find_element(By.NAME, "labs.platelets_10e9_l").get_attribute("value") in ("40", "40.0")
    browser.execute_script("window.scrollTo(0, 0);")
    browser.save_screenshot(str(SCREENSHOTS / f"result-2-2-{lang}.png"))

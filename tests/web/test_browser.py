"""The form in a real browser (Debian's headless Chromium via Selenium), in English and French."""

from __future__ import annotations

from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.support.ui import Select, WebDriverWait

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"


def fill(driver, answers: dict) -> None:
    for name, value in answers.items():
        control = driver.find_elements(By.NAME, name)
        kind = control[0].get_attribute("type")
        if kind == "radio":
            driver.find_element(By.CSS_SELECTOR, f'input[name="{name}"][value="{value}"]').click()
        elif control[0].tag_name == "select":
            Select(control[0]).select_by_value(value)
        else:
            control[0].clear()
            control[0].send_keys(value)


def submit(driver, key=None) -> None:
    """Submit and wait for the answer page (the old page must be gone before anything is read)."""
    driver.execute_script("window.__oldPage = true;")
    button = driver.find_element(By.ID, "submit")
    button.send_keys(key) if key else button.click()
    # A new document has no __oldPage; chromedriver may raise while the page is being replaced.
    WebDriverWait(driver, 15, ignored_exceptions=(WebDriverException,)).until(
        lambda d: d.execute_script("return window.__oldPage !== true && document.readyState === 'complete';"))


CASES = {
    "emergency": ({"patient.cancer.history": "current", "patient.cancer.primary": "prostate",
                   "presentation.focal_vertebral_pain.present": "true", "presentation.weakness.present": "true",
                   "presentation.weakness.limbs": "legs", "presentation.weakness.bilateral": "true",
                   "presentation.weakness.progressive": "true"},
                  {"en": ("EMERGENCY", "Call the MSCC coordinator now"),
                   "fr": ("URGENCE VITALE", "Appeler le coordinateur CMM")}),
    "urgent": ({"patient.cancer.history": "current", "patient.cancer.primary": "breast",
                "presentation.focal_vertebral_pain.present": "true"},
               {"en": ("URGENT", "Contact the MSCC coordinator within 24 hours"),
                "fr": ("URGENT", "Contacter le coordinateur CMM dans les 24 heures")}),
    "routine": ({"patient.cancer.history": "current", "patient.cancer.bone_metastases": "true",
                 "patient.treatments.bone_modifying_agent": "denosumab",
                 "presentation.focal_vertebral_pain.present": "false", "presentation.weakness.present": "false",
                 "presentation.paraesthesia.present": "false", "presentation.sphincter_disturbance.present": "false",
                 "presentation.sciatica.present": "false", "presentation.gait_difficulty": "false"},
                {"en": ("ROUTINE", "Dental review once a year"),
                 "fr": ("NON URGENT", "Contrôle dentaire une fois par an")}),
}


@pytest.mark.parametrize("lang", ["en", "fr"])
@pytest.mark.parametrize("kind", ["emergency", "urgent", "routine"])
def test_triage_in_the_browser(browser, live_url, lang, kind):
    answers, expected = CASES[kind]
    browser.get(live_url + ("/" if lang == "en" else "/fr/"))
    fill(browser, answers)
    submit(browser)
    banner = browser.find_element(By.ID, "urgency-banner")
    level, action = expected[lang]
    assert banner.find_element(By.CLASS_NAME, "level").text == level
    assert action in browser.find_element(By.ID, "result").text
    # the answers stay on screen, editable
    first = next(iter(answers))
    control = browser.find_elements(By.NAME, first)[0]
    if control.get_attribute("type") != "radio":
        assert Select(control).first_selected_option.get_attribute("value") == answers[first]
    browser.save_screenshot(str(SCREENSHOTS / f"{kind}-{lang}.png"))


@pytest.mark.parametrize("lang, message", [("en", "Must be ≤ 120."), ("fr", "Doit être ≤ 120.")])
def test_invalid_input_in_the_browser(browser, live_url, lang, message):
    browser.get(live_url + ("/" if lang == "en" else "/fr/"))
    fill(browser, {"patient.age_years": "121", "patient.cancer.history": "past",
                   "presentation.gait_difficulty": "true"})
    submit(browser)
    assert browser.find_element(By.ID, "f-patient-age_years-err").text == message
    assert browser.find_element(By.ID, "f-patient-age_years").get_attribute("value") == "121"
    assert Select(browser.find_element(By.NAME, "patient.cancer.history")).first_selected_option.get_attribute("value") == "past"
    assert browser.find_element(By.CSS_SELECTOR, 'input[name="presentation.gait_difficulty"][value="true"]').is_selected()
    assert browser.find_elements(By.ID, "urgency-banner") == []
    browser.save_screenshot(str(SCREENSHOTS / f"invalid-{lang}.png"))


def test_keyboard_only(browser, live_url):
    browser.get(live_url + "/")
    body = browser.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.TAB)  # the language link comes first
    assert browser.switch_to.active_element.get_attribute("hreflang") == "fr"
    age = browser.find_element(By.ID, "f-patient-age_years")
    age.send_keys("70")
    age.send_keys(Keys.TAB)  # next control: the cancer history select
    assert browser.switch_to.active_element.get_attribute("name") == "patient.cancer.history"
    browser.find_element(By.CSS_SELECTOR, 'input[name="presentation.gait_difficulty"][value="true"]').send_keys(Keys.SPACE)
    submit(browser, Keys.ENTER)
    assert browser.find_element(By.CSS_SELECTOR, "#urgency-banner .level").text == "EMERGENCY"


NEW_QUESTIONS = {"presentation.focal_vertebral_pain.present": "true", "presentation.focal_vertebral_pain.band_like": "true",
                 "presentation.paraesthesia.bilateral_legs": "true",
                 "presentation.sphincter_disturbance.altered_urinary_sensation": "false",
                 "presentation.sexual_dysfunction": "false", "presentation.infection_suspected": "true",
                 "presentation.complete_paraplegia_hours": "0", "assessment.new_findings_since_mri": "true",
                 "patient.cancer.history": "current"}


@pytest.mark.parametrize("lang, help_text", [("en", "38 °C"), ("fr", "38 °C")])
def test_questions_of_case_format_2_1_in_the_browser(browser, live_url, lang, help_text):
    browser.get(live_url + ("/" if lang == "en" else "/fr/"))
    infection = browser.find_element(By.ID, "group-infection")
    assert help_text in infection.text
    fill(browser, NEW_QUESTIONS)
    browser.find_element(By.ID, "group-sphincters").location_once_scrolled_into_view
    browser.save_screenshot(str(SCREENSHOTS / f"questions-2-1-{lang}.png"))
    submit(browser)
    assert browser.find_elements(By.ID, "urgency-banner") or browser.find_elements(By.ID, "error-summary")
    for name, value in NEW_QUESTIONS.items():
        control = browser.find_elements(By.NAME, name)[0]
        if control.get_attribute("type") == "radio":
            assert browser.find_element(By.CSS_SELECTOR, f'input[name="{name}"][value="{value}"]').is_selected(), name
        elif control.tag_name == "select":
            assert Select(control).first_selected_option.get_attribute("value") == value, name
        else:
            assert control.get_attribute("value") == value, name
    browser.save_screenshot(str(SCREENSHOTS / f"result-2-1-{lang}.png"))


@pytest.mark.parametrize("lang, title", [("en", "No result: the triage engine failed."),
                                         ("fr", "Aucun résultat : le moteur de triage a échoué.")])
def test_engine_failure_in_the_browser(browser, live_url, monkeypatch, lang, title):
    import triage

    def fail(self, case):  # fault injection: the engine fails whatever the case
        raise triage.EngineError("injected")

    monkeypatch.setattr(triage.Ruleset, "evaluate", fail)
    browser.get(live_url + ("/" if lang == "en" else "/fr/"))
    fill(browser, {"presentation.weakness.present": "true"})
    submit(browser)
    box = browser.find_element(By.ID, "engine-error")
    assert title in box.text and "{" not in browser.find_element(By.TAG_NAME, "body").text[:200]
    assert browser.find_element(By.CSS_SELECTOR, 'input[name="presentation.weakness.present"][value="true"]').is_selected()
    browser.save_screenshot(str(SCREENSHOTS / f"engine-error-{lang}.png"))


def test_print_button_works_under_the_content_security_policy(browser, live_url):
    # No inline script (the CSP forbids it): the button is wired by print.js and shown only then.
    browser.get(live_url + "/")
    fill(browser, CASES["urgent"][0])
    submit(browser)
    button = browser.find_element(By.ID, "print")
    assert button.is_displayed()
    browser.execute_script("window.__printed = false; window.print = function () { window.__printed = true; };")
    button.click()
    assert browser.execute_script("return window.__printed;") is True

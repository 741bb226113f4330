"""The form in a real browser (Debian's headless Chromium via Selenium), in English and French."""

from __future__ import annotations

from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.support.ui import Select, WebDriverWait

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"


@pytest.fixture(autouse=True)
def desktop_window(browser):
    """Every test starts at 1280 px wide (a test that narrows the window does not leak into the next)."""
    browser.set_window_size(1280, 1800)
    yield


def fill(driver, answers: dict) -> None:
    for name, value in answers.items():
        control = driver.find_elements(By.NAME, name)
        kind = control[0].get_attribute("type")
        # the sticky Triage bar covers the bottom of the window: bring each control to the middle first
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", control[0])
        if kind == "radio":
            driver.find_element(By.CSS_SELECTOR, f'input[name="{name}"][value="{value}"]').click()
        elif control[0].tag_name == "select":
            Select(control[0]).select_by_value(value)
        else:
            control[0].clear()
            control[0].send_keys(value)


def submit(driver, key=None, button_id="submit") -> None:
    """Submit and wait for the answer page (the old page must be gone before anything is read)."""
    driver.execute_script("window.__oldPage = true;")
    button = driver.find_element(By.ID, button_id)
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
                   "fr": ("URGENCE IMMÉDIATE", "Appeler le coordinateur CMM")}),
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
    body.send_keys(Keys.TAB)  # the language button comes first
    assert browser.switch_to.active_element.get_attribute("id") == "switch-lang"
    age = browser.find_element(By.ID, "f-patient-age_years")
    age.send_keys("70")
    age.send_keys(Keys.TAB)  # next control: the cancer history select
    assert browser.switch_to.active_element.get_attribute("name") == "patient.cancer.history"
    browser.find_element(By.CSS_SELECTOR, 'input[name="presentation.gait_difficulty"][value="true"]').send_keys(Keys.SPACE)
    submit(browser, Keys.ENTER)
    assert browser.find_element(By.CSS_SELECTOR, "#urgency-banner .level").text == "EMERGENCY"


NEW_QUESTIONS = {"presentation.focal_vertebral_pain.present": "true", "presentation.focal_vertebral_pain.band_like": "true",
                 "presentation.paraesthesia.present": "true", "presentation.paraesthesia.bilateral_legs": "true",
                 "presentation.sphincter_disturbance.present": "true",
                 "presentation.sphincter_disturbance.altered_urinary_sensation": "false",
                 "presentation.sexual_dysfunction": "false", "presentation.infection_suspected": "true",
                 "presentation.gait_difficulty": "true",
                 "presentation.complete_paraplegia_hours": "0", "assessment.mri_performed": "true",
                 "assessment.new_findings_since_mri": "true", "patient.cancer.history": "current"}


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


# ------------------------------------------------------------------------------------ issue 13: ward and phone

WIDTHS = (320, 390, 1280)
CAUDA_EQUINA = {"patient.cancer.history": "current", "patient.cancer.primary": "prostate",
                "presentation.focal_vertebral_pain.present": "true",
                "presentation.sphincter_disturbance.present": "true",
                "presentation.sphincter_disturbance.urinary_retention": "true"}
PAGES = {   # page -> answers (None: the empty form, no submit)
    "empty-form": None,
    "emergency": CASES["emergency"][0],
    "cauda-equina": CAUDA_EQUINA,
    "urgent": CASES["urgent"][0],
    "routine": CASES["routine"][0],
    "routine-so-far": {},
    "invalid": {"patient.age_years": "121", "patient.cancer.history": "past", "presentation.gait_difficulty": "true",
                "assessment.sins.location": "junctional"},
    "long-values": {"presentation.weakness.present": "true", "presentation.weakness.onset_hours": "9" * 60},
}


def overflow(driver) -> dict:
    """Horizontal overflow of the page: scrollWidth beyond the viewport (the window less its scroll bar)."""
    return driver.execute_script(
        "var d = document.documentElement;"
        "return {window: window.innerWidth, client: d.clientWidth, scroll: d.scrollWidth,"
        "        body: document.body.scrollWidth};")


def open_page(driver, live_url, lang, answers):
    driver.get(live_url + ("/" if lang == "en" else "/fr/"))
    if answers is not None:
        fill(driver, answers)
        submit(driver)


def resize(driver, width: int, height: int) -> None:
    """Resize the window and wait until the page sees the new width (a loaded machine lags behind)."""
    import time

    driver.set_window_size(width, height)
    deadline = time.monotonic() + 10
    while driver.execute_script("return window.innerWidth;") != width and time.monotonic() < deadline:
        time.sleep(0.05)
        driver.set_window_size(width, height)


def check_widths(driver, name, lang, shots=(390, 1280)) -> list:
    problems = []
    for width in WIDTHS:
        resize(driver, width, 900)
        size = overflow(driver)
        assert size["window"] == width, size   # the window really is that narrow
        if size["scroll"] > size["client"] or size["body"] > size["client"]:
            problems.append((name, lang, width, size))
        if width in shots:
            height = driver.execute_script("return document.documentElement.scrollHeight;")
            driver.set_window_size(width, min(height, 6000))
            driver.save_screenshot(str(SCREENSHOTS / f"{name}-{lang}-{width}.png"))
    return problems


@pytest.mark.parametrize("lang", ["en", "fr"])
@pytest.mark.parametrize("page", list(PAGES))
def test_no_horizontal_scrolling_from_320_px_to_desktop(browser, live_url, lang, page):
    open_page(browser, live_url, lang, PAGES[page])
    assert check_widths(browser, page, lang) == []


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_no_horizontal_scrolling_on_the_failure_pages(browser, live_url, monkeypatch, lang):
    import triage

    def engine_fails(self, case):
        raise triage.EngineError("injected")

    def page_fails(self, case):
        raise RuntimeError("injected")

    problems = []
    for name, failure, marker in (("engine-failure", engine_fails, "engine-error"), ("error-page", page_fails, "page-error")):
        monkeypatch.setattr(triage.Ruleset, "evaluate", failure)
        browser.set_window_size(1280, 1800)
        open_page(browser, live_url, lang, {"presentation.weakness.present": "true"})
        assert browser.find_elements(By.ID, marker), name
        problems += check_widths(browser, name, lang)
    assert problems == []


def test_follow_up_questions_appear_when_their_question_is_yes(browser, live_url):
    browser.get(live_url + "/")
    follow_up = browser.find_element(By.ID, "f-presentation-weakness-bilateral")
    gate = 'input[name="presentation.weakness.present"][value="{}"]'
    assert not follow_up.is_displayed()
    browser.find_element(By.CSS_SELECTOR, gate.format("true")).click()
    assert follow_up.is_displayed()
    browser.find_element(By.CSS_SELECTOR, gate.format("false")).click()
    assert not follow_up.is_displayed()
    # an answered follow-up is never hidden, even when its question goes back to "No" (the
    # contradiction is then shown next to it, not carried in a hidden field)
    browser.find_element(By.CSS_SELECTOR, gate.format("true")).click()
    browser.find_element(By.CSS_SELECTOR, 'input[name="presentation.weakness.bilateral"][value="true"]').click()
    browser.find_element(By.CSS_SELECTOR, gate.format("false")).click()
    assert follow_up.is_displayed()
    # an independent question of the same group is always asked
    assert browser.find_element(By.ID, "f-presentation-sexual_dysfunction").is_displayed()


def test_a_routine_case_takes_at_most_8_clicks_and_the_button_stays_in_reach(browser, live_url):
    browser.set_window_size(390, 800)
    browser.get(live_url + "/")
    clicks = 0
    for question in ("presentation.focal_vertebral_pain.present", "presentation.weakness.present",
                     "presentation.paraesthesia.present", "presentation.sphincter_disturbance.present",
                     "presentation.sciatica.present", "presentation.gait_difficulty"):
        radio = browser.find_element(By.CSS_SELECTOR, f'input[name="{question}"][value="false"]')
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", radio)
        radio.click()
        clicks += 1
        # the Triage button is on screen wherever the form is scrolled to
        assert browser.execute_script(
            "var r = document.getElementById('submit').getBoundingClientRect();"
            "return r.top >= 0 && r.bottom <= window.innerHeight;"), question
    submit(browser)
    clicks += 1
    assert clicks <= 8
    banner = browser.find_element(By.ID, "urgency-banner")
    assert banner.find_element(By.CLASS_NAME, "level").text == "ROUTINE"
    assert not browser.find_elements(By.ID, "ask-first") and not browser.find_elements(By.CSS_SELECTOR, ".so-far")


@pytest.mark.parametrize("lang, level, so_far, raise_to", [("en", "ROUTINE", "SO FAR", "EMERGENCY"),
                                                           ("fr", "NON URGENT", "POUR L'INSTANT", "URGENCE IMMÉDIATE")])
def test_the_banner_never_reassures_early(browser, live_url, lang, level, so_far, raise_to):
    # one symptom group answered "No", the others not asked: routine "so far" (nothing asked at all: issue 24 below)
    open_page(browser, live_url, lang, {"presentation.sciatica.present": "false"})
    banner = browser.find_element(By.ID, "urgency-banner")
    assert banner.find_element(By.CLASS_NAME, "level").text == level
    assert banner.find_element(By.CLASS_NAME, "so-far").text == so_far
    ask = banner.find_element(By.ID, "ask-first")
    assert raise_to in ask.text
    assert browser.find_elements(By.CSS_SELECTOR, "ul.unknowns li")


@pytest.mark.parametrize("lang, texts", [
    ("en", ["Urinary retention: Yes", "Whole-spine MRI within 4 hours of the request", "Within 4 hours",
            "CRITICAL: Cauda equina red flags", "Ruleset: mscc 2.2.0", "Triaged on 20",
            "Decision support for clinicians"]),
    ("fr", ["Rétention urinaire : Oui", "IRM du rachis entier dans les 4 heures suivant la demande", "Dans les 4 heures",
            "CRITIQUE : Signes d'alerte de syndrome de la queue de cheval", "Jeu de règles : mscc 2.2.0", "Trié le 20",
            "Aide à la décision pour les cliniciens"]),
])
def test_copy_for_the_notes_of_a_cauda_equina_case(browser, live_url, lang, texts):
    open_page(browser, live_url, lang, CAUDA_EQUINA)
    # the critical flag sits in the banner, above the actions
    banner = browser.find_element(By.ID, "urgency-banner")
    assert banner.find_element(By.CSS_SELECTOR, '[data-id="cauda_equina_red_flags"]').is_displayed()
    browser.execute_script(
        "window.__copied = null;"
        "Object.defineProperty(navigator, 'clipboard', {configurable: true, value: {writeText: function (t) {"
        "  window.__copied = t; return Promise.resolve(); }}});")
    button = browser.find_element(By.ID, "copy-note")
    assert button.is_displayed()
    button.click()
    WebDriverWait(browser, 5).until(lambda d: d.execute_script("return window.__copied !== null;"))
    copied = browser.execute_script("return window.__copied;").replace("\u00a0", " ")
    for text in texts:
        assert text in copied, (text, copied)
    assert copied.count(texts[-1]) == 1   # the disclaimer once
    assert browser.find_element(By.ID, "copy-status").text


def test_the_printout_is_the_note_in_black_and_white(browser, live_url):
    open_page(browser, live_url, "en", CAUDA_EQUINA)
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
    try:
        note = browser.find_element(By.ID, "note-text")
        assert note.is_displayed() and "Urinary retention: Yes" in note.text and "Triaged on" in note.text
        assert not browser.find_element(By.ID, "case-form").is_displayed()
        assert not browser.find_element(By.ID, "urgency-banner").is_displayed()
        visible = [d for d in browser.find_elements(By.CLASS_NAME, "disclaimer") if d.is_displayed()]
        assert visible == [] and note.text.count("does not replace clinical judgement") == 1
        colours = browser.execute_script(
            "var s = getComputedStyle(document.getElementById('note-text'));"
            "return [s.color, s.backgroundColor];")
        assert colours == ["rgb(0, 0, 0)", "rgb(255, 255, 255)"]
        browser.save_screenshot(str(SCREENSHOTS / "print-en.png"))
    finally:
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": ""})


def test_switching_language_keeps_the_answers(browser, live_url):
    browser.get(live_url + "/")
    fill(browser, {"patient.age_years": "70", "patient.cancer.history": "past"})
    submit(browser, button_id="switch-lang")   # not triaged yet: the French form, same answers
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "fr"
    assert browser.find_element(By.ID, "f-patient-age_years").get_attribute("value") == "70"
    assert not browser.find_elements(By.ID, "result") and not browser.find_elements(By.ID, "error-summary")
    fill(browser, CASES["urgent"][0])
    submit(browser)
    assert browser.find_element(By.CSS_SELECTOR, "#urgency-banner .level").text == "URGENT"
    submit(browser, button_id="switch-lang")   # triaged: the English result of the same answers
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
    assert "Contact the MSCC coordinator within 24 hours" in browser.find_element(By.ID, "result").text
    assert browser.find_element(By.ID, "f-patient-age_years").get_attribute("value") == "70"


def test_enter_in_a_field_triages_it_does_not_switch_language(browser, live_url):
    browser.get(live_url + "/")
    fill(browser, {"presentation.weakness.present": "true"})
    age = browser.find_element(By.ID, "f-patient-age_years")
    age.send_keys("70")
    browser.execute_script("window.__oldPage = true;")
    age.send_keys(Keys.ENTER)
    WebDriverWait(browser, 15, ignored_exceptions=(WebDriverException,)).until(
        lambda d: d.execute_script("return window.__oldPage !== true && document.readyState === 'complete';"))
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
    assert browser.find_element(By.CSS_SELECTOR, "#urgency-banner .level").text == "EMERGENCY"


# ------------------------------------------------------------------------------------ issue 24: the form at 3 a.m.

PHONE = (390, 844)   # the first screen of a common phone, in CSS px
URL = {"en": "/", "fr": "/fr/"}
NOT_ENOUGH = {"en": "Not enough answered yet", "fr": "Pas encore assez de réponses"}


@pytest.mark.parametrize("lang", ["en", "fr"])
@pytest.mark.parametrize("width", WIDTHS)
def test_an_empty_form_says_not_enough_answered_yet_never_an_urgency(browser, live_url, lang, width):
    resize(browser, width, 900)
    browser.get(live_url + URL[lang])
    submit(browser)
    box = browser.find_element(By.ID, "not-enough")
    assert box.find_element(By.CLASS_NAME, "level").text.replace("\u00a0", " ").lower() == NOT_ENOUGH[lang].lower()
    assert browser.find_elements(By.ID, "urgency-banner") == [] and browser.find_elements(By.CSS_SELECTOR, ".so-far") == []
    body = browser.find_element(By.TAG_NAME, "body").text
    for word in ("ROUTINE", "NON URGENT", "No MSCC pathway today", "Pas de parcours"):
        assert word not in body, word
    # the questions to ask first: the result's unknowns, each a link to its question
    asked = [li.get_attribute("data-field") for li in browser.find_elements(By.CSS_SELECTOR, "#result ul.unknowns li")]
    assert "presentation.weakness.present" in asked and "presentation.focal_vertebral_pain.present" in asked
    assert overflow(browser)["scroll"] <= overflow(browser)["client"]
    browser.save_screenshot(str(SCREENSHOTS / f"not-enough-{lang}-{width}.png"))


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_labs_alone_that_make_an_emergency_show_the_emergency(browser, live_url, lang):
    open_page(browser, live_url, lang, {"labs.corrected_calcium_mmol_l": "3.6" if lang == "en" else "3,6"})
    assert browser.find_element(By.CSS_SELECTOR, "#urgency-banner .level").text in ("EMERGENCY", "URGENCE IMMÉDIATE")
    assert browser.find_elements(By.ID, "not-enough") == []
    assert browser.find_elements(By.CSS_SELECTOR, "#now-actions li")   # what to do now, not hidden


def answer_targets(driver) -> list:
    """Every visible answer row: its question, the top of each of its buttons and each button's size."""
    return driver.execute_script("""
        var rows = [];
        document.querySelectorAll('fieldset.tri, fieldset.choice').forEach(function (f) {
          if (!f.offsetParent) { return; }
          var labels = Array.prototype.map.call(f.querySelectorAll('label.answer'), function (l) {
            var r = l.getBoundingClientRect(), s = l.querySelector('span');
            return {top: r.top, w: r.width, h: r.height, text: l.textContent.trim(),
                    clipped: l.scrollWidth > l.clientWidth + 1 || s.getBoundingClientRect().right > r.right + 0.5}; });
          rows.push({id: f.id, kind: f.className, labels: labels});
        });
        return rows;""")


@pytest.mark.parametrize("lang", ["en", "fr"])
@pytest.mark.parametrize("width", WIDTHS)
def test_answers_on_one_row_each_target_at_least_44_px(browser, live_url, lang, width):
    resize(browser, width, 900)
    browser.get(live_url + URL[lang])
    # open every follow-up question of the symptoms (the narrowest rows, indented)
    fill(browser, {q: "true" for q in ("presentation.focal_vertebral_pain.present", "presentation.weakness.present",
                                        "presentation.paraesthesia.present", "presentation.sphincter_disturbance.present",
                                        "presentation.sciatica.present", "presentation.gait_difficulty",
                                        "assessment.mri_performed")})
    rows = answer_targets(browser)
    tri = [r for r in rows if r["kind"] == "tri"]
    assert len(tri) >= 40
    smallest = min(min(lab["w"], lab["h"]) for r in rows for lab in r["labels"])
    assert smallest >= 44, [(r["id"], lab) for r in rows for lab in r["labels"] if min(lab["w"], lab["h"]) < 44]
    wrapped = [r["id"] for r in tri if max(lab["top"] for lab in r["labels"]) - min(lab["top"] for lab in r["labels"]) > 1]
    assert wrapped == []   # Yes · No · Not assessed side by side
    clipped = [(r["id"], lab["text"]) for r in rows for lab in r["labels"] if lab["clipped"]]
    assert clipped == []   # every answer's word inside its button
    assert overflow(browser)["scroll"] <= overflow(browser)["client"]
    group = browser.find_element(By.ID, "group-weakness")
    browser.execute_script("arguments[0].scrollIntoView({block: 'start'});", group)
    browser.save_screenshot(str(SCREENSHOTS / f"answers-{lang}-{width}.png"))


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_new_case_is_away_from_triage_and_asks_before_it_clears(browser, live_url, lang):
    resize(browser, *PHONE)
    answers = CASES["urgent"][0]
    open_page(browser, live_url, lang, answers)
    gap = browser.execute_script(
        "var a = document.getElementById('new-case').getBoundingClientRect(),"
        "    b = document.getElementById('submit').getBoundingClientRect();"
        "return Math.max(b.top - a.bottom, a.top - b.bottom);")
    assert gap >= 300, gap   # the whole result and form between them, never side by side
    new_case = browser.find_element(By.ID, "new-case")
    assert new_case.size["height"] >= 44
    submit(browser, button_id="new-case")
    assert browser.find_element(By.ID, "confirm-new").is_displayed()
    browser.save_screenshot(str(SCREENSHOTS / f"new-case-{lang}.png"))
    assert browser.find_elements(By.ID, "case-form") == []   # nothing cleared yet: a question, not a form
    submit(browser, button_id="keep-answers")   # "No": the answers and the result come back
    assert Select(browser.find_element(By.NAME, "patient.cancer.history")).first_selected_option.get_attribute("value") == "current"
    assert browser.find_element(By.CSS_SELECTOR, "#urgency-banner .level").text == "URGENT"
    submit(browser, button_id="new-case")
    submit(browser, button_id="confirm-clear")   # "Yes": an empty form
    assert Select(browser.find_element(By.NAME, "patient.cancer.history")).first_selected_option.get_attribute("value") == ""
    assert browser.find_element(By.CSS_SELECTOR, 'input[name="presentation.focal_vertebral_pain.present"][value=""]').is_selected()
    assert browser.find_elements(By.ID, "result") == []


def viewport(driver, width: int, height: int) -> None:
    """Make the page's viewport (not the window) width x height CSS px."""
    resize(driver, width, height)
    extra = driver.execute_script("return window.outerHeight - window.innerHeight;")
    resize(driver, width, height + extra)
    assert driver.execute_script("return [window.innerWidth, window.innerHeight];") == [width, height]


# The first screen of a phone: 390 x 844 CSS px, less the browser's bars (about 140 px): 700 px of page.
FIRST_SCREEN = (390, 700)
NOW_FITS = {}


@pytest.mark.parametrize("lang", ["en", "fr"])
@pytest.mark.parametrize("case", ["cauda-equina", "emergency"])
def test_an_emergency_shows_its_now_actions_on_the_first_phone_screen(browser, live_url, lang, case):
    width, height = FIRST_SCREEN
    viewport(browser, width, height)
    open_page(browser, live_url, lang, CAUDA_EQUINA if case == "cauda-equina" else CASES["emergency"][0])
    browser.execute_script("window.scrollTo(0, 0);")
    now = browser.find_elements(By.CSS_SELECTOR, "#now-actions li")
    assert len(now) >= 5
    bottom = browser.execute_script(
        "var items = document.querySelectorAll('#now-actions li');"
        "return items[items.length - 1].getBoundingClientRect().bottom;")
    NOW_FITS[(case, lang)] = round(bottom)
    print(f"now-actions bottom {case} {lang}: {round(bottom)} of {height} px")
    browser.save_screenshot(str(SCREENSHOTS / f"first-screen-{case}-{lang}.png"))
    assert bottom <= height, (bottom, height)
    # the banner and the critical flag come first, above the actions
    banner = browser.find_element(By.ID, "urgency-banner")
    assert banner.location["y"] < now[0].location["y"]
    assert banner.find_element(By.CSS_SELECTOR, '[data-id="cauda_equina_red_flags"]').is_displayed()


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_sources_are_listed_once_and_actions_refer_to_their_numbers(browser, live_url, lang):
    open_page(browser, live_url, lang, CASES["emergency"][0])
    listed = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#sources li")]
    assert listed and len(listed) == len(set(listed))
    assert listed[0].startswith("NICE NG234")   # current national guidance first
    assert "NICE CG75" in " ".join(listed[-2:]) or "CG75" not in " ".join(listed)   # superseded: after the others
    result = browser.find_element(By.ID, "result")
    note = browser.find_element(By.ID, "note").text
    shown = result.text.replace(note, "")
    for text in listed:
        assert shown.count(text) == 1, text
    for li in browser.find_elements(By.CSS_SELECTOR, "#now-actions li, #later-actions li"):
        refs = li.find_elements(By.CSS_SELECTOR, ".refs a")
        assert refs and all(r.get_attribute("href").split("#")[1].startswith("src-") for r in refs)
    # the long explanation is folded
    assert browser.find_element(By.CSS_SELECTOR, "details.why").get_attribute("open") is None


# Taps on a phone: a yes/no answer or a short choice is one tap, a drop-down list two (open it, pick),
# Triage one. The README's form section gives these counts.
TAP_CASES = {
    "breast-leg-weakness": ([("patient.cancer.history", "current"), ("patient.cancer.primary", "breast"),
                             ("presentation.weakness.present", "true"), ("presentation.weakness.limbs", "legs")],
                            10, "emergency"),
    "no-cancer-back-pain-retention": ([("patient.cancer.history", "none"),
                                       ("presentation.focal_vertebral_pain.present", "true"),
                                       ("presentation.focal_vertebral_pain.region", "lumbar"),
                                       ("presentation.sphincter_disturbance.present", "true"),
                                       ("presentation.sphincter_disturbance.urinary_retention", "true")],
                                      8, "emergency"),
    "prostate-thoracic-pain": ([("patient.cancer.history", "current"), ("patient.cancer.primary", "prostate"),
                                ("presentation.focal_vertebral_pain.present", "true"),
                                ("presentation.focal_vertebral_pain.region", "thoracic"),
                                ("presentation.focal_vertebral_pain.band_like", "false"),
                                ("presentation.weakness.present", "false"), ("presentation.paraesthesia.present", "false"),
                                ("presentation.sphincter_disturbance.present", "false"),
                                ("presentation.sciatica.present", "false"), ("presentation.gait_difficulty", "false"),
                                ("presentation.infection_suspected", "false")],
                               14, "urgent"),
}
TAP_COUNTS = {}


@pytest.mark.parametrize("lang", ["en", "fr"])
@pytest.mark.parametrize("case", list(TAP_CASES))
def test_common_cases_take_few_taps_and_leave_no_so_far(browser, live_url, case, lang):
    answers, most, urgency = TAP_CASES[case]
    resize(browser, *PHONE)
    browser.get(live_url + URL[lang])
    taps = 0
    for name, value in answers:
        control = browser.find_element(By.NAME, name)
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", control)
        if control.tag_name == "select":
            Select(control).select_by_value(value)
            taps += 2
        else:
            target = browser.find_element(By.CSS_SELECTOR, f'input[name="{name}"][value="{value}"]')
            target.find_element(By.XPATH, "..").click()   # the whole button is the target
            assert target.is_selected(), name
            taps += 1
    submit(browser)
    taps += 1
    TAP_COUNTS[case] = taps
    print(f"taps {case} {lang}: {taps}")
    browser.save_screenshot(str(SCREENSHOTS / f"taps-{case}-{lang}.png"))
    assert taps <= most, (case, taps)
    banner = browser.find_element(By.ID, "urgency-banner")
    assert banner.get_attribute("class").split()[1] == f"banner-{urgency}"
    assert browser.find_elements(By.CSS_SELECTOR, ".so-far") == [], case   # nothing left that could raise it
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("<!-- section:form -->"):readme.index("<!-- section:record -->")]
    assert f"| {case} | {taps} |" in section, (case, taps)   # the README says what the test counts

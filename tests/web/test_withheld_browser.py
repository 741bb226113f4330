"""Issue 25: in the browser, the form says why dexamethasone was not given, in both languages."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By

from test_browser import SCREENSHOTS, fill, submit  # the same folder: the form's own helpers


@pytest.mark.parametrize("lang, heading, reason", [
    ("en", "Not given, and why", "Lymphoma or leukaemia not excluded"),
    ("fr", "Non proposé, et pourquoi", "Lymphome ou leucémie non exclu"),
])
def test_the_form_says_why_dexamethasone_was_held(browser, live_url, lang, heading, reason):
    browser.get(live_url + ("/" if lang == "en" else "/fr/"))
    fill(browser, {"patient.cancer.history": "suspected", "patient.cancer.primary": "lymphoma",
                   "presentation.weakness.present": "true"})
    submit(browser)
    section = browser.find_element(By.ID, "withheld")
    browser.execute_script("arguments[0].open = true; arguments[0].scrollIntoView({block: 'center'});", section)
    assert heading in section.text and reason in section.text
    assert section.find_elements(By.CSS_SELECTOR, 'li[data-id="dexamethasone_16mg"]')
    browser.save_screenshot(str(SCREENSHOTS / f"withheld-{lang}.png"))

"""Issue 16 in a real browser (Debian's headless Chromium via Selenium): the CDS Hooks card's form link opens
the triage form with the findings mapped from the record already selected, only the unknowns left to
answer; after 30 minutes the same link opens an empty form.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait
from werkzeug.serving import make_server

from mscc_triage_api.cds import service as cds_module
from mscc_triage_api import create_app

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
SNOMED = "http://snomed.info/sct"
LEVEL = {"critical": "EMERGENCY", "warning": "URGENT", "info": "ROUTINE"}


@pytest.fixture(scope="module")
def cds_url(tmp_path_factory):
    """A live server whose CDS Hooks service needs no JWT (the explicit development mode)."""
    app = create_app({"CDS_STORE_PATH": str(tmp_path_factory.mktemp("cds") / "cds.sqlite3"),
                      "CDS_ALLOW_UNAUTHENTICATED": True})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)
    server.server_close()


def patient_view() -> dict:
    """Prostate cancer with bone metastases (Conditions) and muscle weakness present (Observation)."""
    def entry(resource: dict) -> dict:
        return {"resource": dict(resource, subject={"reference": "Patient/p1"})}
    conditions = [entry({"resourceType": "Condition", "clinicalStatus": {"coding": [{"code": "active"}]},
                         "code": {"coding": [{"system": SNOMED, "code": code}]}}) for code in ("399068003", "94222008")]
    weakness = entry({"resourceType": "Observation", "status": "final",
                      "code": {"coding": [{"system": SNOMED, "code": "26544005"}]},
                      "valueCodeableConcept": {"coding": [{"system": SNOMED, "code": "52101004"}]}})
    return {"hook": "patient-view", "hookInstance": str(uuid.uuid4()),
            "context": {"userId": "Practitioner/1", "patientId": "p1"},
            "prefetch": {"patient": {"resourceType": "Patient", "id": "p1", "birthDate": "1950-02-01"},
                         "conditions": {"resourceType": "Bundle", "type": "searchset", "entry": conditions},
                         "observations": {"resourceType": "Bundle", "type": "searchset", "entry": [weakness]},
                         "medicationRequests": None, "medicationStatements": None}}


def card_from(cds_url: str) -> dict:
    request = urllib.request.Request(cds_url + "/cds-services/mscc-triage", data=json.dumps(patient_view()).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["cards"][0]


def form_link(card: dict, french: bool = False) -> str:
    return next(link["url"] for link in card["links"]
                if "?from=" in link["url"] and ("/fr/" in link["url"]) == french)


def radio(driver, name: str, value: str):
    return driver.find_element(By.CSS_SELECTOR, f'input[name="{name}"][value="{value}"]')


def select_value(driver, name: str) -> str:
    """The chosen value of a choice: a select, or a row of radio buttons (a short choice)."""
    control = driver.find_element(By.NAME, name)
    if control.tag_name == "select":
        return Select(control).first_selected_option.get_attribute("value")
    return next(r.get_attribute("value") for r in driver.find_elements(By.NAME, name) if r.is_selected())


def open_page(driver, url: str) -> None:
    driver.set_window_size(1280, 1800)
    driver.get(url)
    WebDriverWait(driver, 15).until(lambda d: d.execute_script("return document.readyState === 'complete';"))


@pytest.mark.parametrize("french", [False, True], ids=["en", "fr"])
def test_the_cards_form_link_opens_the_form_with_the_mapped_findings_selected(browser, cds_url, french):
    card = card_from(cds_url)
    url = form_link(card, french)
    assert url.startswith(cds_url) and "prostate" not in url and "399068003" not in url   # no finding in the URL
    open_page(browser, url)
    assert browser.find_element(By.ID, "prefilled").is_displayed()
    # mapped from the record: selected
    assert select_value(browser, "patient.cancer.history") == "current"
    assert select_value(browser, "patient.cancer.primary") == "prostate"
    assert radio(browser, "patient.cancer.bone_metastases", "true").is_selected()
    assert radio(browser, "presentation.weakness.present", "true").is_selected()
    # not in the record: still to answer
    for name in ("presentation.weakness.bilateral", "presentation.sphincter_disturbance.present",
                 "presentation.focal_vertebral_pain.present"):
        assert radio(browser, name, "").is_selected(), name
    browser.save_screenshot(str(SCREENSHOTS / f"prefill-{'fr' if french else 'en'}.png"))
    # the nurse triages from there: the form's answer agrees with the card
    browser.execute_script("window.__oldPage = true;")
    button = browser.find_element(By.ID, "submit")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", button)
    button.click()
    WebDriverWait(browser, 15, ignored_exceptions=(WebDriverException,)).until(
        lambda d: d.execute_script("return window.__oldPage !== true && document.readyState === 'complete';"))
    level = browser.find_element(By.ID, "urgency-banner").find_element(By.CLASS_NAME, "level").text
    if not french:
        assert level == LEVEL[card["indicator"]]
    assert radio(browser, "presentation.weakness.present", "true").is_selected()   # the answers stay


def test_after_30_minutes_the_link_opens_an_empty_form(browser, cds_url, monkeypatch):
    card = card_from(cds_url)

    class Later:   # the cds module's clock only, 30 minutes and 1 second on
        @staticmethod
        def time() -> float:
            return time.time() + cds_module.PREFILL_SECONDS + 1

    monkeypatch.setattr(cds_module, "time", Later)
    open_page(browser, form_link(card))
    assert browser.find_elements(By.ID, "prefilled") == []
    assert select_value(browser, "patient.cancer.primary") == ""
    assert radio(browser, "presentation.weakness.present", "").is_selected()

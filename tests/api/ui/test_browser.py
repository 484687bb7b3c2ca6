"""The dashboard in a real headless Chromium (Debian's ``chromium`` and ``chromium-driver``),
driven by selenium against the test API server over TLS.

Chromium trusts exactly the test server's key (``--ignore-certificate-errors-spki-list``
with its SPKI hash), not every certificate. ``ELYSIUM_UI_SCREENSHOT=path.png`` saves the
overview as a PNG for a person to look at.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from tests.api.conftest import Api, Pki, make_token, new_key

CHROMEDRIVER = "/usr/bin/chromedriver"


def spki_hash(cert_path: Path) -> str:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@pytest.fixture(scope="module")
def chromium(api_pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in (
        "--headless=new",
        "--no-sandbox",  # tests run as root
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
        f"--ignore-certificate-errors-spki-list={spki_hash(api_pki.server_cert)}",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(5)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def browser(chromium: WebDriver, api_url: str) -> WebDriver:
    chromium.get(f"{api_url}/ui/login")
    chromium.delete_all_cookies()
    return chromium


def follow(driver: WebDriver, element: WebElement) -> None:
    """Click something that loads a new page and wait until the old page is gone.

    A click returns before the navigation it starts has replaced the document, so an
    element looked up straight after it can belong to the page being left."""
    driver.execute_script("document.elysiumLeaving = true")
    element.click()
    WebDriverWait(driver, 10, ignored_exceptions=(WebDriverException,)).until(arrived)


def arrived(driver: WebDriver) -> bool:
    """The document that was marked before the click is gone and its successor is loaded.

    Asked mid-navigation, Chromium may answer with an error about a node or an execution
    context of the page being left (``staleness_of`` then raised "Node with given id does
    not belong to the document" in CI); the wait ignores those and asks again."""
    return bool(
        driver.execute_script(
            "return document.elysiumLeaving !== true && document.readyState === 'complete'"
        )
    )


def sign_in(driver: WebDriver, api_url: str, token: str) -> None:
    driver.get(f"{api_url}/ui/login")
    driver.find_element(By.ID, "token").send_keys(token)
    follow(driver, driver.find_element(By.ID, "sign-in"))
    WebDriverWait(driver, 10).until(lambda d: d.current_url.endswith("/ui/"))


def add_peer(operator: Api, interface_id: int, name: str) -> int:
    r = operator.post(
        f"/v1/interfaces/{interface_id}/peers", json={"name": name, "public_key": new_key()}
    )
    assert r.status_code == 202, r.text
    return int(r.json()["peer_id"])


def texts(driver: WebDriver, css: str) -> list[str]:
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, css)]


def test_sign_in_and_see_the_overview(
    browser: WebDriver,
    api_url: str,
    db: psycopg.Connection[Any],
    operator: Api,
    interface_id: int,
) -> None:
    add_peer(operator, interface_id, "laptop")
    db.execute("UPDATE peers SET online = true")
    sign_in(browser, api_url, make_token(db, "operator"))
    assert browser.title == "Overview · Elysium"
    assert "hub-a" in texts(browser, "#hubs td")
    assert "wg0" in texts(browser, "#interfaces td")
    assert browser.find_element(By.ID, "online-count").text == "1"
    assert browser.find_element(By.ID, "jobs-in-flight").text == "2"  # nothing works them here
    assert "operator" in browser.find_element(By.ID, "who").text
    shot = os.environ.get("ELYSIUM_UI_SCREENSHOT")
    if shot:
        browser.save_screenshot(shot)


def test_create_an_enrollment_token_see_its_qr_and_command_then_revoke_it(
    browser: WebDriver, api_url: str, db: psycopg.Connection[Any], interface_id: int
) -> None:
    sign_in(browser, api_url, make_token(db, "operator"))
    follow(browser, browser.find_element(By.LINK_TEXT, "wg0"))
    follow(browser, browser.find_element(By.ID, "tokens-link"))
    browser.find_element(By.ID, "name").send_keys("laptops")
    uses = browser.find_element(By.ID, "uses")
    uses.clear()
    uses.send_keys("3")
    browser.find_element(By.ID, "tags").send_keys("laptop")
    follow(browser, browser.find_element(By.ID, "create-token"))
    command = browser.find_element(By.ID, "enroll-command").text
    assert command.startswith(
        f"elysium-client enroll --server {api_url} --ca ca.pem --token elyenr_"
    )
    assert command.endswith("--name laptops")
    qr = browser.find_element(By.CSS_SELECTOR, "#qr svg")
    assert qr.size["width"] >= 200 and qr.find_elements(By.TAG_NAME, "path")
    shot = os.environ.get("ELYSIUM_UI_SCREENSHOT")
    if shot:
        browser.save_screenshot(shot.replace(".png", "-token.png"))
    follow(browser, browser.find_element(By.LINK_TEXT, "Done"))
    row = browser.find_element(By.CSS_SELECTOR, "#tokens tbody tr")
    assert "laptops" in row.text and "3 / 3" in row.text and "active" in row.text
    assert "elyenr_" not in browser.page_source
    follow(browser, row.find_element(By.CSS_SELECTOR, "button.revoke"))
    row = browser.find_element(By.CSS_SELECTOR, "#tokens tbody tr")
    assert "revoked" in row.text and not row.find_elements(By.CSS_SELECTOR, "button.revoke")


def test_disable_a_peer_through_the_confirmation(
    browser: WebDriver,
    api_url: str,
    db: psycopg.Connection[Any],
    operator: Api,
    interface_id: int,
) -> None:
    peer_id = add_peer(operator, interface_id, "laptop")
    sign_in(browser, api_url, make_token(db, "operator"))
    browser.get(f"{api_url}/ui/peers/{peer_id}")
    follow(browser, browser.find_element(By.ID, "disable"))
    assert "Disable peer laptop?" in browser.find_element(By.TAG_NAME, "h1").text
    follow(browser, browser.find_element(By.ID, "confirm"))
    assert browser.find_element(By.ID, "job-accepted").is_displayed()
    assert "disabled" in browser.find_element(By.ID, "peer-name").text
    assert browser.find_element(By.ID, "enable").is_displayed()
    row = db.execute("SELECT enabled FROM peers WHERE id = %s", (peer_id,)).fetchone()
    assert row == {"enabled": False}


def test_a_reader_sees_no_change_buttons(
    browser: WebDriver,
    api_url: str,
    db: psycopg.Connection[Any],
    operator: Api,
    interface_id: int,
) -> None:
    peer_id = add_peer(operator, interface_id, "laptop")
    sign_in(browser, api_url, make_token(db, "reader"))
    browser.get(f"{api_url}/ui/peers/{peer_id}")
    assert browser.find_element(By.ID, "peer-name").text.startswith("laptop")
    browser.implicitly_wait(0)
    try:
        assert browser.find_elements(By.CSS_SELECTOR, "#peer-actions, #disable, #delete") == []
        browser.get(f"{api_url}/ui/interfaces/{interface_id}")
        assert browser.find_elements(By.ID, "tokens-link") == []
        browser.get(f"{api_url}/ui/interfaces/{interface_id}/policy")
        assert browser.find_elements(By.ID, "save-policy") == []
    finally:
        browser.implicitly_wait(5)


def test_the_peer_table_refreshes_in_place(
    browser: WebDriver,
    api_url: str,
    db: psycopg.Connection[Any],
    operator: Api,
    interface_id: int,
) -> None:
    add_peer(operator, interface_id, "laptop")
    sign_in(browser, api_url, make_token(db, "reader"))
    browser.get(f"{api_url}/ui/interfaces/{interface_id}")
    marker = browser.execute_script("window.notReloaded = true; return window.notReloaded")
    assert marker is True
    db.execute("UPDATE peers SET online = true, rx_bytes = 4096, last_handshake_at = now()")
    WebDriverWait(browser, 15).until(
        lambda d: (
            "online" in d.find_element(By.CSS_SELECTOR, "#peer-rows tr").text
            and "4.0 KiB" in d.find_element(By.CSS_SELECTOR, "#peer-rows tr").text
        )
    )
    assert browser.execute_script("return window.notReloaded") is True  # swapped, not reloaded


def test_sign_out_and_the_pages_are_closed(
    browser: WebDriver, api_url: str, db: psycopg.Connection[Any]
) -> None:
    sign_in(browser, api_url, make_token(db, "reader"))
    follow(browser, browser.find_element(By.ID, "logout"))
    WebDriverWait(browser, 10).until(lambda d: "/ui/login" in d.current_url)
    assert browser.find_element(By.ID, "why").text == "signed out"
    browser.get(f"{api_url}/ui/jobs")
    assert "/ui/login" in browser.current_url

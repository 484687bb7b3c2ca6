"""Dashboard single sign-on in a real headless Chromium: through the provider's own login page
(oidc-provider's, on loopback) and back to the dashboard with the mapped scope; an unmapped
user sees why. Chromium resolves no name but loopback's, so a page that asks for something
from outside this machine gets nothing."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.api.conftest import Pki, Sso
from tests.api.ui.test_browser import follow
from tests.oidc import loopback_chromium


@pytest.fixture(scope="module")
def chromium(api_pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    driver = loopback_chromium(api_pki.server_cert, tmp_path_factory.mktemp("chromium-sso"))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def browser(chromium: WebDriver, db: psycopg.Connection[Any]) -> WebDriver:
    # Every cookie of every site: the provider's session too, so each test signs in anew.
    chromium.execute_cdp_cmd("Network.clearBrowserCookies", {})
    return chromium


def sign_in_with_sso(driver: WebDriver, sso: Sso, user: str) -> None:
    driver.get(f"{sso.url}/ui/login")
    follow(driver, driver.find_element(By.ID, "sso"))
    assert driver.current_url.startswith(sso.provider.issuer + "/interaction/")
    driver.find_element(By.NAME, "login").send_keys(user)
    driver.find_element(By.NAME, "password").send_keys("any password")
    shot = os.environ.get("ELYSIUM_UI_SCREENSHOT")
    if shot:
        driver.save_screenshot(shot.replace(".png", "-sso-provider.png"))
    follow(driver, driver.find_element(By.CSS_SELECTOR, "button[type=submit]"))


def test_sign_in_through_the_provider_lands_on_the_dashboard_with_the_mapped_scope(
    browser: WebDriver, sso: Sso, db: psycopg.Connection[Any]
) -> None:
    sign_in_with_sso(browser, sso, "bob")
    WebDriverWait(browser, 10).until(lambda d: d.current_url == f"{sso.url}/ui/")
    assert browser.title == "Overview · Elysium"
    who = browser.find_element(By.ID, "who").text
    assert "sso:bob@ops.example.com" in who and "operator" in who
    record = db.execute("SELECT * FROM audit ORDER BY id DESC LIMIT 1").fetchone()
    assert (record["actor"], record["action"], record["outcome"]) == (
        "sso:bob@ops.example.com",
        "dashboard.sso_sign_in",
        "succeeded",
    )
    # Signing out ends the session like a pasted token's.
    follow(browser, browser.find_element(By.ID, "logout"))
    browser.get(f"{sso.url}/ui/")
    assert browser.current_url.startswith(f"{sso.url}/ui/login")


def test_an_unmapped_user_is_shown_why_and_gets_no_session(
    browser: WebDriver, sso: Sso, db: psycopg.Connection[Any]
) -> None:
    sign_in_with_sso(browser, sso, "erin")
    why = browser.find_element(By.ID, "why")
    assert "erin@elsewhere.org is not mapped to any scope" in why.text
    assert why.get_attribute("data-code") == "sso_unmapped"
    assert browser.find_elements(By.ID, "sso")  # free to try again, or to paste a token
    shot = os.environ.get("ELYSIUM_UI_SCREENSHOT")
    if shot:
        browser.save_screenshot(shot.replace(".png", "-sso-refused.png"))
    browser.get(f"{sso.url}/ui/")
    assert browser.current_url.startswith(f"{sso.url}/ui/login")
    assert db.execute("SELECT count(*) AS n FROM api_tokens").fetchone()["n"] == 0

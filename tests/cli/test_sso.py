"""``cli/sso.py`` (``elysium login --sso``): the device flow against the real provider, the
code approved by a person in Chromium on the provider's own pages, the ID token traded for an
API token of the person's mapped scope."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from cli.sso import SsoLoginError, sso_login
from tests.api.conftest import Pki, Sso
from tests.oidc import loopback_chromium


@pytest.fixture(scope="module")
def chromium(api_pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    driver = loopback_chromium(api_pki.server_cert, tmp_path_factory.mktemp("chromium-cli"))
    try:
        yield driver
    finally:
        driver.quit()


class Login(threading.Thread):
    """``sso_login`` running as the command would, while the test plays the person."""

    def __init__(self, server: str, ca: Path) -> None:
        super().__init__(daemon=True)
        self.server, self.ca = server, ca
        self.shown = threading.Event()
        self.prompt: tuple[str, str, str | None] | None = None
        self.token: str | None = None
        self.error: Exception | None = None

    def show(self, uri: str, code: str, complete: str | None) -> None:
        self.prompt = (uri, code, complete)
        self.shown.set()

    def run(self) -> None:
        try:
            self.token = sso_login(self.server, self.ca, prompt=self.show, timeout=60)
        except Exception as exc:
            self.error = exc
        finally:
            self.shown.set()


def approve(driver: WebDriver, uri: str, code: str, user: str) -> None:
    """A person types the code at the provider's device page and signs in there."""
    driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
    driver.get(uri)
    driver.find_element(By.NAME, "user_code").send_keys(code)
    driver.find_element(By.ID, "continue").click()
    WebDriverWait(driver, 10).until(lambda d: d.find_elements(By.ID, "user-code"))
    assert driver.find_element(By.ID, "user-code").text == code
    driver.find_element(By.ID, "confirm").click()
    WebDriverWait(driver, 10).until(lambda d: d.find_elements(By.NAME, "login"))
    driver.find_element(By.NAME, "login").send_keys(user)
    driver.find_element(By.NAME, "password").send_keys("any password")
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(driver, 10).until(lambda d: d.find_elements(By.ID, "done"))


def test_device_flow_gets_an_api_token_of_the_mapped_scope(
    chromium: WebDriver, sso: Sso, api_pki: Pki, db: psycopg.Connection[Any]
) -> None:
    login = Login(sso.url, api_pki.ca)
    login.start()
    assert login.shown.wait(20) and login.prompt, login.error
    uri, code, _ = login.prompt
    assert uri == f"{sso.provider.issuer}/device"
    approve(chromium, uri, code, "bob")
    login.join(30)
    assert login.error is None and login.token and login.token.startswith("ely_")
    r = requests.get(
        f"{sso.url}/v1/hubs",
        headers={"Authorization": f"Bearer {login.token}"},
        verify=str(api_pki.ca),
        timeout=10,
    )
    assert r.status_code == 200
    row = db.execute("SELECT name, scope FROM api_tokens").fetchone()
    assert row == {"name": "sso:bob@ops.example.com", "scope": "operator"}
    record = db.execute("SELECT * FROM audit ORDER BY id DESC LIMIT 1").fetchone()
    assert (record["actor"], record["action"], record["outcome"]) == (
        "sso:bob@ops.example.com",
        "sso.token",
        "succeeded",
    )


def test_an_unmapped_person_gets_one_line_saying_why(
    chromium: WebDriver, sso: Sso, api_pki: Pki, db: psycopg.Connection[Any]
) -> None:
    login = Login(sso.url, api_pki.ca)
    login.start()
    assert login.shown.wait(20) and login.prompt, login.error
    uri, code, _ = login.prompt
    approve(chromium, uri, code, "erin")
    login.join(30)
    assert isinstance(login.error, SsoLoginError)
    assert "erin@elsewhere.org is not mapped to any scope" in login.error.message
    assert "\n" not in login.error.message


def test_a_server_without_sso_says_so(api_url: str, api_pki: Pki) -> None:
    with pytest.raises(SsoLoginError, match="single sign-on is not configured on https://"):
        sso_login(api_url, api_pki.ca, prompt=lambda *a: None)


def test_elysium_login_sso_keeps_a_profile_whose_token_works(
    chromium: WebDriver, sso: Sso, api_pki: Pki, tmp_path: Path
) -> None:
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path)}
    login = ["login", "--server", sso.url, "--ca", str(api_pki.ca), "--sso", "--profile", "sso"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", *login], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        shown = re.match(r"To sign in, open (\S+) and enter the code (\S+)", proc.stderr.readline())
        assert shown, "the command did not show where to sign in"
        approve(chromium, shown[1], shown[2], "bob")
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "logged in to" in out and "'sso'" in out
    profile = next((tmp_path / "elysium").rglob("sso*"))
    assert profile.stat().st_mode & 0o777 == 0o600
    hubs = subprocess.run(
        [sys.executable, "-m", "cli", "hub", "list", "--json", "--profile", "sso"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert hubs.returncode == 0, hubs.stderr
    assert "items" in json.loads(hubs.stdout)

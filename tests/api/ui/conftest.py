"""The dashboard through the test API server: a cookie session per test, by HTTP or Chromium."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import psycopg
import requests

from tests.api.conftest import make_token

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class Browser:
    """A plain HTTP client of the dashboard: keeps its cookies, reads each form's CSRF token."""

    def __init__(self, base: str, ca: Path) -> None:
        self.base = base
        self.ca = str(ca)
        self.http = requests.Session()
        self.csrf = ""

    def get(self, path: str, **kw: Any) -> requests.Response:
        r = self.http.get(self.base + path, verify=self.ca, timeout=30, **kw)
        found = CSRF.search(r.text)
        if found:
            self.csrf = found.group(1)
        return r

    def post(
        self, path: str, data: dict[str, str] | None = None, csrf: bool = True
    ) -> requests.Response:
        form = dict(data or {})
        if csrf:
            form["csrf_token"] = self.csrf
        r = self.http.post(self.base + path, data=form, verify=self.ca, timeout=30)
        found = CSRF.search(r.text)
        if found:
            self.csrf = found.group(1)
        return r

    def sign_in(self, token: str) -> requests.Response:
        self.get("/ui/login")
        r = self.post("/ui/login", {"token": token})
        assert r.status_code == 200 and r.url.endswith("/ui/"), (r.status_code, r.url)
        return r


def signed_in(api_url: str, ca: Path, db: psycopg.Connection[Any], scope: str) -> Browser:
    browser = Browser(api_url, ca)
    browser.sign_in(make_token(db, scope))
    return browser

"""Dashboard single sign-on by plain HTTP through the real provider's login page: the state
and the code work once, a sign-in works only in the browser that began it, and each refusal
is audited and makes no session and no token. (Chromium does it too: test_sso_browser.py.)"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlparse

import psycopg
import pytest
import requests

from tests.api.conftest import Pki, Sso
from tests.oidc import sign_in_at_provider

WHY = re.compile(r'id="why" data-code="([a-z_]+)">([^<]*)<')


class Http:
    """A cookie-keeping HTTP client standing in for one browser."""

    def __init__(self, sso: Sso, ca: str) -> None:
        self.sso, self.ca = sso, ca
        self.session = requests.Session()

    def begin(self, user: str) -> str:
        """Sign in at the provider; the callback URL it sends us back with."""
        return sign_in_at_provider(self.session, self.sso.url + "/ui/sso/start", user, self.ca)

    def get(self, url: str) -> requests.Response:
        return self.session.get(url, verify=self.ca, timeout=20, allow_redirects=False)

    def bind(self, callback: str) -> None:
        """Put a callback's state in this browser's cookie (as /ui/sso/start would have)."""
        state = parse_qs(urlparse(callback).query)["state"][0]
        self.session.cookies.set("elysium_sso", state, domain="127.0.0.1", path="/ui/sso")


@pytest.fixture
def http(sso: Sso, api_pki: Pki, db: psycopg.Connection[Any]) -> Http:
    return Http(sso, str(api_pki.ca))


def refusal(r: requests.Response) -> tuple[int, str, str]:
    found = WHY.search(r.text)
    assert found, r.text[:800]
    return r.status_code, found.group(1), found.group(2)


def audit_rows(db: psycopg.Connection[Any]) -> list[tuple[str, str, str, str | None]]:
    return [
        (r["actor"], r["action"], r["outcome"], r["detail"].get("code"))
        for r in db.execute("SELECT * FROM audit ORDER BY id").fetchall()
    ]


def tokens_made(db: psycopg.Connection[Any]) -> int:
    return int(db.execute("SELECT count(*) AS n FROM api_tokens").fetchone()["n"])


def test_a_sign_in_makes_a_dashboard_session_with_the_mapped_scope(
    http: Http, db: psycopg.Connection[Any]
) -> None:
    r = http.get(http.begin("carol"))
    assert r.status_code == 200, r.text[:500]
    assert "Signed in as carol@example.com (reader)" in r.text
    overview = http.get(http.sso.url + "/ui/")
    assert overview.status_code == 200
    assert "sso:carol@example.com" in overview.text
    assert audit_rows(db) == [("sso:carol@example.com", "dashboard.sso_sign_in", "succeeded", None)]
    row = db.execute("SELECT name, scope, created_by FROM api_tokens").fetchone()
    assert row == {
        "name": "sso:carol@example.com",
        "scope": "reader",
        "created_by": "sso:carol@example.com",
    }


def test_a_replayed_state_is_refused(http: Http, db: psycopg.Connection[Any]) -> None:
    callback = http.begin("alice")
    assert http.get(callback).status_code == 200
    replay = Http(http.sso, http.ca)
    replay.bind(callback)  # even with the state's cookie, a spent state is spent
    status, code, why = refusal(replay.get(callback))
    assert (status, code) == (401, "sso_state_unknown")
    assert "used already" in why
    assert replay.get(http.sso.url + "/ui/").status_code == 303  # no session: to sign-in
    assert audit_rows(db)[-1] == ("sso:unverified", "dashboard.sso_sign_in", "refused", code)
    assert tokens_made(db) == 1


def test_a_code_used_twice_is_refused(http: Http, db: psycopg.Connection[Any]) -> None:
    first = http.begin("alice")
    assert http.get(first).status_code == 200
    # A second sign-in in this browser, answered with the first one's (spent) code.
    second = http.begin("alice")
    code = parse_qs(urlparse(first).query)["code"][0]
    forged = re.sub(r"code=[^&]+", f"code={code}", second)
    status, why_code, _ = refusal(http.get(forged))
    assert (status, why_code) == (401, "sso_code_refused")
    assert audit_rows(db)[-1][2:] == ("refused", "sso_code_refused")
    assert tokens_made(db) == 1


def test_a_sign_in_begun_in_another_browser_is_refused(
    http: Http, db: psycopg.Connection[Any]
) -> None:
    callback = http.begin("alice")  # the attacker's own sign-in ...
    victim = Http(http.sso, http.ca)  # ... sent to a victim's browser (login CSRF)
    status, code, _ = refusal(victim.get(callback))
    assert (status, code) == (401, "sso_state_unbound")
    assert tokens_made(db) == 0
    assert audit_rows(db) == [("sso:unverified", "dashboard.sso_sign_in", "refused", code)]


def test_a_user_no_mapping_names_gets_a_page_that_says_why(
    http: Http, db: psycopg.Connection[Any]
) -> None:
    status, code, why = refusal(http.get(http.begin("erin")))
    assert (status, code) == (403, "sso_unmapped")
    assert "erin@elsewhere.org is not mapped to any scope" in why
    assert http.get(http.sso.url + "/ui/").status_code == 303  # no session: to the login page
    assert tokens_made(db) == 0
    assert audit_rows(db) == [
        ("sso:erin@elsewhere.org", "dashboard.sso_sign_in", "refused", "sso_unmapped")
    ]


def test_a_provider_error_is_shown_and_audited(http: Http, db: psycopg.Connection[Any]) -> None:
    start = http.get(http.sso.url + "/ui/sso/start")
    state = parse_qs(urlparse(start.headers["Location"]).query)["state"][0]
    r = http.get(f"{http.sso.url}/ui/sso/callback?state={state}&error=access_denied")
    status, code, why = refusal(r)
    assert (status, code) == (401, "sso_provider_error")
    assert "access_denied" in why
    assert audit_rows(db)[-1][2:] == ("refused", "sso_provider_error")


def test_the_login_page_offers_sso_and_keeps_the_token_form(http: Http) -> None:
    page = http.get(http.sso.url + "/ui/login").text
    assert 'id="sso"' in page and 'id="token"' in page


def test_the_login_page_without_a_provider_has_no_sso_button(api_url: str, api_pki: Pki) -> None:
    page = requests.get(api_url + "/ui/login", verify=str(api_pki.ca), timeout=10).text
    assert 'id="sso"' not in page and 'id="token"' in page

"""A real OpenID provider for the single sign-on tests: panva's ``oidc-provider`` on Node
(``tests/oidc/provider``; ``make deps`` runs ``npm ci`` there), started on loopback.

The tests make the provider's signing key, so they can also sign ID tokens that only their
claims make wrong (expired, another audience, another issuer) and tell those refusals apart
from a forged signature (a key the provider never published).
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from joserfc import jwt
from joserfc.jwk import RSAKey
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver

from tests.stack import Process, wait_for

PROVIDER_DIR = Path(__file__).parent / "provider"
DASHBOARD_CLIENT = "elysium"
DASHBOARD_SECRET = "dashboard-client-secret"
CLI_CLIENT = "elysium-cli"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"

# Static users: login -> claims. Dev interactions accept any password.
USERS: dict[str, dict[str, Any]] = {
    "alice": {"email": "alice@example.com", "email_verified": True, "groups": ["elysium-admins"]},
    "bob": {"email": "bob@ops.example.com", "email_verified": True, "groups": ["developers"]},
    "carol": {"email": "carol@example.com", "email_verified": True, "groups": ["auditors"]},
    # Claims an operators' domain, but the provider never verified the address: no mapping.
    "mallory": {"email": "mallory@ops.example.com", "email_verified": False, "groups": []},
    "erin": {"email": "erin@elsewhere.org", "email_verified": True, "groups": ["guests"]},
}
# The claim mapping the SSO test API runs with (ELYSIUM_OIDC_*).
MAPPING = {
    "ELYSIUM_OIDC_ADMIN_GROUPS": "elysium-admins",
    "ELYSIUM_OIDC_OPERATOR_EMAIL_DOMAINS": "ops.example.com",
    "ELYSIUM_OIDC_READER_GROUPS": "auditors",
    # Where their peers go (elysium-client enroll --sso): developers first, then the domain.
    "ELYSIUM_OIDC_ENROLL": (
        "group:developers=hub-a/wg0:laptop+dev,domain:example.com=hub-a/wg0:staff"
    ),
}


@dataclass
class OidcProvider:
    issuer: str
    key: RSAKey  # the provider's signing key (private): tests sign claim-wrong tokens with it
    process: Process

    def sign(self, claims: dict[str, Any], key: RSAKey | None = None) -> str:
        """An ID token with ``claims`` over sensible defaults (alice, for the CLI client)."""
        now = int(time.time())
        body = {
            "iss": self.issuer,
            "sub": "alice",
            "aud": CLI_CLIENT,
            "iat": now,
            "exp": now + 300,
            "email": USERS["alice"]["email"],
            "email_verified": True,
            "groups": USERS["alice"]["groups"],
            "jti": secrets.token_hex(8),  # two tokens signed in one second still differ
            **claims,
        }
        signer = key or self.key
        header = {"alg": "RS256", "kid": signer.kid}
        return jwt.encode(header, {k: v for k, v in body.items() if v is not None}, signer)


def new_key(kid: str) -> RSAKey:
    return RSAKey.generate_key(
        2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"}, private=True
    )


def start_provider(work: Path, port: int, redirect_uri: str) -> OidcProvider:
    """oidc-provider on 127.0.0.1:``port`` with Elysium's two clients and the static users."""
    if not (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
        raise RuntimeError(f"{PROVIDER_DIR}: no node_modules; run `make deps` (npm ci)")
    issuer = f"http://127.0.0.1:{port}"
    key = new_key("test-provider-key")
    config = {
        "port": port,
        "issuer": issuer,
        "cookie_key": secrets.token_urlsafe(32),
        "jwks": {"keys": [key.as_dict(private=True)]},
        "clients": [
            {
                "client_id": DASHBOARD_CLIENT,
                "client_secret": DASHBOARD_SECRET,
                "redirect_uris": [redirect_uri],
                "grant_types": ["authorization_code"],
                "response_types": ["code"],
            },
            {
                "client_id": CLI_CLIENT,
                "token_endpoint_auth_method": "none",
                "grant_types": [DEVICE_GRANT],
                "response_types": [],
                "redirect_uris": [],
            },
        ],
        "users": USERS,
    }
    config_path = work / "provider.json"
    config_path.write_text(json.dumps(config))
    config_path.chmod(0o600)
    process = Process(
        ["node", str(PROVIDER_DIR / "provider.mjs"), str(config_path)],
        {"PATH": "/usr/bin:/bin", "NODE_ENV": "test"},
        work / "provider.log",
    )
    try:
        wait_for(
            lambda: requests.get(f"{issuer}/.well-known/openid-configuration", timeout=2).ok,
            30,
            "the OpenID provider to answer discovery",
        )
    except BaseException:
        process.stop()
        raise
    return OidcProvider(issuer, key, process)


def sso_settings(provider: OidcProvider, redirect_uri: str) -> dict[str, str]:
    """The ELYSIUM_OIDC_* environment of an API that signs in through ``provider``."""
    return {
        "ELYSIUM_OIDC_ISSUER": provider.issuer,
        "ELYSIUM_OIDC_CLIENT_ID": DASHBOARD_CLIENT,
        "ELYSIUM_OIDC_CLIENT_SECRET": DASHBOARD_SECRET,
        "ELYSIUM_OIDC_CLI_CLIENT_ID": CLI_CLIENT,
        "ELYSIUM_OIDC_REDIRECT_URL": redirect_uri,
        **MAPPING,
    }


def sign_in_at_provider(http: requests.Session, url: str, user: str, ca: str) -> str:
    """Follow ``url`` (the dashboard's /ui/sso/start) through the provider's own login page
    as ``user``, by plain HTTP; the redirect back to Elysium (its callback URL) is returned
    unvisited."""
    for _ in range(10):
        verify = ca if url.startswith("https:") else True
        r = http.get(url, allow_redirects=False, verify=verify, timeout=10)
        if r.status_code in (302, 303) and "/ui/sso/callback" in r.headers["Location"]:
            return str(r.headers["Location"])
        if r.status_code in (302, 303):
            url = requests.compat.urljoin(url, r.headers["Location"])
            continue
        assert r.status_code == 200 and 'name="login"' in r.text, (r.status_code, r.text[:500])
        r = http.post(
            url,
            data={"prompt": "login", "login": user, "password": "any"},
            allow_redirects=False,
            timeout=10,
        )
        assert r.status_code in (302, 303), (r.status_code, r.text[:500])
        url = requests.compat.urljoin(url, r.headers["Location"])
    raise AssertionError(f"the provider never sent the browser back (last {url})")


def loopback_chromium(server_cert: Path, profile: Path) -> WebDriver:
    """Headless Chromium trusting exactly the test API's key, resolving no host name but
    loopback's: whatever a page asks for from outside this machine, it gets nothing."""
    from tests.api.ui.test_browser import CHROMEDRIVER, spki_hash  # (imports tests.api)

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in (
        "--headless=new",
        "--no-sandbox",  # tests run as root
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        f"--user-data-dir={profile}",
        f"--ignore-certificate-errors-spki-list={spki_hash(server_cert)}",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(5)
    return driver

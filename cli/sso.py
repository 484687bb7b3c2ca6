"""``elysium login --sso``: sign in through the OpenID provider with the device authorization
grant (``elysium/device_flow.py``) and trade the ID token for a short-lived Elysium API token.

The API says which provider and client to use (``GET /v1/sso``); the provider's endpoints
come from its discovery document; ``POST /v1/sso/token`` verifies the ID token and answers
with an API token of the person's mapped scope. Nothing but that API token is kept.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import requests

from elysium.device_flow import Prompt, show_code, sign_in
from elysium.errors import ElysiumError

SHOW_CODE = show_code("sign in")

HTTP_TIMEOUT_S = 15.0


class SsoLoginError(click.ClickException):
    """A single sign-on that did not end in a token: one line for the person, exit 1."""


def sso_login(
    server: str,
    ca: Path | None,
    *,
    prompt: Prompt = SHOW_CODE,
    timeout: float = 600.0,
    provider_ca: Path | None = None,
) -> str:
    """Sign in through the server's OpenID provider; return a short-lived API token.

    ``ca`` verifies the Elysium API (its private CA), ``provider_ca`` the provider (default:
    the system's CAs). ``prompt`` shows the verification URL and user code; ``timeout``
    bounds the wait (the provider's device code usually expires sooner)."""
    server = server.rstrip("/")
    verify: str | bool = str(ca) if ca else True
    config = _api_call("GET", f"{server}/v1/sso", verify)
    try:
        id_token = sign_in(config, prompt, timeout, provider_ca)
    except ElysiumError as exc:
        raise SsoLoginError(f"single sign-on: {exc.message}") from None
    minted = _api_call("POST", f"{server}/v1/sso/token", verify, json={"id_token": id_token})
    return str(minted["token"])


def _api_call(method: str, url: str, verify: str | bool, **kw: Any) -> dict[str, Any]:
    try:
        r = requests.request(method, url, timeout=HTTP_TIMEOUT_S, verify=verify, **kw)
        body = r.json()
    except (requests.RequestException, ValueError) as exc:
        raise SsoLoginError(f"the Elysium API did not answer {url}: {exc}") from None
    if r.status_code >= 400:
        error = body.get("error", {}) if isinstance(body, dict) else {}
        if error.get("code") == "sso_disabled":
            raise SsoLoginError(f"single sign-on is not configured on {url.split('/v1/')[0]}")
        raise SsoLoginError(f"{error.get('message') or r.status_code} ({error.get('code')})")
    return dict(body)

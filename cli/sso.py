"""``elysium login --sso``: sign in through the OpenID provider with the device authorization
grant (RFC 8628) and trade the ID token for a short-lived Elysium API token.

The API says which provider and client to use (``GET /v1/sso``); the provider's endpoints
come from its discovery document; the person opens the verification URL anywhere (a phone
will do), types the code and signs in; this command polls the token endpoint and hands the
ID token to ``POST /v1/sso/token``, which verifies it and answers with an API token of the
person's mapped scope. Nothing but that API token is kept; the ID token is used once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import requests

from elysium.errors import ElysiumError
from elysium.oidc import Provider

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DEFAULT_INTERVAL_S = 5.0  # RFC 8628 3.2: when the provider names none
SLOW_DOWN_S = 5.0  # RFC 8628 3.5: added to the interval on each slow_down
HTTP_TIMEOUT_S = 15.0

Prompt = Callable[[str, str, str | None], None]


class SsoLoginError(click.ClickException):
    """A single sign-on that did not end in a token: one line for the person, exit 1."""


def show_code(uri: str, user_code: str, uri_complete: str | None) -> None:
    """Tell the person where to sign in and which code to type (on stderr: stdout is data)."""
    click.echo(f"To sign in, open {uri} and enter the code {user_code}", err=True)
    if uri_complete:
        click.echo(f"(or open {uri_complete})", err=True)


def sso_login(
    server: str,
    ca: Path | None,
    *,
    prompt: Prompt = show_code,
    timeout: float = 600.0,
    provider_ca: Path | None = None,
) -> str:
    """Sign in through the server's OpenID provider; return a short-lived API token.

    ``ca`` verifies the Elysium API (its private CA), ``provider_ca`` the provider (default:
    the system's CAs). ``prompt`` shows the verification URL and user code; ``timeout``
    bounds the whole wait (the provider's device code usually expires sooner)."""
    server = server.rstrip("/")
    api_verify: str | bool = str(ca) if ca else True
    config = _api_call("GET", f"{server}/v1/sso", api_verify)
    issuer, client_id = str(config["issuer"]), str(config["client_id"])
    provider = Provider(issuer, ca_bundle=str(provider_ca) if provider_ca else True)
    try:
        device_endpoint = provider.endpoint("device_authorization_endpoint")
        token_endpoint = provider.endpoint("token_endpoint")
    except ElysiumError as exc:
        raise SsoLoginError(f"single sign-on: {exc.message}") from None
    provider_verify: str | bool = str(provider_ca) if provider_ca else True
    grant = _provider_call(
        device_endpoint,
        {"client_id": client_id, "scope": str(config["scopes"])},
        provider_verify,
    )
    if grant.get("error") or "device_code" not in grant:
        raise SsoLoginError(f"the provider refused to start a device sign-in: {_why(grant)}")
    prompt(
        str(grant["verification_uri"]),
        str(grant["user_code"]),
        grant.get("verification_uri_complete"),
    )
    id_token = _poll(token_endpoint, client_id, grant, provider_verify, timeout)
    minted = _api_call("POST", f"{server}/v1/sso/token", api_verify, json={"id_token": id_token})
    return str(minted["token"])


def _poll(
    endpoint: str, client_id: str, grant: dict[str, Any], verify: str | bool, timeout: float
) -> str:
    """Ask the token endpoint until the person has signed in (RFC 8628 3.4/3.5)."""
    interval = float(grant.get("interval") or DEFAULT_INTERVAL_S)
    deadline = time.monotonic() + min(timeout, float(grant.get("expires_in") or timeout))
    form = {"grant_type": DEVICE_GRANT, "device_code": grant["device_code"], "client_id": client_id}
    while True:
        time.sleep(interval)
        answer = _provider_call(endpoint, form, verify)
        error = answer.get("error")
        if error is None and "id_token" in answer:
            return str(answer["id_token"])
        if error == "authorization_pending":
            pass
        elif error == "slow_down":
            interval += SLOW_DOWN_S
        elif error == "access_denied":
            raise SsoLoginError("the sign-in was denied at the provider")
        elif error == "expired_token":
            raise SsoLoginError("the code expired before anyone signed in: run this again")
        else:
            raise SsoLoginError(f"the provider refused the sign-in: {_why(answer)}")
        if time.monotonic() + interval > deadline:
            raise SsoLoginError("nobody signed in in time: run this again")


def _provider_call(url: str, form: dict[str, str], verify: str | bool) -> dict[str, Any]:
    try:
        r = requests.post(url, data=form, timeout=HTTP_TIMEOUT_S, verify=verify)
        body = r.json()
    except (requests.RequestException, ValueError) as exc:
        raise SsoLoginError(f"the OpenID provider did not answer {url}: {exc}") from None
    if not isinstance(body, dict):
        raise SsoLoginError(f"the OpenID provider's answer from {url} is not a JSON object")
    return body


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


def _why(answer: dict[str, Any]) -> str:
    return str(answer.get("error_description") or answer.get("error") or answer)

"""The device authorization grant (RFC 8628), the public client's side: what
``elysium login --sso`` and ``elysium-client enroll --sso`` run to get an ID token.

The person opens the verification URL anywhere (a phone will do), types the code and signs
in at the provider; this side polls the token endpoint at the provider's pace.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from elysium.oidc import HTTP_TIMEOUT_S, Provider, ProviderUnavailable, SsoRefused

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:device_code"
DEFAULT_INTERVAL_S = 5.0  # RFC 8628 3.2: when the provider names none
SLOW_DOWN_S = 5.0  # RFC 8628 3.5: added to the interval on each slow_down

# Shows the person (verification URL, user code, URL with the code in it or None).
Prompt = Callable[[str, str, str | None], None]


def show_code(to: str) -> Prompt:
    """A prompt telling the person where ``to`` (sign in, enroll) and which code to type, on
    stderr (stdout is data)."""

    def show(uri: str, user_code: str, uri_complete: str | None) -> None:
        print(f"To {to}, open {uri} and enter the code {user_code}", file=sys.stderr)
        if uri_complete:
            print(f"(or open {uri_complete})", file=sys.stderr)

    return show


def sign_in(
    sso: dict[str, Any], prompt: Prompt, timeout: float, provider_ca: Path | None = None
) -> str:
    """The ID token of a device sign-in at the provider the API names (``GET /v1/sso``'s
    answer ``sso``); ``provider_ca`` verifies the provider (default: the system's CAs)."""
    provider = Provider(str(sso["issuer"]), ca_bundle=str(provider_ca) if provider_ca else True)
    return device_sign_in(provider, str(sso["client_id"]), str(sso["scopes"]), prompt, timeout)


def device_sign_in(
    provider: Provider, client_id: str, scopes: str, prompt: Prompt, timeout: float
) -> str:
    """The ID token of whoever signs in with the code shown by ``prompt``; SsoRefused when
    the sign-in is denied, expires or times out (``timeout`` bounds the whole wait)."""
    grant = _post(
        provider,
        provider.endpoint("device_authorization_endpoint"),
        {"client_id": client_id, "scope": scopes},
    )
    if grant.get("error") or "device_code" not in grant:
        raise SsoRefused(
            f"the provider refused to start a device sign-in: {_why(grant)}", code="sso_refused"
        )
    prompt(
        str(grant["verification_uri"]),
        str(grant["user_code"]),
        grant.get("verification_uri_complete"),
    )
    interval = float(grant.get("interval") or DEFAULT_INTERVAL_S)
    deadline = time.monotonic() + min(timeout, float(grant.get("expires_in") or timeout))
    form = {"grant_type": GRANT_TYPE, "device_code": grant["device_code"], "client_id": client_id}
    endpoint = provider.endpoint("token_endpoint")
    while True:
        time.sleep(interval)
        answer = _post(provider, endpoint, form)
        error = answer.get("error")
        if error is None and "id_token" in answer:
            return str(answer["id_token"])
        if error == "slow_down":
            interval += SLOW_DOWN_S
        elif error == "access_denied":
            raise SsoRefused("the sign-in was denied at the provider", code="sso_denied")
        elif error == "expired_token":
            raise SsoRefused(
                "the code expired before anyone signed in: try again", code="sso_expired"
            )
        elif error != "authorization_pending":
            raise SsoRefused(
                f"the provider refused the sign-in: {_why(answer)}", code="sso_refused"
            )
        if time.monotonic() + interval > deadline:
            raise SsoRefused("nobody signed in in time: try again", code="sso_timeout")


def _post(provider: Provider, url: str, form: dict[str, str]) -> dict[str, Any]:
    try:
        r = requests.post(url, data=form, timeout=HTTP_TIMEOUT_S, verify=provider.ca_bundle)
        body = r.json()
    except (requests.RequestException, ValueError) as exc:
        raise ProviderUnavailable(f"the OpenID provider did not answer {url}: {exc}") from None
    if not isinstance(body, dict):
        raise ProviderUnavailable(f"the OpenID provider's answer from {url} is not JSON")
    return body


def _why(answer: dict[str, Any]) -> str:
    return str(answer.get("error_description") or answer.get("error") or answer)

"""``elysium-client enroll --sso``: a person signs in through the server's OpenID provider
(the device flow, ``elysium/device_flow.py``) instead of holding an enrollment token.

The server verifies the ID token and answers with a one-use enrollment token on the
interface, and with the tags, that its ``ELYSIUM_OIDC_ENROLL`` rules give that person; the
enrollment then goes on as with any token. The ID token is used once and never stored.
"""

from __future__ import annotations

from pathlib import Path

import click

from client.api import Api
from client.errors import EXIT_TOKEN, ClientError
from elysium.device_flow import Prompt, device_sign_in
from elysium.errors import ElysiumError
from elysium.oidc import Provider


def show_code(uri: str, user_code: str, uri_complete: str | None) -> None:
    """Tell the person where to sign in and which code to type."""
    click.echo(f"To enroll, open {uri} and enter the code {user_code}", err=True)
    if uri_complete:
        click.echo(f"(or open {uri_complete})", err=True)


def sso_enrollment_token(
    server: str,
    ca: Path | None,
    *,
    prompt: Prompt = show_code,
    timeout: float = 600.0,
    provider_ca: Path | None = None,
) -> str:
    """Sign in at the server's provider; the one-use enrollment token the server gives."""
    api = Api(server, ca)
    try:
        config = api.sso_config()
    except ClientError as exc:
        if exc.code == "sso_disabled":
            raise ClientError(
                f"single sign-on is not configured on {api.server}: enroll with --token",
                code="sso_disabled",
            ) from None
        raise
    provider = Provider(str(config["issuer"]), ca_bundle=str(provider_ca) if provider_ca else True)
    try:
        id_token = device_sign_in(
            provider, str(config["client_id"]), str(config["scopes"]), prompt, timeout
        )
    except ElysiumError as exc:
        raise ClientError(
            f"single sign-on: {exc.message}", code=exc.code, exit_code=EXIT_TOKEN
        ) from None
    try:
        return str(api.sso_enrollment_token(id_token)["token"])
    except ClientError as exc:
        if exc.code.startswith("sso_"):
            message = exc.message.split(": ", 1)[-1]
            raise ClientError(message, code=exc.code, exit_code=EXIT_TOKEN) from None
        raise

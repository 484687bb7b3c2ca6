"""``elysium-client enroll --sso``: a person signs in through the server's OpenID provider
(the device flow, ``elysium/device_flow.py``) instead of holding an enrollment token.

The server verifies the ID token and answers with a one-use enrollment token on the
interface, and with the tags, that its ``ELYSIUM_OIDC_ENROLL`` rules give that person; the
enrollment then goes on as with any token. The ID token is used once and never stored.
"""

from __future__ import annotations

from pathlib import Path

from client.api import Api
from client.errors import EXIT_TOKEN, ClientError
from elysium.device_flow import Prompt, show_code, sign_in
from elysium.errors import ElysiumError

SHOW_CODE = show_code("enroll")


def sso_enrollment_token(
    server: str,
    ca: Path | None,
    *,
    prompt: Prompt = SHOW_CODE,
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
    try:
        id_token = sign_in(config, prompt, timeout, provider_ca)
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

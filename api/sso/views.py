"""``/v1/sso``: single sign-on for the command line (the dashboard's is under ``/ui/sso``)."""

from __future__ import annotations

from typing import Any

from api import state
from api.schemas import Blueprint
from api.sso.schemas import (
    SsoConfigSchema,
    SsoEnrollmentTokenSchema,
    SsoTokenRequestSchema,
    SsoTokenSchema,
)
from services import sso as services

blp = Blueprint("sso", __name__, url_prefix="/v1/sso", description="Single sign-on")


@blp.route("", methods=["GET"])
@blp.response(200, SsoConfigSchema)
def sso_config() -> dict[str, Any]:
    """Where to sign in: the provider and the client the command line's device flow uses."""
    settings = state.settings()
    state.state().oidc  # noqa: B018 (404 sso_disabled when not configured)
    return {
        "issuer": settings.oidc_issuer,
        "client_id": settings.oidc_cli_client_id or settings.oidc_client_id,
        "scopes": settings.oidc_scopes,
    }


@blp.route("/token", methods=["POST"])
@blp.arguments(SsoTokenRequestSchema)
@blp.response(201, SsoTokenSchema)
def sso_token(body: dict[str, Any]) -> dict[str, Any]:
    """A short-lived API token for the user of a verified ID token (once per ID token),
    of the scope the claim mapping gives; revocable like any token, audited under the user."""
    provider = state.state().oidc
    with state.connection() as conn:
        signed = services.exchange_id_token(conn, state.settings(), provider, body["id_token"])
    return {**signed.token, "token": signed.text}


@blp.route("/enrollment-token", methods=["POST"])
@blp.arguments(SsoTokenRequestSchema)
@blp.response(201, SsoEnrollmentTokenSchema)
def sso_enrollment_token(body: dict[str, Any]) -> dict[str, Any]:
    """A one-use enrollment token for the user of a verified ID token (once per ID token), on
    the interface and with the tags ``ELYSIUM_OIDC_ENROLL`` gives them
    (``elysium-client enroll --sso``); audited under the user."""
    provider = state.state().oidc
    with state.connection() as conn:
        row, text = services.enrollment_token(conn, state.settings(), provider, body["id_token"])
    return {**row, "token": text}

"""``/v1/tokens``: API bearer tokens (admin)."""

from __future__ import annotations

from typing import Any

from api import state
from api.auth import caller, require_scope
from api.schemas import Blueprint
from api.tokens.schemas import TokenCreatedSchema, TokenCreateSchema, TokenSchema
from services import tokens as services

blp = Blueprint("tokens", __name__, url_prefix="/v1/tokens", description="API tokens")


@blp.route("", methods=["POST"])
@require_scope("admin")
@blp.arguments(TokenCreateSchema)
@blp.response(201, TokenCreatedSchema)
def create_token(body: dict[str, Any]) -> dict[str, Any]:
    """Create an API token; its text is in this answer only."""
    with state.connection() as conn:
        row, text = services.issue_api_token(
            conn, caller().actor, body["name"], body["scope"], body["ttl_seconds"]
        )
    return {**row, "token": text}


@blp.route("/<id:token_id>", methods=["DELETE"])
@require_scope("admin")
@blp.response(200, TokenSchema)
def revoke_token(token_id: int) -> dict[str, Any]:
    """Revoke an API token (it stops working at once)."""
    with state.connection() as conn:
        return services.revoke_api_token(conn, caller().actor, token_id)

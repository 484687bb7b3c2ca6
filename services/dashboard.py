"""Signing in to and out of the dashboard with an API token, audited."""

from __future__ import annotations

from typing import Any

from psycopg import Connection
from psycopg.rows import DictRow

from db import audit, dashboard, tokens


def actor_of(token: dict[str, Any]) -> str:
    """How audit records and jobs name a caller with this API token (as the API does)."""
    return f"token:{token['id']}:{token['name']}"


def sign_in(conn: Connection[DictRow], token_text: str) -> dict[str, Any]:
    """The API token a pasted text names, if valid (else Unauthorized); the sign-in is audited.

    The dashboard keeps only the token's id in its session, never this text."""
    with conn.transaction():
        row = tokens.authenticate_api_token(conn, token_text)
        audit.record(
            conn, actor_of(row), "dashboard.sign_in", f"api_token:{row['id']}", "succeeded"
        )
    return row


def sign_out(conn: Connection[DictRow], token: dict[str, Any]) -> None:
    """End every dashboard session of this token signed in until now, audited."""
    with conn.transaction():
        dashboard.sign_out(conn, token["id"])
        audit.record(
            conn, actor_of(token), "dashboard.sign_out", f"api_token:{token['id']}", "succeeded"
        )

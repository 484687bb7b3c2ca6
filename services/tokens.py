"""Issuing and revoking tokens, each with its audit record in the same transaction."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from psycopg import Connection
from psycopg.rows import DictRow

from db import audit, tokens
from db import enrollment_tokens as enrollment_tokens_db
from db.interfaces import get_interface


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def issue_api_token(
    conn: Connection[DictRow], actor: str, name: str, scope: str, ttl_seconds: int | None
) -> tuple[dict[str, Any], str]:
    """A new API token: its row and its text (shown once, never stored)."""
    with conn.transaction():
        row, text = tokens.create_api_token(conn, name, scope, ttl_seconds, actor)
        audit.record(
            conn,
            actor,
            "token.create",
            f"api_token:{row['id']}",
            "succeeded",
            {"name": name, "scope": scope, "expires_at": iso(row["expires_at"])},
        )
    return row, text


def revoke_api_token(conn: Connection[DictRow], actor: str, token_id: int) -> dict[str, Any]:
    with conn.transaction():
        row = tokens.revoke_api_token(conn, token_id)
        audit.record(conn, actor, "token.revoke", f"api_token:{token_id}", "succeeded")
    return row


def issue_enrollment_token(
    conn: Connection[DictRow],
    actor: str,
    interface_id: int,
    *,
    name: str | None,
    ttl_seconds: int,
    uses: int,
    subnets: list[str],
    tags: list[str] | None = None,
) -> tuple[dict[str, Any], str]:
    """An enrollment token bound to one interface: its row and its text (shown once)."""
    with conn.transaction():
        get_interface(conn, interface_id)
        row, text = enrollment_tokens_db.create_enrollment_token(
            conn, interface_id, name, ttl_seconds, uses, subnets, actor, tags
        )
        audit.record(
            conn,
            actor,
            "enrollment_token.create",
            f"enrollment_token:{row['id']}",
            "succeeded",
            {
                "interface_id": interface_id,
                "uses": uses,
                "subnets": row["subnets"],
                "tags": row["tags"],
            },
        )
    return row, text


def revoke_enrollment_token(conn: Connection[DictRow], actor: str, token_id: int) -> dict[str, Any]:
    """Revoke an enrollment token (it enrolls nobody from now on), audited."""
    with conn.transaction():
        row = enrollment_tokens_db.revoke_enrollment_token(conn, token_id)
        audit.record(
            conn,
            actor,
            "enrollment_token.revoke",
            f"enrollment_token:{token_id}",
            "succeeded",
            {"interface_id": row["interface_id"]},
        )
    return {**row, "state": "revoked"}


def enrollment_tokens(
    conn: Connection[DictRow], interface_id: int, *, after_id: int = 0, limit: int = 100
) -> list[dict[str, Any]]:
    """An interface's enrollment tokens (NotFound when the interface does not exist)."""
    get_interface(conn, interface_id)
    return enrollment_tokens_db.list_enrollment_tokens(
        conn, interface_id, after_id=after_id, limit=limit
    )


def expire_tokens(conn: Connection[DictRow], actor: str) -> dict[str, int]:
    """Mark API and enrollment tokens past their time expired (a sweep), audited once."""
    with conn.transaction():
        counts = {
            "enrollment": enrollment_tokens_db.expire_enrollment_tokens(conn),
            "api": tokens.expire_api_tokens(conn),
        }
        if counts["enrollment"] or counts["api"]:
            audit.record(conn, actor, "tokens.expire", None, "succeeded", counts)
    return counts

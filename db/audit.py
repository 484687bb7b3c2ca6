"""The audit trail: who did what to which target, when, and how it ended."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import Connection
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from elysium.errors import ValidationError

AUDIT_COLUMNS = "id, at, actor, action, target, outcome, detail"
MAX_LIMIT = 1000


def record(
    conn: Connection[DictRow],
    actor: str,
    action: str,
    target: str | None,
    outcome: str,
    detail: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Append an audit record in the caller's transaction and return it.

    ``detail`` must never hold secrets (token text, private keys): it is readable by readers.
    """
    row = conn.execute(
        "INSERT INTO audit (actor, action, target, outcome, detail) VALUES (%s, %s, %s, %s, %s)"
        f" RETURNING {AUDIT_COLUMNS}",
        (actor, action, target, outcome, Jsonb(detail or {})),
    ).fetchone()
    assert row is not None
    return row


def list_audit(
    conn: Connection[DictRow],
    since: datetime | None = None,
    limit: int = 100,
    cursor: int | None = None,
) -> list[dict[str, Any]]:
    """Audit records in id order: at or after ``since``, after id ``cursor``, at most ``limit``.

    Pass the last id of one page as the ``cursor`` of the next.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationError("limit", f"must be from 1 to {MAX_LIMIT}")
    return conn.execute(
        f"SELECT {AUDIT_COLUMNS} FROM audit"
        " WHERE (%(since)s::timestamptz IS NULL OR at >= %(since)s)"
        " AND (%(cursor)s::bigint IS NULL OR id > %(cursor)s)"
        " ORDER BY id LIMIT %(limit)s",
        {"since": since, "cursor": cursor, "limit": limit},
    ).fetchall()

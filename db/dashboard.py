"""Queries only the dashboard (``api/ui``) makes: summaries, searches, its session key.

Every list is bounded (``limit``) and walks an index, so pages stay fast at 10,000 peers.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any, cast

from psycopg import Connection
from psycopg.rows import DictRow

from db.audit import AUDIT_COLUMNS
from db.jobs import JOB_COLUMNS, OPEN
from db.peers import NOT_ENDED, PEER_COLUMNS
from db.rows import JobRow, PeerRow
from db.tokens import API_COLUMNS
from elysium.errors import Unauthorized
from elysium.states import JobStatus


def session_key(conn: Connection[DictRow]) -> bytes:
    """The key that signs dashboard cookies: made once (the first process wins), then read."""
    conn.execute(
        "INSERT INTO dashboard_key (id, key) VALUES (1, %s) ON CONFLICT (id) DO NOTHING",
        (secrets.token_bytes(32),),
    )
    row = conn.execute("SELECT key FROM dashboard_key WHERE id = 1").fetchone()
    assert row is not None
    return bytes(row["key"])


def session_token(
    conn: Connection[DictRow], token_id: int, signed_in_at: datetime
) -> dict[str, Any]:
    """The API token behind a dashboard session, if the session may still act with it:
    not revoked, not expired, not signed out since ``signed_in_at``; else Unauthorized."""
    row = conn.execute(
        f"SELECT {API_COLUMNS}, expires_at IS NOT NULL AND expires_at <= now() AS past,"
        " signed_out_at IS NOT NULL AND signed_out_at >= %s AS signed_out"
        " FROM api_tokens WHERE id = %s",
        (signed_in_at, token_id),
    ).fetchone()
    if row is None:
        raise Unauthorized("the API token is not valid", code="token_invalid")
    if row.pop("signed_out"):
        raise Unauthorized("this session was signed out", code="signed_out")
    if row["revoked_at"] is not None:
        raise Unauthorized("the API token has been revoked", code="token_revoked")
    if row.pop("past"):
        raise Unauthorized("the API token has expired", code="token_expired")
    return row


def sign_out(conn: Connection[DictRow], token_id: int) -> None:
    """End every dashboard session of this token signed in until now."""
    conn.execute("UPDATE api_tokens SET signed_out_at = now() WHERE id = %s", (token_id,))


def interface_counts(conn: Connection[DictRow]) -> list[dict[str, Any]]:
    """Every interface with its hub and its live peers online and offline."""
    return conn.execute(
        "SELECT i.id, i.name, i.status, i.network::text AS network, h.name AS hub,"
        f" count(p.id) FILTER (WHERE p.online) AS online,"
        f" count(p.id) FILTER (WHERE NOT p.online) AS offline"
        f" FROM interfaces i JOIN hubs h ON h.id = i.hub_id"
        f" LEFT JOIN peers p ON p.interface_id = i.id AND {NOT_ENDED}"
        " GROUP BY i.id, h.name ORDER BY h.name, i.name"
    ).fetchall()


def job_counts(conn: Connection[DictRow]) -> dict[str, int]:
    """Jobs in flight (queued, running, retrying) and jobs failed in the last hour."""
    row = conn.execute(
        "SELECT (SELECT count(*) FROM jobs WHERE status = ANY(%s)) AS in_flight,"
        f" (SELECT count(*) FROM jobs WHERE status = '{JobStatus.FAILED}'"
        "  AND finished_at > now() - interval '1 hour') AS failed_last_hour",
        (OPEN,),
    ).fetchone()
    assert row is not None
    return dict(row)


def search_peers(
    conn: Connection[DictRow], interface_id: int, prefix: str, after_id: int, limit: int
) -> list[PeerRow]:
    """Live peers of an interface whose name starts with ``prefix`` (any case), by id."""
    pattern = prefix.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return cast(
        list[PeerRow],
        conn.execute(
            f"SELECT {PEER_COLUMNS} FROM peers p WHERE p.interface_id = %s AND {NOT_ENDED}"
            " AND lower(p.name) LIKE %s AND p.id > %s ORDER BY p.id LIMIT %s",
            (interface_id, pattern, after_id, limit),
            # Never prepared: a generic plan cannot see the pattern's prefix, so it walked
            # every peer by id instead of the name index (10,000 rows read for 111 found).
            prepare=False,
        ).fetchall(),
    )


def recent_jobs(
    conn: Connection[DictRow], status: str | None, before: datetime | None, limit: int
) -> list[JobRow]:
    """The newest jobs first, optionally of one status, created before ``before``."""
    where, params = _filters({"status = %s": status, "created_at < %s": before})
    return cast(
        list[JobRow],
        conn.execute(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE {where} ORDER BY created_at DESC LIMIT %s",
            [*params, limit],
        ).fetchall(),
    )


def find_audit(
    conn: Connection[DictRow],
    *,
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Audit records newest first, each filter an exact match (``None``: any)."""
    where, params = _filters(
        {"actor = %s": actor, "action = %s": action, "target = %s": target, "id < %s": before_id}
    )
    return conn.execute(
        f"SELECT {AUDIT_COLUMNS} FROM audit WHERE {where} ORDER BY id DESC LIMIT %s",
        [*params, limit],
    ).fetchall()


def _filters(conditions: dict[str, Any]) -> tuple[str, list[Any]]:
    # Only the conditions given go into the statement, so each query can use its index.
    given = {sql: value for sql, value in conditions.items() if value is not None}
    return " AND ".join(["true", *given]), list(given.values())

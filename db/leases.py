"""Leases: one named holder at a time, taken over by another when the holder stops renewing."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import Connection
from psycopg.rows import DictRow


def acquire_lease(
    conn: Connection[DictRow], name: str, holder: str, lease_s: float
) -> datetime | None:
    """Take or renew lease ``name`` for ``lease_s`` seconds, atomically.

    Succeeds when nobody holds it, its lease has lapsed, or ``holder`` already holds it;
    returns the new expiry (database clock), or None while another holder's lease runs.
    """
    row = conn.execute(
        "INSERT INTO leases (name, holder, expires_at)"
        " VALUES (%s, %s, now() + make_interval(secs => %s))"
        " ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder,"
        " expires_at = EXCLUDED.expires_at"
        " WHERE leases.expires_at < now() OR leases.holder = EXCLUDED.holder"
        " RETURNING expires_at",
        (name, holder, lease_s),
    ).fetchone()
    return None if row is None else row["expires_at"]


def release_lease(conn: Connection[DictRow], name: str, holder: str) -> bool:
    """Give lease ``name`` up (only if ``holder`` holds it), so another may take it at once."""
    cur = conn.execute("DELETE FROM leases WHERE name = %s AND holder = %s", (name, holder))
    return cur.rowcount == 1


def get_lease(conn: Connection[DictRow], name: str) -> dict[str, Any] | None:
    """The lease row with ``live`` (not lapsed), or None when nobody ever held it."""
    return conn.execute(
        "SELECT name, holder, expires_at, expires_at >= now() AS live FROM leases WHERE name = %s",
        (name,),
    ).fetchone()

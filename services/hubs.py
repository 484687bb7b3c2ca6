"""Hubs: declaring them (no job: a hub is a record until its worker connects) and noticing
when their worker falls silent."""

from __future__ import annotations

from typing import Any

from psycopg import Connection
from psycopg.rows import DictRow

from db import audit
from db.hubs import create_hub, get_hub, list_hubs, mark_stale_hubs
from db.rows import HubRow
from elysium.errors import NotFound


def declare_hub(conn: Connection[DictRow], actor: str, name: str, endpoint: str) -> HubRow:
    with conn.transaction():
        hub = create_hub(conn, name, endpoint)
        audit.record(conn, actor, "create_hub", f"hub:{name}", "succeeded", {"endpoint": endpoint})
    return hub


def ensure_hub(conn: Connection[DictRow], actor: str, name: str, endpoint: str) -> HubRow:
    """The hub ``name``, declared with ``endpoint`` if it does not exist yet."""
    try:
        return get_hub(conn, name)
    except NotFound:
        return declare_hub(conn, actor, name, endpoint)


def mark_silent_hubs_stale(
    conn: Connection[DictRow], actor: str, silent_after_s: float
) -> list[str]:
    """Hubs whose worker has not beaten for ``silent_after_s`` become stale (each audited)."""
    with conn.transaction():
        stale = mark_stale_hubs(conn, silent_after_s)
        for name in stale:
            audit.record(
                conn, actor, "hub.stale", f"hub:{name}", "stale", {"silent_for_s": silent_after_s}
            )
    return stale


def live_hubs(conn: Connection[DictRow]) -> list[str]:
    """Hubs whose worker has a recent heartbeat (a silent hub's queue is not fed)."""
    return [h["name"] for h in list_hubs(conn) if not h["stale"]]


def record_reconcile(
    conn: Connection[DictRow], hub: str, changed: dict[str, Any], seconds: float
) -> None:
    """Audit one hub's reconcile: what it changed (nothing, when the hub was right)."""
    with conn.transaction():
        audit.record(
            conn,
            f"hub:{hub}",
            "reconcile",
            f"hub:{hub}",
            "changed" if changed else "unchanged",
            {"changes": changed, "seconds": round(seconds, 3)},
        )

"""Declaring hubs (no job: a hub is a record until its worker connects)."""

from __future__ import annotations

from typing import Any

from psycopg import Connection
from psycopg.rows import DictRow

from db import audit
from db.hubs import create_hub


def declare_hub(conn: Connection[DictRow], actor: str, name: str, endpoint: str) -> dict[str, Any]:
    with conn.transaction():
        hub = create_hub(conn, name, endpoint)
        audit.record(conn, actor, "create_hub", f"hub:{name}", "succeeded", {"endpoint": endpoint})
    return hub

"""Queries for hubs and their workers' heartbeats."""

from __future__ import annotations

import contextlib
import ipaddress
from typing import Any, cast

from psycopg import Connection, errors
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from db.rows import HubRow
from elysium.errors import Conflict, NotFound
from elysium.networks import endpoint_address

HUB_COLUMNS = "id, name, endpoint, created_at, last_heartbeat_at, worker, stale"


def create_hub(conn: Connection[DictRow], name: str, endpoint: str) -> HubRow:
    try:
        with conn.transaction():
            row = conn.execute(
                f"INSERT INTO hubs (name, endpoint) VALUES (%s, %s) RETURNING {HUB_COLUMNS}",
                (name, endpoint),
            ).fetchone()
    except errors.UniqueViolation:
        raise Conflict(
            f"hub {name!r} exists", code="hub_exists", fields={"name": "exists"}
        ) from None
    assert row is not None
    return cast(HubRow, row)


def get_hub(conn: Connection[DictRow], name: str) -> HubRow:
    row = conn.execute(f"SELECT {HUB_COLUMNS} FROM hubs WHERE name = %s", (name,)).fetchone()
    if row is None:
        raise NotFound(f"hub {name!r} does not exist", code="hub_not_found")
    return cast(HubRow, row)


def list_hubs(conn: Connection[DictRow]) -> list[HubRow]:
    return cast(
        list[HubRow], conn.execute(f"SELECT {HUB_COLUMNS} FROM hubs ORDER BY name").fetchall()
    )


def record_heartbeat(conn: Connection[DictRow], name: str, worker: dict[str, Any]) -> None:
    """A hub worker says it is alive; an unknown hub is an error (hubs are declared by admins)."""
    cur = conn.execute(
        "UPDATE hubs SET last_heartbeat_at = now(), worker = %s, stale = false WHERE name = %s",
        (Jsonb(worker), name),
    )
    if cur.rowcount == 0:
        raise NotFound(f"hub {name!r} does not exist", code="hub_not_found")


def mark_stale_hubs(conn: Connection[DictRow], older_than_s: float) -> list[str]:
    """Mark hubs whose worker has been silent too long; return their names."""
    rows = conn.execute(
        "UPDATE hubs SET stale = true WHERE NOT stale AND (last_heartbeat_at IS NULL"
        " OR last_heartbeat_at < now() - make_interval(secs => %s)) RETURNING name",
        (older_than_s,),
    ).fetchall()
    return [r["name"] for r in rows]


def own_addresses(conn: Connection[DictRow], hub_id: int) -> list[tuple[str, str]]:
    """The hub's own addresses as ``(address, what)``: its endpoint when that is an IP literal,
    and the underlay addresses its worker reported in its last heartbeat."""
    row = conn.execute(
        "SELECT name, endpoint, worker->'addresses' AS addresses FROM hubs WHERE id = %s",
        (hub_id,),
    ).fetchone()
    if row is None:
        return []
    found: list[tuple[str, str]] = []
    endpoint = endpoint_address(row["endpoint"])
    if endpoint is not None:
        found.append((str(endpoint), f"the endpoint of hub {row['name']}"))
    reported = row["addresses"] if isinstance(row["addresses"], list) else []
    for text in reported:
        with contextlib.suppress(ValueError, TypeError):
            address = ipaddress.ip_address(text)
            found.append((str(address), f"an underlay address of hub {row['name']}"))
    return found

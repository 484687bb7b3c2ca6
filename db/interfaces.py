"""Queries for WireGuard interfaces on hubs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from psycopg import Connection, errors
from psycopg.rows import DictRow

from db.addresses import create_pools
from db.peers import LIVE
from db.rows import InterfaceRow
from elysium.errors import Conflict, NotFound
from elysium.states import InterfaceStatus

INTERFACE_COLUMNS = (
    "i.id, i.hub_id, h.name AS hub, h.endpoint AS hub_endpoint, i.name,"
    " i.network::text AS network, i.network6::text AS network6, i.listen_port, i.mtu, i.dns,"
    " i.keepalive, i.public_key, i.status, i.routes::text[] AS routes, i.exit, i.nat, i.direct,"
    " i.policy, i.created_at, i.updated_at, h.mesh_port IS NOT NULL AS hub_meshed"
)
FROM_INTERFACES = "FROM interfaces i JOIN hubs h ON h.id = i.hub_id"


def create_interface(
    conn: Connection[DictRow],
    hub_id: int,
    name: str,
    network: str,
    network6: str | None,
    listen_port: int,
    mtu: int | None,
    dns: list[str],
    keepalive: int | None,
) -> InterfaceRow:
    """Record a desired interface and its address pools in the caller's transaction."""
    try:
        with conn.transaction():
            row = conn.execute(
                "INSERT INTO interfaces (hub_id, name, network, network6, listen_port, mtu, dns,"
                " keepalive) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                (hub_id, name, network, network6, listen_port, mtu, dns, keepalive),
            ).fetchone()
            assert row is not None
            create_pools(conn, row["id"], network6 is not None)
    except errors.UniqueViolation as exc:
        constraint = exc.diag.constraint_name or ""
        if "listen_port" in constraint:
            raise Conflict(
                "listen port already used on this hub",
                code="port_in_use",
                fields={"listen_port": "already used on this hub"},
            ) from None
        raise Conflict(
            f"interface {name!r} exists on this hub",
            code="interface_exists",
            fields={"name": "exists on this hub"},
        ) from None
    return get_interface(conn, row["id"])


def get_interface(
    conn: Connection[DictRow], interface_id: int, *, lock: bool = False
) -> InterfaceRow:
    sql = f"SELECT {INTERFACE_COLUMNS} {FROM_INTERFACES} WHERE i.id = %s"
    if lock:
        sql += " FOR UPDATE OF i"
    row = conn.execute(sql, (interface_id,)).fetchone()
    if row is None:
        raise NotFound(f"interface {interface_id} does not exist", code="interface_not_found")
    return cast(InterfaceRow, row)


def list_hub_interfaces(conn: Connection[DictRow], hub_name: str) -> list[InterfaceRow]:
    rows = conn.execute(
        f"SELECT {INTERFACE_COLUMNS} {FROM_INTERFACES} WHERE h.name = %s ORDER BY i.id", (hub_name,)
    ).fetchall()
    return cast(list[InterfaceRow], rows)


def set_interface_ready(conn: Connection[DictRow], interface_id: int, public_key: str) -> None:
    conn.execute(
        f"UPDATE interfaces SET public_key = %s, status = '{InterfaceStatus.READY}',"
        f" updated_at = now() WHERE id = %s AND status <> '{InterfaceStatus.DELETING}'",
        (public_key, interface_id),
    )


def set_interface_status(conn: Connection[DictRow], interface_id: int, status: str) -> None:
    conn.execute(
        "UPDATE interfaces SET status = %s, updated_at = now() WHERE id = %s",
        (status, interface_id),
    )


def delete_interface(conn: Connection[DictRow], interface_id: int) -> None:
    conn.execute("DELETE FROM interfaces WHERE id = %s", (interface_id,))


def update_interface(conn: Connection[DictRow], interface_id: int, changes: dict[str, Any]) -> None:
    """Change ``routes``, ``exit``, ``nat``, ``direct`` or ``policy`` (the caller validated
    them)."""
    allowed = {"routes": "%s::cidr[]", "exit": "%s", "nat": "%s", "direct": "%s", "policy": "%s"}
    sets = []
    for key in changes:
        if key not in allowed:
            raise ValueError(key)
        sets.append(f"{key} = {allowed[key]}")
    if sets:
        conn.execute(
            f"UPDATE interfaces SET {', '.join(sets)}, updated_at = now() WHERE id = %s",
            [*changes.values(), interface_id],
        )


def interface_nat_said(conn: Connection[DictRow], interface_id: int) -> bool:
    """Whether the operator has said anything about NAT (``null`` included)."""
    row = conn.execute(
        "SELECT nat IS NOT NULL AS said FROM interfaces WHERE id = %s", (interface_id,)
    ).fetchone()
    return bool(row and row["said"])


def policy_vocabulary(
    conn: Connection[DictRow], interface_id: int, linked_hubs: Sequence[int] = ()
) -> tuple[set[str], set[int]]:
    """The tags a policy of the interface may name (those of its live peers and of its
    enrollment tokens, and of the interfaces of ``linked_hubs``: hubs across the mesh) and
    the ids of its live peers."""
    mine = "(SELECT id FROM interfaces WHERE id = %s OR hub_id = ANY(%s))"
    row = conn.execute(
        f"SELECT ARRAY(SELECT DISTINCT unnest(p.tags) FROM peers p WHERE p.interface_id IN {mine}"
        f"  AND {LIVE} UNION SELECT DISTINCT unnest(t.tags) FROM enrollment_tokens t"
        f"  WHERE t.interface_id IN {mine}) AS tags,"
        f" ARRAY(SELECT p.id FROM peers p WHERE p.interface_id = %s AND {LIVE}) AS peers",
        (interface_id, list(linked_hubs), interface_id, list(linked_hubs), interface_id),
    ).fetchone()
    assert row is not None
    return set(row["tags"]), set(row["peers"])

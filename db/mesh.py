"""Queries for the hub mesh: who is meshed, what lies behind a hub, and what each end of a
link last saw of the other."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from psycopg import Connection
from psycopg.rows import DictRow

from db.peer_states import LIVE
from elysium.mesh import MeshMember, links_of
from elysium.states import InterfaceStatus

MESH_COLUMNS = (
    "id, name, endpoint, stale, mesh_port, mesh_endpoint, mesh_peers, mesh_public_key,"
    " mesh_joined_at"
)


def meshed_hubs(conn: Connection[DictRow]) -> list[dict[str, Any]]:
    """Every hub in the mesh, by name."""
    return conn.execute(
        f"SELECT {MESH_COLUMNS} FROM hubs WHERE mesh_port IS NOT NULL ORDER BY name"
    ).fetchall()


def members(rows: Sequence[dict[str, Any]]) -> list[MeshMember]:
    return [
        MeshMember(r["name"], tuple(r["mesh_peers"]) if r["mesh_peers"] is not None else None)
        for r in rows
    ]


def mesh_of(
    conn: Connection[DictRow], hub: str
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """Hub ``hub``'s mesh row (None: not meshed) and the meshed hubs it has a link to."""
    rows = meshed_hubs(conn)
    names = set(links_of(hub, members(rows)))
    me = next((r for r in rows if r["name"] == hub), None)
    return me, [r for r in rows if r["name"] in names]


def linked_hubs(conn: Connection[DictRow], hub: str) -> list[dict[str, Any]]:
    """The meshed hubs ``hub`` has a link to (none when it is not meshed)."""
    return mesh_of(conn, hub)[1]


def set_mesh(
    conn: Connection[DictRow],
    hub_id: int,
    listen_port: int,
    endpoint: str,
    peers: Sequence[str] | None,
) -> None:
    conn.execute(
        "UPDATE hubs SET mesh_port = %s, mesh_endpoint = %s, mesh_peers = %s,"
        " mesh_joined_at = coalesce(mesh_joined_at, now()) WHERE id = %s",
        (listen_port, endpoint, list(peers) if peers is not None else None, hub_id),
    )


def clear_mesh(conn: Connection[DictRow], hub_id: int) -> None:
    conn.execute(
        "UPDATE hubs SET mesh_port = NULL, mesh_endpoint = NULL, mesh_peers = NULL,"
        " mesh_joined_at = NULL WHERE id = %s",
        (hub_id,),
    )
    conn.execute("DELETE FROM mesh_links WHERE hub_id = %s OR peer_hub_id = %s", (hub_id, hub_id))


def record_mesh_key(conn: Connection[DictRow], hub: str, public_key: str) -> bool:
    """The hub's worker reports its mesh public key; True when it is new or changed."""
    cur = conn.execute(
        "UPDATE hubs SET mesh_public_key = %s WHERE name = %s"
        " AND mesh_public_key IS DISTINCT FROM %s",
        (public_key, hub, public_key),
    )
    return cur.rowcount > 0


def interface_networks(
    conn: Connection[DictRow], hub_ids: Sequence[int]
) -> dict[int, list[tuple[str, str]]]:
    """What each hub routes to its interfaces: their networks (IPv4 and IPv6) and pushed
    routes, as ``(network, what)`` (``wg0``, ``wg0's route``)."""
    rows = conn.execute(
        "SELECT hub_id, name, network::text AS network, network6::text AS network6,"
        " routes::text[] AS routes FROM interfaces WHERE hub_id = ANY(%s)"
        f" AND status <> '{InterfaceStatus.DELETING}' ORDER BY id",
        (list(hub_ids),),
    ).fetchall()
    out: dict[int, list[tuple[str, str]]] = {h: [] for h in hub_ids}
    for r in rows:
        out[r["hub_id"]] += [(n, r["name"]) for n in (r["network"], r["network6"]) if n]
        out[r["hub_id"]] += [(n, f"{r['name']}'s route") for n in r["routes"]]
    return out


def networks_behind(conn: Connection[DictRow], hub_ids: Sequence[int]) -> dict[int, list[str]]:
    """What each hub routes to: its interface networks, their pushed routes and the subnets
    of their live, enabled peers (sorted, without repeats)."""
    rows = conn.execute(
        "SELECT i.hub_id, n::text AS net FROM interfaces i,"
        " unnest(ARRAY[i.network, i.network6] || i.routes) AS n"
        f" WHERE i.hub_id = ANY(%s) AND i.status <> '{InterfaceStatus.DELETING}' AND n IS NOT NULL"
        " UNION SELECT i.hub_id, s::text FROM peers p JOIN interfaces i ON i.id = p.interface_id,"
        f" unnest(p.subnets) AS s WHERE i.hub_id = ANY(%s) AND p.enabled AND {LIVE}"
        f" AND i.status <> '{InterfaceStatus.DELETING}'",
        (list(hub_ids), list(hub_ids)),
    ).fetchall()
    out: dict[int, list[str]] = {h: [] for h in hub_ids}
    for r in rows:
        out[r["hub_id"]].append(r["net"])
    return {h: sorted(set(nets)) for h, nets in out.items()}


def remote_peers(conn: Connection[DictRow], hub_ids: Sequence[int]) -> list[dict[str, Any]]:
    """The live, enabled, tagged peers of these hubs: who a tag names across the mesh."""
    if not hub_ids:
        return []
    return conn.execute(
        "SELECT p.id, host(p.address) AS address, host(p.address6) AS address6,"
        " p.subnets::text[] AS subnets, p.tags FROM peers p"
        " JOIN interfaces i ON i.id = p.interface_id"
        f" WHERE i.hub_id = ANY(%s) AND p.enabled AND {LIVE} AND p.tags <> '{{}}' ORDER BY p.id",
        (list(hub_ids),),
    ).fetchall()


def hubs_using_tags(
    conn: Connection[DictRow], hub_ids: Sequence[int], tags: Sequence[str]
) -> set[int]:
    """Those of ``hub_ids`` with an interface whose policy names one of ``tags``."""
    if not hub_ids or not tags:
        return set()
    rows = conn.execute(
        "SELECT DISTINCT i.hub_id FROM interfaces i, jsonb_array_elements(i.policy->'rules') r"
        " WHERE i.hub_id = ANY(%s) AND (r->>'from' = ANY(%s) OR r->>'to' = ANY(%s))",
        (list(hub_ids), [f"tag:{t}" for t in tags], [f"tag:{t}" for t in tags]),
    ).fetchall()
    return {r["hub_id"] for r in rows}


def notify_configs(conn: Connection[DictRow], hub_ids: Sequence[int]) -> None:
    """The configs of these hubs' peers may have moved (what lies across the mesh did):
    wake their followers at commit."""
    if hub_ids:
        conn.execute(
            "SELECT pg_notify('peer_config', 'i' || id::text) FROM interfaces"
            " WHERE hub_id = ANY(%s)",
            (list(hub_ids),),
        )


def record_link_stats(
    conn: Connection[DictRow],
    hub_id: int,
    stats: Sequence[tuple[int, str | None, datetime | None, int, int]],
) -> None:
    """What the hub's mesh device holds for each linked hub: ``(peer hub id, endpoint,
    last handshake, rx, tx)``; one statement, clearing a link's earlier error."""
    if not stats:
        return
    conn.execute(
        "INSERT INTO mesh_links (hub_id, peer_hub_id, endpoint, last_handshake_at, rx_bytes,"
        " tx_bytes) SELECT %s, * FROM unnest(%s::bigint[], %s::text[], %s::timestamptz[],"
        " %s::bigint[], %s::bigint[]) ON CONFLICT (hub_id, peer_hub_id) DO UPDATE SET"
        " endpoint = excluded.endpoint, last_handshake_at = excluded.last_handshake_at,"
        " rx_bytes = excluded.rx_bytes, tx_bytes = excluded.tx_bytes, error_code = NULL,"
        " error_message = NULL, updated_at = now()",
        (hub_id, *(list(col) for col in zip(*stats, strict=True))),
    )


def record_link_error(
    conn: Connection[DictRow], hub_id: int, peer_hub_id: int, code: str, message: str
) -> None:
    conn.execute(
        "INSERT INTO mesh_links (hub_id, peer_hub_id, error_code, error_message)"
        " VALUES (%s, %s, %s, %s) ON CONFLICT (hub_id, peer_hub_id) DO UPDATE SET"
        " error_code = excluded.error_code, error_message = excluded.error_message,"
        " updated_at = now()",
        (hub_id, peer_hub_id, code, message),
    )


def link_rows(conn: Connection[DictRow], hub_id: int) -> dict[int, dict[str, Any]]:
    """What this hub last recorded of each link, by the other hub's id."""
    rows = conn.execute(
        "SELECT peer_hub_id, endpoint, last_handshake_at, rx_bytes, tx_bytes, error_code,"
        " error_message, updated_at FROM mesh_links WHERE hub_id = %s",
        (hub_id,),
    ).fetchall()
    return {r["peer_hub_id"]: r for r in rows}

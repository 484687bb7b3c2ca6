"""Direct paths' candidates: what a peer's client reports of itself (its local addresses and
WireGuard listen port, with the time) beside the endpoint its hub saw it at (``peers.endpoint``,
written by liveness)."""

from __future__ import annotations

from typing import Any

from psycopg import Connection
from psycopg.rows import DictRow

from db.peer_states import LIVE, NOT_ENDED


def set_candidates(
    conn: Connection[DictRow], peer_id: int, addresses: list[str], listen_port: int
) -> None:
    """Store what the peer reported, replacing what it said before (rewritten only when it
    differs, so an unchanged report wakes no follower)."""
    conn.execute(
        "INSERT INTO peer_candidates (peer_id, addresses, listen_port) VALUES (%s, %s::inet[], %s)"
        " ON CONFLICT (peer_id) DO UPDATE SET addresses = EXCLUDED.addresses,"
        " listen_port = EXCLUDED.listen_port, reported_at = now()"
        " WHERE (peer_candidates.addresses, peer_candidates.listen_port)"
        " IS DISTINCT FROM (EXCLUDED.addresses, EXCLUDED.listen_port)",
        (peer_id, addresses, listen_port),
    )


def get_candidates(conn: Connection[DictRow], peer_id: int) -> dict[str, Any] | None:
    """``{addresses, listen_port, reported_at}`` as last reported, or None."""
    row = conn.execute(
        "SELECT array(SELECT host(a) FROM unnest(addresses) a) AS addresses, listen_port,"
        " reported_at FROM peer_candidates WHERE peer_id = %s",
        (peer_id,),
    ).fetchone()
    return dict(row) if row else None


def tunnel_addresses(conn: Connection[DictRow], addresses: list[str], peer_id: int) -> list[str]:
    """Which of ``addresses`` are another not-ended peer's tunnel address (any interface)."""
    rows = conn.execute(
        "SELECT host(a) AS a FROM unnest(%s::inet[]) a WHERE EXISTS (SELECT 1 FROM peers p"
        f" WHERE (p.address = a OR p.address6 = a) AND p.id <> %s AND {NOT_ENDED})",
        (addresses, peer_id),
    ).fetchall()
    return [r["a"] for r in rows]


def direct_peers(conn: Connection[DictRow], interface_id: int) -> list[dict[str, Any]]:
    """The interface's live, enabled peers with what direct paths need of each: key, tunnel
    addresses, tags, subnets, the endpoint the hub last saw and its reported candidates."""
    rows = conn.execute(
        "SELECT p.id, p.public_key, host(p.address) AS address, host(p.address6) AS address6,"
        " p.subnets::text[] AS subnets, p.tags, p.endpoint,"
        " coalesce(array(SELECT host(a) FROM unnest(c.addresses) a), '{}') AS local_addresses,"
        " c.listen_port FROM peers p LEFT JOIN peer_candidates c ON c.peer_id = p.id"
        f" WHERE p.interface_id = %s AND p.enabled AND {LIVE} ORDER BY p.id",
        (interface_id,),
    ).fetchall()
    return [dict(r) for r in rows]


def set_paths(conn: Connection[DictRow], peer_id: int, paths: list[dict[str, Any]]) -> None:
    """Replace what the peer reported of its paths (one row per other peer)."""
    conn.execute("DELETE FROM peer_paths WHERE peer_id = %s", (peer_id,))
    if paths:
        conn.execute(
            "INSERT INTO peer_paths (peer_id, other_id, path, endpoint, why)"
            " SELECT %s, o, p, e, w FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[])"
            " AS t(o, p, e, w)",
            (
                peer_id,
                [p["peer_id"] for p in paths],
                [p["path"] for p in paths],
                [p.get("endpoint") for p in paths],
                [p.get("why") for p in paths],
            ),
        )


def paths_of(conn: Connection[DictRow], peer_id: int) -> list[dict[str, Any]]:
    """The peer's paths as it last reported them, by the other peer's id."""
    rows = conn.execute(
        "SELECT other_id AS peer_id, path, endpoint, why, reported_at FROM peer_paths"
        " WHERE peer_id = %s ORDER BY other_id",
        (peer_id,),
    ).fetchall()
    return [dict(r) for r in rows]


def peers_of_interface(conn: Connection[DictRow], interface_id: int, ids: list[int]) -> set[int]:
    """Which of ``ids`` are not-ended peers of the interface."""
    rows = conn.execute(
        f"SELECT p.id FROM peers p WHERE p.interface_id = %s AND p.id = ANY(%s) AND {NOT_ENDED}",
        (interface_id, ids),
    ).fetchall()
    return {r["id"] for r in rows}

"""Address allocation: the lowest free host address, concurrency-safe, without a peer scan.

Each interface has one ``address_pools`` row per family holding the next never-used offset,
and a ``released_addresses`` set. Every address below the offset is taken unless released, so
the lowest free address is the least released one, else the offset. The pool row is locked
``FOR UPDATE``: two transactions allocating on one interface take turns, never one address.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from psycopg import Connection
from psycopg.rows import DictRow

from elysium.errors import NetworkFull, NotFound
from elysium.networks import last_offset


def create_pools(conn: Connection[DictRow], interface_id: int, has_ipv6: bool) -> None:
    """Make the allocation state of a new interface (offset 1 is the hub's)."""
    conn.execute("INSERT INTO address_pools (interface_id, family) VALUES (%s, 4)", (interface_id,))
    if has_ipv6:
        conn.execute(
            "INSERT INTO address_pools (interface_id, family) VALUES (%s, 6)", (interface_id,)
        )


def allocate_address(conn: Connection[DictRow], interface_id: int, family: int = 4) -> str | None:
    """Take the lowest free host address of the interface's network in ``family``.

    Returns None when the interface has no network of that family. Must run inside the
    transaction that records the peer, so a rollback gives the address back.
    """
    # The common case in one statement: nothing released, so take the next offset (the
    # UPDATE locks the pool row until the commit, as FOR UPDATE would).
    taken = conn.execute(
        "UPDATE address_pools p SET next_offset = p.next_offset + 1 FROM interfaces i"
        " WHERE i.id = p.interface_id AND p.interface_id = %s AND p.family = %s"
        " AND NOT EXISTS (SELECT 1 FROM released_addresses r"
        "  WHERE r.interface_id = p.interface_id AND r.family = p.family)"
        " RETURNING p.next_offset - 1 AS offset, i.network, i.network6",
        (interface_id, family),
    ).fetchone()
    if taken is not None:
        return _at_offset(taken, family)
    row = conn.execute(
        "SELECT p.next_offset, i.network, i.network6, EXISTS (SELECT 1 FROM released_addresses r"
        "  WHERE r.interface_id = p.interface_id AND r.family = p.family) AS has_released"
        " FROM address_pools p JOIN interfaces i ON i.id = p.interface_id"
        " WHERE p.interface_id = %s AND p.family = %s FOR UPDATE OF p",
        (interface_id, family),
    ).fetchone()
    if row is None:
        exists = conn.execute("SELECT 1 FROM interfaces WHERE id = %s", (interface_id,)).fetchone()
        if exists is None:
            raise NotFound(f"interface {interface_id} does not exist", code="interface_not_found")
        return None
    if row["has_released"]:
        reused = conn.execute(
            "DELETE FROM released_addresses WHERE (interface_id, family, address) IN ("
            " SELECT interface_id, family, address FROM released_addresses"
            " WHERE interface_id = %s AND family = %s ORDER BY address LIMIT 1)"
            " RETURNING host(address) AS address",
            (interface_id, family),
        ).fetchone()
        if reused is not None:
            return str(reused["address"])
    conn.execute(
        "UPDATE address_pools SET next_offset = next_offset + 1"
        " WHERE interface_id = %s AND family = %s",
        (interface_id, family),
    )
    return _at_offset({**row, "offset": row["next_offset"]}, family)


def _at_offset(row: dict[str, Any], family: int) -> str:
    """The address at the pool offset just taken; NetworkFull past the last host (the
    caller's transaction is then rolled back, and the offset with it)."""
    network = ipaddress.ip_network(row["network"] if family == 4 else row["network6"])
    offset = int(row["offset"])
    if offset > last_offset(network):
        raise NetworkFull(
            f"network {network} has no free address",
            fields={"network" if family == 4 else "network6": "no free address"},
        )
    return str(network.network_address + offset)


def release_address(conn: Connection[DictRow], interface_id: int, address: str | None) -> None:
    """Give an address back to its interface's pool (a no-op for None)."""
    if address is None:
        return
    family = ipaddress.ip_address(address).version
    conn.execute(
        "INSERT INTO released_addresses (interface_id, family, address) VALUES (%s, %s, %s)"
        " ON CONFLICT DO NOTHING",
        (interface_id, family, address),
    )

"""A peer's config as its client reads it (``GET /v1/peer/config``, an enrollment's result):
its addresses, the hub's key and endpoint, what it routes into the tunnel — the interface's
networks, other peers' subnets, pushed routes, the networks across the mesh its policy may
reach — and a ``version`` that moves whenever any of it moves."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from psycopg import Connection
from psycopg.rows import DictRow, tuple_row

from db.mesh import linked_hubs, networks_behind
from db.peers import others_subnets, routed_subnets
from elysium.config_delta import config_version
from elysium.errors import NotFound
from elysium.mesh import may_reach
from elysium.networks import client_allowed_ips, endpoint_with_port, hub_addresses
from elysium.policy import policy_from_json


def peer_config(conn: Connection[DictRow], peer_id: int) -> dict[str, Any]:
    """Everything a peer needs to bring its tunnel up (no private key: it never leaves the peer),
    with its ``version`` (see ``config_version``)."""
    return config_from_row(conn, config_row(conn, peer_id))


PEER_COLUMNS = (
    "p.id, p.interface_id, host(p.address) AS address, host(p.address6) AS address6,"
    " p.status, p.public_key, p.tags"
)
INTERFACE_COLUMNS = (
    "i.network::text AS network, i.network6::text AS network6,"
    " i.listen_port, i.mtu, i.dns, i.keepalive, i.public_key AS hub_public_key,"
    " i.routes::text[] AS routes, i.exit, i.policy,"
    " h.name AS hub, h.mesh_port IS NOT NULL AS hub_meshed, h.endpoint"
)


def config_row(conn: Connection[DictRow], peer_id: int) -> dict[str, Any]:
    """The peer's row with its interface's and hub's (``status`` too): one query."""
    row = conn.execute(
        f"SELECT {PEER_COLUMNS}, {INTERFACE_COLUMNS} FROM peers p"
        " JOIN interfaces i ON i.id = p.interface_id JOIN hubs h ON h.id = i.hub_id"
        " WHERE p.id = %s",
        (peer_id,),
    ).fetchone()
    if row is None:
        raise NotFound(f"peer {peer_id} does not exist", code="peer_not_found")
    return dict(row)


class ConfigRows(Mapping[int, dict[str, Any]]):
    """:func:`config_row` of every peer of an interface, by id, each made when asked for: a
    fan-out's one read keeps the peers' values as the database sent them, and each woken
    follower makes only its own row (10,000 rows made at once held every follower of the
    process waiting for the read)."""

    def __init__(
        self, names: Sequence[str], peers: dict[int, tuple[Any, ...]], shared: dict[str, Any]
    ) -> None:
        self._names, self._peers, self._shared = tuple(names), peers, shared

    def __getitem__(self, peer_id: int) -> dict[str, Any]:
        return {**dict(zip(self._names, self._peers[peer_id], strict=True)), **self._shared}

    def __iter__(self) -> Iterator[int]:
        return iter(self._peers)

    def __len__(self) -> int:
        return len(self._peers)


def config_rows(conn: Connection[DictRow], interface_id: int) -> ConfigRows:
    """:func:`config_row` of every peer of the interface (ended ones too), by id: two queries
    for all of them."""
    shared = conn.execute(
        f"SELECT {INTERFACE_COLUMNS} FROM interfaces i JOIN hubs h ON h.id = i.hub_id"
        " WHERE i.id = %s",
        (interface_id,),
    ).fetchone()
    if shared is None:
        return ConfigRows((), {}, {})
    cur = conn.cursor(row_factory=tuple_row)
    cur.execute(f"SELECT {PEER_COLUMNS} FROM peers p WHERE p.interface_id = %s", (interface_id,))
    names = [column.name for column in cur.description or ()]
    at = names.index("id")
    return ConfigRows(names, {r[at]: r for r in cur.fetchall()}, dict(shared))


def config_from_row(
    conn: Connection[DictRow],
    row: dict[str, Any],
    subnets: list[tuple[int, str]] | None = None,
) -> dict[str, Any]:
    """:func:`peer_config` from its :func:`config_row`; ``subnets``: the interface's
    :func:`db.peers.interface_subnets`, when already read (else they are read here)."""
    net = ipaddress.ip_network(row["network"])
    addresses = [f"{row['address']}/{net.prefixlen}"] if row["address"] else []
    if row["network6"] and row["address6"]:
        net6 = ipaddress.ip_network(row["network6"])
        addresses.append(f"{row['address6']}/{net6.prefixlen}")
    across = mesh_routes(conn, row)
    config = {
        "peer_id": row["id"],
        "interface_id": row["interface_id"],
        "public_key": row["public_key"],
        "address": row["address"],
        "address6": row["address6"],
        "addresses": addresses,
        "allowed_ips": client_allowed_ips(
            row["network"],
            row["network6"],
            routed_subnets(conn, row["interface_id"], row["id"])
            if subnets is None
            else others_subnets(subnets, row["id"]),
            [*row["routes"], *across],
            row["exit"],
        ),
        "routes": row["routes"],
        "mesh_routes": across,
        "exit": row["exit"],
        "tags": row["tags"],
        "hub_public_key": row["hub_public_key"],
        "hub_addresses": hub_addresses(row["network"], row["network6"]),
        "endpoint": endpoint_with_port(row["endpoint"], row["listen_port"]),
        "keepalive": row["keepalive"],
        "dns": list(row["dns"] or []),
        "mtu": row["mtu"],
    }
    return {**config, "version": config_version(config)}


def mesh_routes(conn: Connection[DictRow], row: dict[str, Any]) -> list[str]:
    """The networks behind the hubs linked to this peer's hub that its interface's policy
    can let it reach (see ``elysium.mesh.may_reach``)."""
    if not row["hub_meshed"]:  # most hubs: no query
        return []
    linked = linked_hubs(conn, row["hub"])
    if not linked:
        return []
    rules = policy_from_json(row["policy"])
    own = [a for a in (row["address"], row["address6"]) if a]
    behind = networks_behind(conn, [h["id"] for h in linked])
    return [
        net
        for h in linked
        for net in behind[h["id"]]
        if may_reach(rules, row["id"], row["tags"], own, net)
    ]

"""A hub worker's heartbeat reports its underlay addresses (not its WireGuard devices'), so the
API can refuse routed subnets that would cut the hub off."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from psycopg import Connection
from psycopg.rows import DictRow
from psycopg_pool import ConnectionPool

from db.hubs import create_hub, get_hub
from db.interfaces import create_interface
from elysium.settings import Settings
from tests.netns import Topology, run
from workers.hub import HubWorker

pytestmark = pytest.mark.netns


def test_the_heartbeat_reports_underlay_addresses_but_not_wireguard_ones(
    settings: Settings,
    pool: ConnectionPool[Connection[DictRow]],
    conn: Connection[DictRow],
    netns_topology: Topology,
) -> None:
    hub = create_hub(conn, "hub-beat", "hub.example")
    create_interface(conn, hub["id"], "wg0", "10.77.0.0/24", None, 51820, None, [], 25)
    ns = netns_topology.hub
    # Stand-ins (a veth pair: this kernel has no dummy links) for the hub's WireGuard device,
    # named as its interface, and a second uplink.
    run("ip", "-n", ns, "link", "add", "wg0", "type", "veth", "peer", "name", "uplink2")
    run("ip", "-n", ns, "addr", "add", "10.77.0.1/24", "dev", "wg0")
    run("ip", "-n", ns, "addr", "add", "203.0.113.5/24", "dev", "uplink2")
    run("ip", "-n", ns, "addr", "add", "2001:db8:7::5/64", "dev", "uplink2", "nodad")
    try:
        worker = HubWorker(replace(settings, hub="hub-beat", netns=ns), pool)
        worker.beat()
        info: dict[str, Any] = get_hub(conn, "hub-beat")["worker"]
    finally:
        run("ip", "-n", ns, "link", "del", "wg0")  # and uplink2, its other end
    addresses = set(info["addresses"])
    assert {netns_topology.hub_ip, "203.0.113.5", "2001:db8:7::5"} <= addresses
    assert "10.77.0.1" not in addresses and "127.0.0.1" not in addresses
    assert info["netns"] == ns


def test_a_heartbeat_without_its_namespace_still_beats(
    settings: Settings, pool: ConnectionPool[Connection[DictRow]], conn: Connection[DictRow]
) -> None:
    create_hub(conn, "hub-gone", "hub.example")
    worker = HubWorker(replace(settings, hub="hub-gone", netns="ely-no-such-ns"), pool)
    worker.beat()
    hub = get_hub(conn, "hub-gone")
    assert hub["last_heartbeat_at"] is not None and "addresses" not in hub["worker"]

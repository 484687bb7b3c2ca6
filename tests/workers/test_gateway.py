"""The hub as a gateway, on real wireguard-go in namespaces of this test only: two peers talk
to each other through the hub's one WireGuard interface, as peers of an Elysium hub do.

    peer 1 10.97.0.2 ─┐
                      wg0 10.97.0.1 (hub) — forwards peer to peer, back out of wg0
    peer 2 10.97.0.3 ─┘
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dataplane import InterfaceSpec, PeerSpec
from dataplane.uapi import UapiDriver
from tests.netns import Topology, in_ns, ping
from workers.forwarding import SYSCTLS, Forwarding

pytestmark = pytest.mark.netns

HUB_IP, PEER_IPS = "10.97.0.1", ("10.97.0.2", "10.97.0.3")
PORT = 51820


@dataclass
class Tunnels:
    topo: Topology
    state: Path


@pytest.fixture(scope="module")
def tunnels(netns_topology: Topology) -> Iterator[Tunnels]:
    topo = netns_topology
    state = Path(tempfile.mkdtemp(prefix="ely-gw-", dir="/tmp"))  # short: UAPI socket paths
    drivers = [UapiDriver(state / "hub", topo.hub)]
    drivers += [UapiDriver(state / f"p{i}", ns) for i, ns in enumerate(topo.peers)]
    try:
        hub_key, _ = drivers[0].ensure_interface(
            InterfaceSpec("wg0", state / "hub.key", PORT, (f"{HUB_IP}/24",))
        )
        peers = []
        for i, driver in enumerate(drivers[1:]):
            spec = InterfaceSpec("wg0", state / f"p{i}.key", PORT, (f"{PEER_IPS[i]}/24",))
            key, _ = driver.ensure_interface(spec)
            hub = PeerSpec(hub_key, ("10.97.0.0/24",), endpoint=f"{topo.hub_ip}:{PORT}")
            driver.converge("wg0", [hub])
            endpoint = f"{topo.peer_ip(i)}:{PORT}"
            peers.append(PeerSpec(key, (f"{PEER_IPS[i]}/32",), endpoint=endpoint))
        drivers[0].converge("wg0", peers)
        yield Tunnels(topo, state)
    finally:
        for driver in drivers:
            driver.remove_interface("wg0")
            driver.close()
        shutil.rmtree(state, ignore_errors=True)


def redirects_sent(ns: str) -> int:
    """IcmpOutRedirects of the namespace (/proc/net/snmp is per namespace)."""
    lines = [ln.split() for ln in in_ns(ns, "cat", "/proc/net/snmp").stdout.splitlines()]
    names, values = [ln for ln in lines if ln[0] == "Icmp:"][:2]
    return int(values[names.index("OutRedirects")])


def sysctl(ns: str, key: str) -> str:
    return in_ns(ns, "cat", f"/proc/sys/{key}").stdout.strip()


def test_peers_reach_each_other_through_the_hub_without_redirects(tunnels: Tunnels) -> None:
    hub, (one, two) = tunnels.topo.hub, tunnels.topo.peers
    found = {key: sysctl(hub, key) for key in SYSCTLS}
    gateway = Forwarding(tunnels.state / "gw", hub)
    try:
        assert "net/ipv4/conf/wg0/send_redirects" in gateway.ensure(["wg0"])
        assert json.loads(gateway.saved.read_text()) == found
        sent = redirects_sent(hub)
        assert ping(one, PEER_IPS[1]) and ping(two, PEER_IPS[0])
        assert redirects_sent(hub) == sent == 0
        assert gateway.ensure(["wg0"]) == []  # nothing drifted

        # The kernel's default, as on a host nobody set up: every ping draws a redirect.
        in_ns(hub, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/conf/all/send_redirects")
        assert ping(one, PEER_IPS[1])
        assert redirects_sent(hub) > sent
        assert gateway.ensure(["wg0"]) == ["net/ipv4/conf/all/send_redirects"]  # drift repaired
        assert sysctl(hub, "net/ipv4/conf/all/send_redirects") == "0"
        assert json.loads(gateway.saved.read_text()) == found  # still what was first found
    finally:
        assert gateway.restore() is True  # the hub's last interface gone
    assert {key: sysctl(hub, key) for key in SYSCTLS} == found
    assert not gateway.saved.exists()
    assert gateway.restore() is False


def test_a_drifted_interface_switch_is_repaired(tunnels: Tunnels) -> None:
    hub = tunnels.topo.hub
    gateway = Forwarding(tunnels.state / "gw", hub)
    try:
        gateway.ensure(["wg0"])
        in_ns(hub, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/conf/wg0/accept_redirects")
        assert gateway.ensure(["wg0"]) == ["net/ipv4/conf/wg0/accept_redirects"]
        assert sysctl(hub, "net/ipv4/conf/wg0/accept_redirects") == "0"
        assert sysctl(hub, "net/ipv4/ip_forward") == "1"
    finally:
        gateway.restore()
    assert sysctl(hub, "net/ipv4/ip_forward") == "0"  # a new namespace does not forward


def test_a_saved_file_of_an_older_version_gains_the_new_switches(tunnels: Tunnels) -> None:
    hub = tunnels.topo.hub
    gateway = Forwarding(tunnels.state / "gw-old", hub)
    gateway.saved.parent.mkdir(parents=True, exist_ok=True)
    old = {"net/ipv4/ip_forward": "0", "net/ipv6/conf/all/forwarding": "0"}
    gateway.saved.write_text(json.dumps(old))  # forwarding only, as before redirects
    try:
        gateway.ensure(["wg0"])
        saved = json.loads(gateway.saved.read_text())
        assert saved.keys() == SYSCTLS.keys() and saved.items() >= old.items()
        assert re.fullmatch("[01]", saved["net/ipv4/conf/all/send_redirects"])
    finally:
        gateway.restore()
    assert sysctl(hub, "net/ipv4/conf/all/send_redirects") == "1"

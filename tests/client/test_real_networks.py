"""A peer as users have one: behind its own NAT router (masquerade), its hub not on-link, a
host beside it on its LAN, its router's address changing under it (roaming), or two routers
away from its hub (double NAT). With the interface an exit, the tunnel's own packets still
reach the hub (they carry the exit's mark and leave by the router), the hub's tunnel address
answers, the LAN host stays reachable, an outside host is reached through the hub's NAT, and
``down`` leaves no rule or route of the exit; ``run`` switches the exit on and off live."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from dataplane.uapi import UapiDriver
from tests.client.conftest import HUB_TUNNEL_IP, HubStack, run_client
from tests.client.test_follow import enroll, ok, start_follower
from tests.netns import UNDERLAY_PREFIX, in_ns, ping
from tests.stack import Process, wait_for

pytestmark = pytest.mark.netns

LAN = "192.168.77.0/24"
LAN_HOST = "192.168.77.3"
TABLE, MARK = "51820", "0xca6c"
OUTSIDE_HOST, HUB_EGRESS = "203.0.113.10", "203.0.113.1"


@pytest.fixture(scope="module")
def home(hub_stack: HubStack) -> Iterator[tuple[str, str]]:
    """The peer's namespace behind a NAT router, and a LAN host beside it."""
    topo = hub_stack.topology
    router = topo.add_nat_router("rt", 50, LAN)
    peer = topo.add_behind_router(router, "home", "192.168.77.2")
    lan_host = topo.add_behind_router(router, "lanh", LAN_HOST)
    # "The internet" past the hub: it answers only the hub's egress address (no other route).
    topo.add_behind_hub("out0", f"{HUB_EGRESS}/24", f"{OUTSIDE_HOST}/24", route=False)
    policy = {"default": "accept", "rules": []}
    job = hub_stack.api.call("PUT", f"/v1/interfaces/{hub_stack.interface_id}/policy", json=policy)
    hub_stack.api.wait_job(job["job_id"])
    yield peer, lan_host


def set_exit(stack: HubStack, on: bool) -> None:
    body = {"exit": on, "nat": {"egress": "out0"} if on else None}
    job = stack.api.call("PATCH", f"/v1/interfaces/{stack.interface_id}", json=body)
    stack.api.wait_job(job["job_id"])


def exit_rules(ns: str) -> list[str]:
    rules = in_ns(ns, "ip", "rule").stdout + in_ns(ns, "ip", "-6", "rule").stdout
    return [line for line in rules.splitlines() if TABLE in line or "suppress_prefixlength" in line]


def table_routes(ns: str) -> str:
    return in_ns(ns, "ip", "route", "show", "table", TABLE, check=False).stdout.strip()


def test_an_exit_behind_a_nat_router_keeps_its_tunnel_and_its_lan(
    hub_stack: HubStack, home: tuple[str, str], tmp_path: Path
) -> None:
    peer, _ = home
    assert ping(peer, hub_stack.topology.hub_ip)  # through the router: not on-link
    set_exit(hub_stack, True)
    state = tmp_path / "peer"
    enroll(hub_stack, state, "home-laptop", peer, [])
    try:
        ok("up", state_dir=state)
        assert ping(peer, HUB_TUNNEL_IP, tries=15)  # the handshake went out by the router
        assert ping(peer, LAN_HOST)  # the peer's own LAN is not captured
        assert ping(peer, OUTSIDE_HOST)  # answered to the hub's egress address: NAT there
        rules = exit_rules(peer)
        assert any(f"not from all fwmark {MARK} lookup {TABLE}" in r for r in rules), rules
        assert any("lookup main suppress_prefixlength 0" in r for r in rules), rules
        assert table_routes(peer).startswith("default dev elysium0")
    finally:
        run_client("down", state_dir=state)
        set_exit(hub_stack, False)
    assert exit_rules(peer) == [] and table_routes(peer) == ""
    assert ping(peer, LAN_HOST)


@pytest.fixture
def follower(hub_stack: HubStack, home: tuple[str, str], tmp_path: Path) -> Iterator[Process]:
    state = tmp_path / "run"
    enroll(hub_stack, state, "home-daemon", home[0], [])
    process = start_follower(state, tmp_path / "run.log")
    yield process
    process.stop()
    run_client("down", state_dir=state)
    set_exit(hub_stack, False)


def test_run_switches_the_exit_on_and_off_live(
    hub_stack: HubStack, home: tuple[str, str], follower: Process
) -> None:
    peer, _ = home
    assert ping(peer, HUB_TUNNEL_IP, tries=15)
    assert exit_rules(peer) == []
    set_exit(hub_stack, True)
    wait_for(lambda: len(exit_rules(peer)) == 4, 30, "the exit's rules (IPv4 and IPv6)")
    assert ping(peer, HUB_TUNNEL_IP) and ping(peer, LAN_HOST) and ping(peer, OUTSIDE_HOST)
    set_exit(hub_stack, False)
    wait_for(lambda: exit_rules(peer) == [], 30, "the exit's rules to go")
    assert table_routes(peer) == "" and ping(peer, HUB_TUNNEL_IP)


def hub_endpoint_of(stack: HubStack, peer_key: str) -> str | None:
    """The endpoint the hub's device last saw for the peer with public key ``peer_key``."""
    driver = UapiDriver(stack.hub_state_dir, stack.topology.hub)
    try:
        return next((p.endpoint for p in driver.dump("wg0") if p.public_key == peer_key), None)
    finally:
        driver.close()


def test_a_roaming_peer_carries_traffic_again_from_its_new_address(
    hub_stack: HubStack, home: tuple[str, str], follower: Process, tmp_path: Path
) -> None:
    """The router's WAN address changes (a new DHCP lease, another network): the peer's next
    keepalive reaches the hub from the new address and the tunnel carries traffic again."""
    peer, _ = home
    router = peer.replace("ely-home-", "ely-rt-")
    key = json.loads(ok("status", "--json", state_dir=tmp_path / "run"))["public_key"]
    assert ping(peer, HUB_TUNNEL_IP, tries=15)
    before = hub_endpoint_of(hub_stack, key)
    assert before is not None and before.startswith(f"{UNDERLAY_PREFIX}.50:")
    in_ns(router, "ip", "addr", "flush", "dev", "eth0")
    in_ns(router, "ip", "addr", "add", f"{UNDERLAY_PREFIX}.60/24", "dev", "eth0")
    try:
        # Generous: one keepalive (5 s) is what it takes on a quiet machine.
        wait_for(lambda: ping(peer, HUB_TUNNEL_IP, tries=1), 30, "traffic from the new address")
        after = hub_endpoint_of(hub_stack, key)
        assert after is not None and after.startswith(f"{UNDERLAY_PREFIX}.60:"), after
    finally:
        in_ns(router, "ip", "addr", "flush", "dev", "eth0")
        in_ns(router, "ip", "addr", "add", f"{UNDERLAY_PREFIX}.50/24", "dev", "eth0")


def test_a_peer_two_routers_away_from_its_hub_gets_a_tunnel(
    hub_stack: HubStack, home: tuple[str, str], tmp_path: Path
) -> None:
    """Double NAT: the peer behind a router behind the home router; the hub sees the outer
    router's address."""
    outer = home[0].replace("ely-home-", "ely-rt-")
    inner = hub_stack.topology.add_nat_router("rt2", 20, "192.168.88.0/24", upstream=outer)
    peer = hub_stack.topology.add_behind_router(inner, "deep", "192.168.88.2")
    state = tmp_path / "deep"
    enroll(hub_stack, state, "deep-laptop", peer, [])
    try:
        ok("up", state_dir=state)
        assert ping(peer, HUB_TUNNEL_IP, tries=15)
        key = json.loads(ok("status", "--json", state_dir=state))["public_key"]
        seen = hub_endpoint_of(hub_stack, key)
        assert seen is not None and seen.startswith(f"{UNDERLAY_PREFIX}.50:"), seen
    finally:
        run_client("down", state_dir=state)


def test_an_exit_whose_mark_is_taken_is_refused_in_one_line_and_changes_nothing(
    hub_stack: HubStack, home: tuple[str, str], tmp_path: Path
) -> None:
    peer, _ = home
    in_ns(peer, "ip", "rule", "add", "fwmark", MARK, "lookup", "100", "priority", "100")
    set_exit(hub_stack, True)
    state = tmp_path / "taken"
    enroll(hub_stack, state, "taken-mark", peer, [])
    try:
        refused = run_client("up", state_dir=state)
        assert refused.returncode == 1, refused
        assert refused.stderr.count("\n") == 1 and f"firewall mark {MARK}" in refused.stderr
        assert "elysium0" not in in_ns(peer, "ip", "link").stdout  # the tunnel as it was
        assert exit_rules(peer) == []
    finally:
        in_ns(peer, "ip", "rule", "del", "priority", "100")
        run_client("down", state_dir=state)
        set_exit(hub_stack, False)

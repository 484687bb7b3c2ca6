"""Direct peer-to-peer paths, end to end: two peers behind two different home routers (NAT,
an input firewall), each running ``elysium-client run``, on a direct interface whose policy
lets A reach B. A pings B and the path is direct: the hub's WireGuard counters for A and B
stay flat during a 1 MB transfer and ``status`` says ``direct`` on both. A third peer C sits
behind a NAT that randomises ports: A and C stay relayed. A router that starts dropping UDP
between the NATs sends A and B back through the hub within 10 s, and they go direct again
when it heals. With direct off every pair is relayed again (the hub carries the transfer),
without the tunnel going down, and no peer holds another's key. Real API, workers, beat,
wireguard-go and nftables.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dataplane.uapi import UapiDriver
from elysium.settings import Settings
from tests.api.conftest import Pki
from tests.client.conftest import ApiServer, run_client, stop_devices
from tests.client.test_follow import ok, start_follower
from tests.netns import Topology, can_run, in_ns, ping
from tests.stack import Process, elysium_command, settings_env, wait_for

pytestmark = pytest.mark.netns

HUB = "hub-d"
NETWORK = "10.78.0.0/24"
HUB_TUNNEL_IP = "10.78.0.1"


@dataclass
class Peer:
    ns: str
    state: Path
    address: str = ""
    key: str = ""
    follower: Process | None = None


@dataclass
class DirectStack:
    api: ApiServer
    topology: Topology
    interface_id: int
    hub_state_dir: Path
    a: Peer
    b: Peer
    c: Peer


def enroll(api: ApiServer, interface_id: int, tag: str, peer: Peer) -> None:
    body = {"ttl_seconds": 600, "uses": 1, "tags": [tag]}
    token = api.call("POST", f"/v1/interfaces/{interface_id}/enrollment-tokens", json=body)
    ok("enroll", "--server", api.url, "--ca", str(api.ca), "--token", token["token"],
       "--name", f"peer-{tag}", "--netns", peer.ns, state_dir=peer.state)  # fmt: skip
    shown = json.loads(ok("status", "--json", state_dir=peer.state))
    peer.address = shown["addresses"][0].split("/")[0]
    peer.key = shown["public_key"]


def set_direct(stack: DirectStack, on: bool) -> None:
    job = stack.api.call("PATCH", f"/v1/interfaces/{stack.interface_id}", json={"direct": on})
    stack.api.wait_job(job["job_id"])


@pytest.fixture(scope="module")
def stack(
    api_server: ApiServer,
    api_pki: Pki,
    settings: Settings,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[DirectStack]:
    """Hub, workers and beat (liveness every 2 s: the hub sees where peers come from); A and
    B each behind its own home router; wg0 with a policy that lets tag a reach tag b."""
    reason = can_run()
    if reason:
        pytest.fail(f"network namespaces: {reason}")
    topo = Topology(peer_count=0).create()
    tmp = tmp_path_factory.mktemp("direct")
    hub_state = tmp / "hub"
    processes: list[Process] = []
    env = settings_env(
        settings,
        ELYSIUM_TLS_CA=str(api_pki.ca),
        ELYSIUM_CA_KEY=str(api_pki.ca_key),
        ELYSIUM_LIVENESS_INTERVAL_S="2",
        ELYSIUM_HEARTBEAT_INTERVAL_S="1",
    )
    peers: list[Peer] = []
    try:
        hub_ns, hub_ip = topo.hub, topo.hub_ip
        rt_a = topo.add_nat_router("ra", 50, "192.168.71.0/24", firewall=True)
        rt_b = topo.add_nat_router("rb", 51, "192.168.72.0/24", firewall=True)
        a = Peer(topo.add_behind_router(rt_a, "pa", "192.168.71.2"), tmp / "a")
        b = Peer(topo.add_behind_router(rt_b, "pb", "192.168.72.2"), tmp / "b")
        rt_c = topo.add_nat_router("rc", 52, "192.168.73.0/24", firewall=True, random_ports=True)
        c = Peer(topo.add_behind_router(rt_c, "pc", "192.168.73.2"), tmp / "c")
        api = api_server
        api.call("POST", "/v1/hubs", json={"name": HUB, "endpoint": hub_ip})
        hub_cmd = ["hub-worker", "--hub", HUB, "--netns", hub_ns, "--state-dir", str(hub_state)]
        for name, args in (
            ("hub-worker", hub_cmd),
            ("control-worker", ["control-worker", "--concurrency", "1"]),
            ("beat", ["beat"]),
        ):
            processes.append(Process(elysium_command(*args), env, tmp / f"{name}.log"))
        created = api.call(
            "POST",
            f"/v1/hubs/{HUB}/interfaces",
            json={"name": "wg0", "network": NETWORK, "listen_port": 51820, "keepalive": 5},
        )
        interface_id = int(created["interface_id"])
        api.wait_job(created["job_id"])
        for tag, peer in (("a", a), ("b", b), ("c", c)):
            enroll(api, interface_id, tag, peer)
            peers.append(peer)
        rules = [{"from": "tag:a", "to": f"tag:{t}", "action": "accept"} for t in ("b", "c")]
        policy = {"default": "drop", "rules": rules}
        api.wait_job(
            api.call("PUT", f"/v1/interfaces/{interface_id}/policy", json=policy)["job_id"]
        )
        for peer in (a, b, c):
            peer.follower = start_follower(peer.state, tmp / f"run-{peer.ns}.log")
        yield DirectStack(api, topo, interface_id, hub_state / "hubs" / HUB, a, b, c)
    finally:
        for peer in peers:
            if peer.follower is not None:
                peer.follower.stop()
            run_client("down", state_dir=peer.state)
        for process in processes:
            process.stop()
        stop_devices(hub_state / "hubs" / HUB, topo.hub)
        topo.destroy()


def hub_counters(stack: DirectStack) -> dict[str, int]:
    """Bytes the hub's device moved for each peer (received + sent), by public key."""
    driver = UapiDriver(stack.hub_state_dir, stack.topology.hub)
    try:
        return {p.public_key: p.rx_bytes + p.tx_bytes for p in driver.dump("wg0")}
    finally:
        driver.close()


def paths(peer: Peer) -> list[dict[str, Any]]:
    return list(json.loads(ok("status", "--json", state_dir=peer.state))["paths"])


def path_to(peer: Peer, other: Peer) -> str | None:
    """``direct``, ``trying`` or ``relayed``, as ``peer``'s status says of ``other``."""
    found = [p for p in paths(peer) if p["addresses"] == [f"{other.address}/32"]]
    return found[0]["path"] if found else None


def direct_both(x: Peer, y: Peer) -> bool:
    return path_to(x, y) == "direct" and path_to(y, x) == "direct"


def transfer_1mb(src: Peer, dst: Peer) -> None:
    """About 1 MB each way: 800 pings of 1,300 bytes, quickly."""
    done = in_ns(src.ns, "ping", "-q", "-c", "800", "-i", "0.002", "-s", "1300", "-W", "1",
                 dst.address, check=False)  # fmt: skip
    assert " 0% packet loss" in done.stdout, done.stdout


def test_two_peers_behind_two_nats_go_direct_and_the_hub_sees_no_traffic(
    stack: DirectStack,
) -> None:
    set_direct(stack, True)
    a, b = stack.a, stack.b
    assert ping(a.ns, HUB_TUNNEL_IP, tries=15) and ping(b.ns, HUB_TUNNEL_IP, tries=15)
    wait_for(lambda: direct_both(a, b), 90, "a direct path")
    assert ping(a.ns, b.address)
    endpoint = next(p for p in paths(a) if p["path"] == "direct")["endpoint"]
    assert endpoint.startswith("198.18.0.51:"), endpoint  # B's router, as the hub saw it
    before = hub_counters(stack)
    transfer_1mb(a, b)
    after = hub_counters(stack)
    for peer in (a, b):  # keepalives only (5 s apart): a few hundred bytes at most
        assert after[peer.key] - before[peer.key] < 20_000, (before, after)
    text = ok("status", state_dir=a.state)
    assert "direct via 198.18.0.51:" in text, text
    # B and C: no rule lets them exchange anything, so neither ever holds the other's key.
    c = stack.c
    assert c.key not in device_keys(b) and b.key not in device_keys(c)
    assert [p["addresses"] for p in paths(c)] == [[f"{a.address}/32"]]

    def reported() -> list[dict[str, Any]]:
        listed = stack.api.call("GET", "/v1/peers", params={"interface_id": stack.interface_id})
        a_id = next(p["id"] for p in listed["items"] if p["public_key"] == a.key)
        return list(stack.api.call("GET", f"/v1/peers/{a_id}")["paths"])

    wait_for(lambda: any(p["path"] == "direct" for p in reported()), 10, "A's paths reported")
    for peer in (a, b):  # followed by deltas, each rebuilding the server's version
        assert peer.follower is not None and "did not apply" not in peer.follower.log()
        assert "direct peers" in peer.follower.log()


def counter_packets(peer: Peer, name: str) -> int:
    shown = in_ns(peer.ns, "nft", "-j", "list", "counter", "inet", "elysium_peer", name).stdout
    return int(
        next(o["counter"] for o in json.loads(shown)["nftables"] if "counter" in o)["packets"]
    )


def test_on_a_direct_path_the_receiver_enforces_the_policy(stack: DirectStack) -> None:
    """Policy a→b only: B→A is dropped by A's own table (its default counter grows), while
    A→B is let in by B's (its rule's counter grows) and B's answers come back."""
    a, b = stack.a, stack.b
    set_direct(stack, True)
    wait_for(lambda: direct_both(a, b), 90, "a direct path")
    dropped, accepted = counter_packets(a, "default"), counter_packets(b, "rule_0")
    assert not ping(b.ns, a.address, tries=2)
    assert ping(a.ns, b.address)
    assert counter_packets(a, "default") >= dropped + 2
    assert counter_packets(b, "rule_0") > accepted
    assert path_to(a, b) == "direct"  # all of it went direct


def set_elements(peer: Peer, name: str) -> list[str]:
    shown = in_ns(peer.ns, "nft", "-j", "list", "set", "inet", "elysium_peer", name).stdout
    found = next(o["set"] for o in json.loads(shown)["nftables"] if "set" in o)
    return [e for e in found.get("elem", []) if isinstance(e, str)]


def set_tags(stack: DirectStack, peer: Peer, tags: list[str]) -> None:
    listed = stack.api.call("GET", f"/v1/peers?interface_id={stack.interface_id}")["items"]
    peer_id = next(p["id"] for p in listed if p["public_key"] == peer.key)
    job = stack.api.call("PATCH", f"/v1/peers/{peer_id}", json={"tags": tags})
    stack.api.wait_job(job["job_id"])


def test_a_peer_joining_a_source_is_one_set_element_on_the_receiver(stack: DirectStack) -> None:
    """C tagged ``a`` joins the source of B's rule (tag a → tag b): B's follower gets it as a
    set element (its table is not reloaded: an element of the test's own stays) and lets C in."""
    b, c = stack.b, stack.c
    set_direct(stack, True)
    wait_for(lambda: set_elements(b, "src_0_4") == [stack.a.address], 30, "B's source set")
    in_ns(b.ns, "nft", "add", "element", "inet", "elysium_peer", "src_0_4", "{ 10.78.0.250 }")
    try:
        set_tags(stack, c, ["c", "a"])
        wait_for(lambda: c.address in set_elements(b, "src_0_4"), 15, "C in B's source set")
        assert "10.78.0.250" in set_elements(b, "src_0_4")  # the table was not replaced
        accepted = counter_packets(b, "rule_0")
        assert ping(c.ns, b.address, tries=5)
        assert counter_packets(b, "rule_0") > accepted
        log = (b.state.parent / f"run-{b.ns}.log").read_text()
        assert "did not apply" not in log  # followed by deltas all along
    finally:
        set_tags(stack, c, ["c"])
    wait_for(lambda: c.address not in set_elements(b, "src_0_4"), 15, "C out of B's set")


def test_direct_off_relays_every_pair_again_without_the_tunnel_going_down(
    stack: DirectStack,
) -> None:
    a, b = stack.a, stack.b
    set_direct(stack, True)
    wait_for(lambda: direct_both(a, b), 90, "a direct path")
    set_direct(stack, False)
    wait_for(lambda: paths(a) == paths(b) == paths(stack.c) == [], 30, "direct peers to go")
    tables = in_ns(a.ns, "nft", "list", "tables").stdout
    assert "elysium_peer" not in tables  # the receiver's table goes with direct
    wait_for(
        lambda: device_keys(a) == device_keys(b) == device_keys(stack.c) == set(),
        10,
        "each other's key to go",
    )
    assert ping(a.ns, HUB_TUNNEL_IP)  # the tunnel stayed up
    before = hub_counters(stack)
    transfer_1mb(a, b)
    after = hub_counters(stack)
    for peer in (a, b):  # the hub carried all of it
        assert after[peer.key] - before[peer.key] > 1_000_000, (before, after)


def test_a_nat_with_random_ports_stays_relayed_and_traffic_flows_through_the_hub(
    stack: DirectStack,
) -> None:
    a, c = stack.a, stack.c
    set_direct(stack, True)
    wait_for(lambda: path_to(a, c) is not None and path_to(c, a) is not None, 30, "listed")
    deadline = time.monotonic() + 20  # several tries of every candidate
    while time.monotonic() < deadline:
        assert path_to(a, c) != "direct" and path_to(c, a) != "direct"
        time.sleep(1)
    before = hub_counters(stack)
    assert ping(a.ns, c.address)
    assert hub_counters(stack)[c.key] > before[c.key]
    text = ok("status", state_dir=c.state)
    assert "relayed via the hub" in text or " trying " in text, text


def test_a_broken_direct_path_goes_back_through_the_hub_and_heals(stack: DirectStack) -> None:
    a, b = stack.a, stack.b
    set_direct(stack, True)
    wait_for(lambda: direct_both(a, b), 90, "a direct path")
    router = a.ns.replace("ely-pa-", "ely-ra-")
    in_ns(router, "nft", "add", "table", "inet", "cut")
    chain = "{ type filter hook forward priority 0 ; }"
    in_ns(router, "nft", "add", "chain", "inet", "cut", "forward_cut", chain)
    for side in ("daddr", "saddr"):
        in_ns(router, "nft", "add", "rule", "inet", "cut", "forward_cut", "ip", side, "198.18.0.51",
              "meta", "l4proto", "udp", "drop")  # fmt: skip
    cut = time.monotonic()
    try:
        wait_for(lambda: path_to(a, b) == "relayed", 10, "A to give B back to the hub")
        assert time.monotonic() - cut <= 10
        assert ping(a.ns, b.address, tries=5)  # through the hub
    finally:
        in_ns(router, "nft", "delete", "table", "inet", "cut")
    wait_for(lambda: direct_both(a, b), 90, "the direct path again")


def device_keys(peer: Peer) -> set[str]:
    """The keys on the peer's own device other than its hub's."""
    config = json.loads((peer.state / "client.json").read_text())["config"]
    driver = UapiDriver(peer.state, peer.ns)
    try:
        keys = {p.public_key for p in driver.dump("elysium0")}
    finally:
        driver.close()
    return keys - {config["hub_public_key"]}

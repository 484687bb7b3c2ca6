"""Peers reach each other, the LAN behind their hub and (through an exit) the outside, under
the policy the hub enforces with nftables: real API, workers, wireguard-go, nftables and
``elysium-client``, every packet inside namespaces this module makes.

::

    peer A (tag ops) ──┐                 ┌── lan0 ── LAN host 192.168.50.10 (default via hub)
                       ├── hub ns (wg0) ─┤
    peer B (tag laptop)┘                 └── out0 ── outside 203.0.113.10 (no route back: NAT)
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from elysium.settings import Settings
from tests.api.conftest import Pki
from tests.client.conftest import ApiServer, run_client, stop_devices
from tests.netns import Topology, can_run, in_ns, ping
from tests.stack import Process, elysium_command, settings_env, wait_for

pytestmark = pytest.mark.netns

HUB = "hub-p"
NETWORK, NETWORK6 = "10.88.0.0/24", "fd88::/64"
HUB_IP, HUB_IP6 = "10.88.0.1", "fd88::1"
LAN_HOST, OUTSIDE_HOST, HUB_EGRESS = "192.168.50.10", "203.0.113.10", "203.0.113.1"
PORT = 8080
RECONCILE_S = 2.0

# Answers each connection with the address it came from (IPv4 ones unmapped), then closes it.
ECHO_PEER = """
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, port)); s.listen()
while True:
    c, a = s.accept(); c.sendall(a[0].removeprefix("::ffff:").encode()); c.close()
"""
CONNECT = """
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2) as c:
        print(c.recv(100).decode())
except OSError as exc:
    print("refused" if isinstance(exc, ConnectionRefusedError) else "timeout"); sys.exit(1)
"""

BASE_RULES: list[dict[str, Any]] = [
    {"from": "tag:laptop", "to": "tag:ops", "action": "drop"},
    {"from": "tag:ops", "to": "tag:laptop", "action": "accept"},
    {"from": "tag:ops", "to": "routes", "proto": "tcp", "ports": [22, PORT], "action": "accept"},
    {"from": "tag:ops", "to": "routes", "proto": "icmp", "action": "accept"},
    {"from": "tag:laptop", "to": "routes", "action": "accept"},
    {"from": "tag:ops", "to": NETWORK, "action": "drop"},  # no other peer through the exit rule
    {"from": "tag:ops", "to": "0.0.0.0/0", "action": "accept"},
]


@dataclass
class Peer:
    ns: str
    state: Path
    address: str
    address6: str
    peer_id: int


@dataclass
class PolicyStack:
    api: ApiServer
    topology: Topology
    interface_id: int
    lan: str
    outside: str
    a: Peer
    b: Peer

    def put_policy(self, rules: list[dict[str, Any]], default: str = "drop") -> dict[str, Any]:
        sub = self.api.call(
            "PUT",
            f"/v1/interfaces/{self.interface_id}/policy",
            json={"default": default, "rules": rules},
        )
        return self.api.wait_job(sub["job_id"])

    def nft(self, *args: str) -> str:
        return in_ns(self.topology.hub, "nft", *args).stdout


def audit_since(api: ApiServer, since: datetime, until_action: str) -> list[dict[str, Any]]:
    """The audit trail from ``since`` once it holds an ``until_action`` record by this hub
    (else empty)."""
    items = api.call("GET", "/v1/audit", params={"since": since.isoformat(), "limit": 1000})
    trail: list[dict[str, Any]] = items["items"]
    done = any(a["action"] == until_action and a["actor"] == f"hub:{HUB}" for a in trail)
    return trail if done else []


def connect(ns: str, host: str, port: int = PORT) -> str:
    """What a TCP connection from ``ns`` to ``host`` got back: the address the far end saw,
    or ``timeout``."""
    done = in_ns(ns, sys.executable, "-c", CONNECT, host, str(port), check=False)
    return done.stdout.strip()


def enroll(api: ApiServer, interface_id: int, tags: list[str], ns: str, state: Path) -> Peer:
    token = api.call(
        "POST",
        f"/v1/interfaces/{interface_id}/enrollment-tokens",
        json={"ttl_seconds": 600, "tags": tags},
    )["token"]
    args = ["--server", api.url, "--ca", str(api.ca), "--token", token, "--name", tags[0]]
    run = run_client("enroll", *args, "--netns", ns, state_dir=state)
    assert run.returncode == 0, run.stderr
    run = run_client("up", state_dir=state)
    assert run.returncode == 0, run.stderr
    config = json.loads((state / "client.json").read_text())["config"]
    return Peer(ns, state, config["address"], config["address6"], config["peer_id"])


@pytest.fixture(scope="module")
def stack(
    api_server: ApiServer,
    api_pki: Pki,
    settings: Settings,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[PolicyStack]:
    reason = can_run()
    if reason:
        pytest.fail(f"network namespaces: {reason}")
    topo = Topology(peer_count=2).create()
    tmp = tmp_path_factory.mktemp("policy")
    state_dir = tmp / "hub"
    processes: list[Process] = []
    env = settings_env(
        settings,
        ELYSIUM_TLS_CA=str(api_pki.ca),
        ELYSIUM_CA_KEY=str(api_pki.ca_key),
        ELYSIUM_RECONCILE_INTERVAL_S=str(RECONCILE_S),
        ELYSIUM_HEARTBEAT_INTERVAL_S="1",
    )
    try:
        lan = topo.add_behind_hub("lan0", "192.168.50.1/24", f"{LAN_HOST}/24", route=True)
        outside = topo.add_behind_hub("out0", f"{HUB_EGRESS}/24", f"{OUTSIDE_HOST}/24", route=False)
        api = api_server
        api.call("POST", "/v1/hubs", json={"name": HUB, "endpoint": topo.hub_ip})
        hub_cmd = ["hub-worker", "--hub", HUB, "--netns", topo.hub, "--state-dir", str(state_dir)]
        for name, args in (
            ("hub-worker", hub_cmd),
            ("control-worker", ["control-worker", "--concurrency", "1"]),
            ("beat", ["beat"]),
        ):
            processes.append(Process(elysium_command(*args), env, tmp / f"{name}.log"))
        created = api.call(
            "POST",
            f"/v1/hubs/{HUB}/interfaces",
            json={"name": "wg0", "network": NETWORK, "network6": NETWORK6, "listen_port": 51820},
        )
        interface_id = int(created["interface_id"])
        api.wait_job(created["job_id"])
        changed = api.call(
            "PATCH",
            f"/v1/interfaces/{interface_id}",
            json={"routes": ["192.168.50.0/24"], "exit": True, "nat": {"egress": "out0"}},
        )
        api.wait_job(changed["job_id"])
        a = enroll(api, interface_id, ["ops"], topo.peers[0], tmp / "a")
        b = enroll(api, interface_id, ["laptop"], topo.peers[1], tmp / "b")
        for peer in (a, b):
            processes.append(
                Process(
                    [
                        "ip",
                        "netns",
                        "exec",
                        peer.ns,
                        sys.executable,
                        "-c",
                        ECHO_PEER,
                        "::",
                        str(PORT),
                    ],
                    env,
                    tmp / f"echo-{peer.ns}.log",
                )
            )
        processes.append(
            Process(
                ["ip", "netns", "exec", lan, sys.executable, "-c", ECHO_PEER, LAN_HOST, str(PORT)],
                env,
                tmp / "echo-lan.log",
            )
        )
        processes.append(
            Process(
                [
                    "ip",
                    "netns",
                    "exec",
                    outside,
                    sys.executable,
                    "-c",
                    ECHO_PEER,
                    OUTSIDE_HOST,
                    str(PORT),
                ],
                env,
                tmp / "echo-outside.log",
            )
        )
        s = PolicyStack(api, topo, interface_id, lan, outside, a, b)
        s.put_policy(BASE_RULES)
        yield s
    finally:
        for peer_state in (tmp / "a", tmp / "b"):
            if (peer_state / "client.json").exists():
                run_client("down", state_dir=peer_state)
        for process in reversed(processes):
            process.stop()
        stop_devices(state_dir / "hubs" / HUB, topo.hub)
        topo.destroy()


def rule_packets(stack: PolicyStack, rule: int) -> int:
    """Packets the hub's counter of ``rule`` (its index in the policy) has seen on wg0."""
    listing = json.loads(stack.nft("-j", "list", "counter", "inet", "elysium", f"wg0_r{rule}"))
    return sum(i["counter"]["packets"] for i in listing["nftables"] if "counter" in i)


def test_an_allowed_peer_reaches_another_by_ping_and_tcp(stack: PolicyStack) -> None:
    assert ping(stack.a.ns, stack.b.address)
    assert connect(stack.a.ns, stack.b.address) == stack.a.address


def test_a_denied_flow_times_out_and_the_deciding_rule_counts_it(stack: PolicyStack) -> None:
    before = rule_packets(stack, 0)
    assert not ping(stack.b.ns, stack.a.address, tries=2)
    assert connect(stack.b.ns, stack.a.address) == "timeout"
    assert rule_packets(stack, 0) > before
    decision = stack.api.call(
        "GET",
        f"/v1/interfaces/{stack.interface_id}/policy/check",
        params={"from": f"peer:{stack.b.peer_id}", "to": f"peer:{stack.a.peer_id}"},
    )
    assert decision["action"] == "deny" and decision["rule"] == 0


def test_a_peer_reaches_the_lan_behind_its_hub(stack: PolicyStack) -> None:
    assert ping(stack.a.ns, LAN_HOST)
    assert connect(stack.a.ns, LAN_HOST) == stack.a.address  # routed, not masqueraded


def test_an_exit_peer_reaches_the_outside_as_the_hub(stack: PolicyStack) -> None:
    assert connect(stack.a.ns, OUTSIDE_HOST) == HUB_EGRESS
    assert connect(stack.b.ns, OUTSIDE_HOST) == "timeout"  # laptops: the LAN only


def test_ipv6_goes_through_the_tunnel_to_the_hub_and_between_peers(stack: PolicyStack) -> None:
    assert ping(stack.a.ns, HUB_IP6)
    assert ping(stack.a.ns, stack.b.address6)
    assert connect(stack.a.ns, stack.b.address6) == stack.a.address6


def test_a_hand_edit_of_the_table_is_repaired_by_reconcile(stack: PolicyStack) -> None:
    assert nothing_enforces_without_the_table(stack)
    wait_for(lambda: "elysium" in stack.nft("list", "tables"), 4 * RECONCILE_S + 10, "reconcile")
    assert connect(stack.a.ns, stack.b.address) == stack.a.address
    assert not ping(stack.b.ns, stack.a.address, tries=1)


def nothing_enforces_without_the_table(stack: PolicyStack, attempts: int = 5) -> bool:
    """Whether a denied ping passes once the hub's table is deleted by hand. A reconcile (every
    RECONCILE_S) can put the table back before the ping is answered; then delete it again."""
    for _ in range(attempts):
        if "elysium" in stack.nft("list", "tables"):
            stack.nft("delete", "table", "inet", "elysium")
        if ping(stack.b.ns, stack.a.address, tries=1):
            return True
    return False


def test_deleting_the_allowing_rule_stops_the_flow_once_its_job_ends(stack: PolicyStack) -> None:
    try:
        job = stack.put_policy([r for i, r in enumerate(BASE_RULES) if i != 1])
        assert job["status"] == "succeeded"
        assert connect(stack.a.ns, stack.b.address) == "timeout"
    finally:
        stack.put_policy(BASE_RULES)
    assert connect(stack.a.ns, stack.b.address) == stack.a.address


def test_a_missing_nat_device_fails_the_job_and_keeps_the_old_policy(stack: PolicyStack) -> None:
    sub = stack.api.call(
        "PATCH", f"/v1/interfaces/{stack.interface_id}", json={"nat": {"egress": "nosuch0"}}
    )
    job = stack.api.call("GET", f"/v1/jobs/{sub['job_id']}", params={"wait": 30})
    try:
        assert job["status"] == "failed" and job["error"]["code"] == "nat_device_missing"
        assert connect(stack.a.ns, OUTSIDE_HOST) == HUB_EGRESS
    finally:
        sub = stack.api.call(
            "PATCH", f"/v1/interfaces/{stack.interface_id}", json={"nat": {"egress": "out0"}}
        )
        stack.api.wait_job(sub["job_id"])


def test_bad_policies_are_400_naming_the_field(stack: PolicyStack) -> None:
    url = f"{stack.api.url}/v1/interfaces/{stack.interface_id}/policy"
    headers = {"Authorization": f"Bearer {stack.api.admin_token}"}
    cases = [
        ({"from": "tag:nosuch", "to": "tag:ops", "action": "accept"}, "rules.0.from"),
        ({"from": "10.0.0.0/33", "to": "tag:ops", "action": "accept"}, "rules.0.from"),
        (
            {
                "from": "tag:ops",
                "to": "routes",
                "proto": "tcp",
                "ports": [70000],
                "action": "accept",
            },
            "rules.0.ports.0",
        ),
        (
            {"from": "tag:ops", "to": "routes", "proto": "icmp", "ports": [22], "action": "accept"},
            "rules.0.ports",
        ),
        ({"from": "10.0.0.0/8", "to": "fd00::/8", "action": "accept"}, "rules.0"),
    ]
    before = stack.nft("list", "table", "inet", "elysium")
    since = datetime.now(UTC)
    for rule, field in cases:
        r = requests.put(
            url, json={"rules": [rule]}, headers=headers, verify=str(stack.api.ca), timeout=10
        )
        assert r.status_code == 400, (rule, r.text)
        fields = r.json()["error"]["fields"]
        assert any(f == field or f.startswith(field + ".") for f in fields), (field, fields)
    # The hub's next reconcile loads its table from the database: had a refused policy been
    # recorded, that reconcile would have put it in force.
    trail = wait_for(
        lambda: audit_since(stack.api, since, "reconcile"), 30, "the hub's next reconcile"
    )
    assert stack.nft("list", "table", "inet", "elysium") == before
    assert not [a for a in trail if a["action"] == "set_policy"]  # type: ignore[attr-defined]

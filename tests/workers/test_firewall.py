"""The hub firewall on real nftables, in namespaces of this test only:

    peer "a" 10.99.0.2 ── wg0 ┐                  ┌ lan0 ── "b" 10.98.0.2 (behind the hub)
                              hub (forwards) ────┤
                                                 └ up0 ─── "far" 198.19.0.2 (no route back)

The hub side of a's link is a veth named ``wg0``, standing in for the WireGuard interface.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from elysium.errors import DataplaneError
from elysium.policy import PeerMembership, compile_policy, members_for, parse_policy
from tests.netns import can_run, in_ns, run
from workers.firewall import Firewall, InterfaceFirewall

A, B, FAR, HUB = "10.99.0.2", "10.98.0.2", "198.19.0.2", "10.99.0.1"

pytestmark = pytest.mark.netns


@dataclass
class Net:
    hub: str
    a: str
    b: str
    far: str

    def pings(self, ns: str, address: str) -> bool:
        return in_ns(ns, "ping", "-c1", "-W1", "-n", address, check=False).returncode == 0


@pytest.fixture(scope="module")
def net() -> Iterator[Net]:
    reason = can_run() or (None if shutil.which("nft") else "needs nft (make deps installs it)")
    if reason:
        pytest.fail(f"network namespaces: {reason}")  # never a skip: make deps provides them
    sfx = secrets.token_hex(3)
    n = Net(hub=f"ely-fwh-{sfx}", a=f"ely-fwa-{sfx}", b=f"ely-fwb-{sfx}", far=f"ely-fwf-{sfx}")
    made: list[str] = []
    try:
        for ns in (n.hub, n.a, n.b, n.far):
            run("ip", "netns", "add", ns)
            made.append(ns)
            run("ip", "-n", ns, "link", "set", "lo", "up")
        for ns, hub_dev, hub_ip, ip in (
            (n.a, "wg0", HUB, A),
            (n.b, "lan0", "10.98.0.1", B),
            (n.far, "up0", "198.19.0.1", FAR),
        ):
            run("ip", "-n", n.hub, "link", "add", hub_dev, "type", "veth", "peer", "eth0")
            run("ip", "-n", n.hub, "link", "set", "eth0", "netns", ns)
            run("ip", "-n", n.hub, "addr", "add", f"{hub_ip}/24", "dev", hub_dev)
            run("ip", "-n", n.hub, "link", "set", hub_dev, "up")
            run("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
            run("ip", "-n", ns, "link", "set", "eth0", "up")
            if ns != n.far:  # the far side has no route back to the tunnel networks
                run("ip", "-n", ns, "route", "add", "default", "via", hub_ip)
        in_ns(n.hub, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        yield n
    finally:
        for ns in made:
            run("ip", "netns", "del", ns, check=False)


@pytest.fixture(params=["libnftables", "nft"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def firewall(net: Net) -> Iterator[Firewall]:
    fw = Firewall(net.hub)
    try:
        yield fw
    finally:
        fw.remove()
        fw.close()


def interface(
    rules: list[dict[str, object]],
    *,
    tags: tuple[str, ...] = ("ops",),
    nat: str | None = None,
    default: str = "drop",
) -> InterfaceFirewall:
    policy = parse_policy({"default": default, "rules": rules}, known_tags={"ops"}, known_peers={1})
    compiled = compile_policy("wg0", policy)
    members = members_for("wg0", [PeerMembership(1, tags, (A,))], [], [HUB])
    return InterfaceFirewall("wg0", compiled, members, ("10.99.0.0/24",), nat)


OPS_TO_B = [{"from": "tag:ops", "to": f"{B}/32", "proto": "icmp", "action": "accept"}]


def test_the_policy_is_enforced_and_counted_on_real_packets(net: Net, backend: str) -> None:
    fw = Firewall(net.hub, backend=backend)
    try:
        assert fw.backend == backend
        assert fw.apply([interface(OPS_TO_B)]) is True
        assert net.pings(net.a, B)
        counted = fw.counters()["wg0"]
        assert counted[0] >= 1
        assert not net.pings(net.b, A)  # b's own flows are not replies: the default drops them
        assert fw.counters()["wg0"][-1] >= 1
    finally:
        fw.remove()
        fw.close()


def test_a_reload_keeps_the_counts_of_unchanged_rules(net: Net, firewall: Firewall) -> None:
    firewall.apply([interface(OPS_TO_B)])
    assert net.pings(net.a, B)
    counted = firewall.counters()["wg0"][0]
    assert counted >= 1
    firewall.apply([interface(OPS_TO_B)])  # a reconcile: the same policy again
    assert firewall.counters()["wg0"][0] >= counted
    changed = [{**OPS_TO_B[0], "to": f"{B}/31"}]
    firewall.apply([interface(changed)])  # another rule at index 0: its count starts anew
    assert firewall.counters()["wg0"][0] == 0


def test_a_member_change_flips_the_verdict_without_reloading_rules(
    net: Net, firewall: Firewall
) -> None:
    firewall.apply([interface(OPS_TO_B)])
    chain = in_ns(net.hub, "nft", "-a", "list", "chain", "inet", "elysium", "wg0_forward").stdout

    firewall.update_members(add={}, remove={"wg0_t_ops_4": [A]})
    assert not net.pings(net.a, B)
    firewall.update_members(add={"wg0_t_ops_4": [A]}, remove={})
    assert net.pings(net.a, B)

    # The same rules with the same handles: only set elements moved.
    assert (
        in_ns(net.hub, "nft", "-a", "list", "chain", "inet", "elysium", "wg0_forward").stdout
        == chain
    )
    firewall.update_members(add={}, remove={"wg0_t_ops_4": ["10.99.0.77"]})  # absent: fine


def test_a_refused_load_leaves_the_previous_policy_in_force(net: Net, firewall: Firewall) -> None:
    firewall.apply([interface(OPS_TO_B)])
    before = firewall.listing()
    broken = interface([{"from": "tag:ops", "to": "any", "action": "drop"}])
    broken.members["wg0_t_ops_4n"] = ["10.1.0.0/16", "10.1.2.0/24"]  # overlapping intervals

    with pytest.raises(DataplaneError) as info:
        firewall.apply([broken])

    assert info.value.code == "firewall_rejected"
    assert "conflicting intervals" in info.value.message
    assert firewall.listing() == before
    assert net.pings(net.a, B)


def test_a_hand_edit_is_reported_and_undone_by_the_next_apply(net: Net, firewall: Firewall) -> None:
    wanted = [interface(OPS_TO_B)]
    assert firewall.apply(wanted) is True
    assert firewall.apply(wanted) is False

    in_ns(net.hub, "nft", "flush", "chain", "inet", "elysium", "wg0_forward")
    assert firewall.apply(wanted) is True
    assert firewall.apply(wanted) is False

    in_ns(net.hub, "nft", "delete", "table", "inet", "elysium")
    assert firewall.apply(wanted) is True
    assert net.pings(net.a, B)


def test_nat_masquerades_what_leaves_through_the_egress_device(
    net: Net, firewall: Firewall
) -> None:
    out = [{"from": "tag:ops", "to": "0.0.0.0/0", "action": "accept"}]
    firewall.apply([interface(out)])
    assert not net.pings(net.a, FAR)  # far has no route back to 10.99.0.2

    firewall.apply([interface(out, nat="up0")])
    assert net.pings(net.a, FAR)
    assert udp_source_seen_by(net.far, sender=net.a) == "198.19.0.1"  # the hub's, not a's


def udp_source_seen_by(listener_ns: str, *, sender: str) -> str:
    """The source address a datagram from ``sender`` arrives with at FAR:9999."""
    listen = (
        "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM);"
        f"s.bind(('{FAR}', 9999)); print('ready', flush=True); s.settimeout(5);"
        "print(s.recvfrom(64)[1][0])"
    )
    send = (
        "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM)"
        f".sendto(b'hello', ('{FAR}', 9999))"
    )
    cmd = ["ip", "netns", "exec", listener_ns, sys.executable, "-c", listen]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        in_ns(sender, sys.executable, "-c", send)
        out, _ = proc.communicate(timeout=10)
    return out.strip()


def test_a_missing_nat_device_fails_before_anything_is_applied(
    net: Net, firewall: Firewall
) -> None:
    firewall.apply([interface(OPS_TO_B)])
    before = firewall.listing()

    with pytest.raises(DataplaneError) as info:
        firewall.apply([interface([], default="accept", nat="nope0")])

    assert info.value.code == "nat_device_missing"
    assert firewall.listing() == before


def test_remove_deletes_only_elysiums_table(net: Net, firewall: Firewall) -> None:
    in_ns(net.hub, "nft", "add", "table", "inet", "someone_else")
    try:
        firewall.apply([interface(OPS_TO_B)])
        firewall.remove()
        tables = in_ns(net.hub, "nft", "list", "tables").stdout
        assert "someone_else" in tables and "elysium" not in tables
        firewall.remove()  # twice is fine
    finally:
        in_ns(net.hub, "nft", "delete", "table", "inet", "someone_else", check=False)


def foreign_table(rules: int) -> str:
    """Another owner's table (as Docker or firewalld keep theirs): a hooked chain of many rules
    with counters, a set, an interval set (nft reads those for any element change unless told
    otherwise) and a named counter. Nothing in it matches the test's packets."""
    ranges = ", ".join(f"100.{i // 256}.{i % 256}.0/25" for i in range(rules // 4))
    lines = [
        "table inet foreign {",
        "counter seen {\n}",
        "set blocked { type ipv4_addr; elements = { 192.0.2.1, 192.0.2.2 }\n}",
        f"set ranges {{ type ipv4_addr; flags interval; elements = {{ {ranges} }}\n}}",
        "chain forward_rules {",
        "type filter hook forward priority 10; policy accept;",
        "ip saddr @blocked counter name seen drop",
        "ip daddr @ranges drop",
    ]
    lines += [
        f"ip saddr 10.200.{(i // 256) % 256}.{i % 256} tcp dport {1 + i % 60000} counter accept"
        for i in range(rules)
    ]
    lines += ["}", "}"]
    return "\n".join(lines) + "\n"


def test_a_foreign_table_is_left_byte_for_byte_as_it_was(net: Net, firewall: Firewall) -> None:
    subprocess.run(
        ["ip", "netns", "exec", net.hub, "nft", "-f", "-"],
        input=foreign_table(20_000),
        text=True,
        check=True,
        capture_output=True,
    )
    try:
        before = in_ns(net.hub, "nft", "list", "table", "inet", "foreign").stdout
        assert before.count("counter packets 0 bytes 0 accept") == 20_000

        assert firewall.apply([interface(OPS_TO_B)]) is True  # load
        assert net.pings(net.a, B)
        assert not net.pings(net.b, A)
        firewall.update_members(add={}, remove={"wg0_t_ops_4": [A]})  # update
        assert not net.pings(net.a, B)
        firewall.update_members(
            add={"wg0_t_ops_4": [A], "wg0_t_ops_4n": ["10.97.0.0/24"]}, remove={}
        )
        ranges = in_ns(net.hub, "nft", "list", "set", "inet", "elysium", "wg0_t_ops_4n").stdout
        assert "10.97.0.0/24" in ranges
        firewall.update_members(add={}, remove={"wg0_t_ops_4n": ["10.97.0.0/24"]})
        assert firewall.apply([interface(OPS_TO_B)]) is False  # reconcile: the same again
        assert net.pings(net.a, B)
        assert firewall.counters()["wg0"][0] >= 2
        assert "elysium" not in in_ns(net.hub, "nft", "list", "table", "inet", "foreign").stdout

        assert in_ns(net.hub, "nft", "list", "table", "inet", "foreign").stdout == before
        firewall.remove()
        assert in_ns(net.hub, "nft", "list", "table", "inet", "foreign").stdout == before
    finally:
        in_ns(net.hub, "nft", "delete", "table", "inet", "foreign", check=False)


def test_forwarded_tcp_syns_are_clamped_to_the_route_mtu(net: Net, firewall: Firewall) -> None:
    firewall.apply([interface(OPS_TO_B)])
    chain = in_ns(net.hub, "nft", "list", "chain", "inet", "elysium", "mss_clamp").stdout
    assert "hook forward priority mangle" in chain
    assert 'iifname "wg0" tcp flags syn / syn,rst tcp option maxseg size set rt mtu' in chain
    assert 'oifname "wg0" tcp flags syn / syn,rst tcp option maxseg size set rt mtu' in chain

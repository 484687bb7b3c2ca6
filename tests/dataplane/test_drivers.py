"""The WireGuard dataplane: real wireguard-go devices in network namespaces, and the drivers'
message building (the kernel driver has no kernel module to talk to here)."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dataplane import InterfaceSpec, PeerSpec, make_dataplane
from dataplane.kernel import (
    KernelDriver,
    build_set_messages,
    kernel_wireguard_available,
    parse_device,
)
from dataplane.links import ROUTE_PROTO
from dataplane.peer_state import DeviceState, DeviceUpdate, PeerUpdate
from dataplane.uapi import UapiDriver
from dataplane.uapi_protocol import (
    StatsReader,
    UapiError,
    _parse_stats_by_line,
    encode_set,
    parse_state,
    parse_stats,
    transact,
)
from elysium.errors import ConfigError, DataplaneError
from elysium.keys import generate_private_key, public_key
from tests.netns import Topology, in_ns, ping, run

HUB_PORT = 51820
SITE_PORT = 51821


def new_key() -> str:
    return public_key(generate_private_key())


@dataclass
class Device:
    """One wg0 under test: its namespace, driver and public key."""

    ns: str
    driver: UapiDriver
    public_key: str
    spec: InterfaceSpec

    def state(self) -> DeviceState:
        return parse_state(transact(self.driver.socket_path("wg0"), b"get=1\n\n"))

    def snapshot(self) -> tuple[object, ...]:
        """Everything a bad request must leave alone: device config, addresses, routes."""
        addrs = run("ip", "-n", self.ns, "-br", "addr", "show", "wg0").stdout
        routes = run("ip", "-n", self.ns, "route", "show", "dev", "wg0").stdout
        return self.state(), addrs, routes


def start_device(ns: str, state_dir: Path, address: str, port: int) -> Device:
    driver = UapiDriver(state_dir, ns)
    spec = InterfaceSpec("wg0", state_dir / "keys" / "wg0.key", port, (address,), mtu=1420)
    pub, _ = driver.ensure_interface(spec)
    return Device(ns, driver, pub, spec)


@pytest.fixture
def hub(netns_topology: Topology, tmp_path: Path) -> Iterator[Device]:
    device = start_device(netns_topology.hub, tmp_path / "hub", "10.77.0.1/24", HUB_PORT)
    yield device
    device.driver.remove_interface("wg0")
    device.driver.close()


@pytest.fixture
def sites(netns_topology: Topology, tmp_path: Path, hub: Device) -> Iterator[list[Device]]:
    """Each peer namespace runs a wg0 whose only peer is the hub."""
    devices = []
    try:
        for i, ns in enumerate(netns_topology.peers):
            dev = start_device(ns, tmp_path / f"site{i}", f"10.77.0.{i + 2}/24", SITE_PORT)
            devices.append(dev)
            dev.driver.converge("wg0", [site_view_of_hub(netns_topology, hub)])
        yield devices
    finally:
        for dev in devices:
            dev.driver.remove_interface("wg0")
            dev.driver.close()


def site_view_of_hub(topo: Topology, hub: Device, extra: tuple[str, ...] = ()) -> PeerSpec:
    return PeerSpec(hub.public_key, ("10.77.0.0/24", *extra), endpoint=f"{topo.hub_ip}:{HUB_PORT}")


def hub_view_of(
    site: Device,
    index: int,
    topo: Topology,
    routes: tuple[str, ...] = (),
    with_endpoint: bool = False,
) -> PeerSpec:
    endpoint = f"{topo.peer_ip(index)}:{SITE_PORT}" if with_endpoint else None
    return PeerSpec(
        site.public_key, (f"10.77.0.{index + 2}/32", *routes), routes=routes, endpoint=endpoint
    )


# ---- real devices in namespaces -------------------------------------------------------------


@pytest.mark.netns
def test_peer_handshakes_and_pings_the_hub_tunnel_address(
    netns_topology: Topology, hub: Device, sites: list[Device]
) -> None:
    hub.driver.converge("wg0", [hub_view_of(s, i, netns_topology) for i, s in enumerate(sites)])

    assert ping(sites[0].ns, "10.77.0.1")
    assert ping(sites[1].ns, "10.77.0.1")

    stats = {s.public_key: s for s in hub.driver.dump("wg0")}
    first = stats[sites[0].public_key]
    assert first.last_handshake_at is not None
    assert first.rx_bytes > 0 and first.tx_bytes > 0
    assert first.endpoint == f"{netns_topology.peer_ip(0)}:{SITE_PORT}"
    assert first.allowed_ips == ("10.77.0.2/32",)


@pytest.mark.netns
def test_a_dump_after_traffic_or_a_change_is_never_the_previous_one(
    netns_topology: Topology, hub: Device, sites: list[Device]
) -> None:
    views = [hub_view_of(s, i, netns_topology) for i, s in enumerate(sites)]
    hub.driver.converge("wg0", views)
    before = {s.public_key: s for s in hub.driver.dump("wg0")}

    assert ping(sites[0].ns, "10.77.0.1")
    hub.driver.apply_peers("wg0", [PeerSpec(sites[1].public_key, ("10.77.0.40/32",))], [])
    after = {s.public_key: s for s in hub.driver.dump("wg0")}

    first, second = sites[0].public_key, sites[1].public_key
    assert before[first].rx_bytes == 0 and before[first].last_handshake_at is None
    assert after[first].rx_bytes > 0 and after[first].last_handshake_at is not None
    assert after[first].endpoint == f"{netns_topology.peer_ip(0)}:{SITE_PORT}"
    assert before[second].allowed_ips == ("10.77.0.3/32",)
    assert after[second].allowed_ips == ("10.77.0.40/32",)


@pytest.mark.netns
def test_routed_subnet_gets_a_route_and_carries_traffic_until_the_peer_leaves(
    netns_topology: Topology, hub: Device, sites: list[Device]
) -> None:
    site = sites[0]
    in_ns(site.ns, "ip", "addr", "add", "10.99.1.1/32", "dev", "lo")  # the site's LAN host
    peer = hub_view_of(site, 0, netns_topology, routes=("10.99.1.0/24",), with_endpoint=True)

    changes = hub.driver.apply_peers("wg0", [peer], [])

    assert changes.added == [site.public_key] and changes.routes_added == ["10.99.1.0/24"]
    routes = run("ip", "-n", hub.ns, "route", "show", "proto", str(ROUTE_PROTO)).stdout
    assert "10.99.1.0/24 dev wg0" in routes
    assert ping(hub.ns, "10.99.1.1")

    changes = hub.driver.apply_peers("wg0", [], [site.public_key])

    assert changes.removed == [site.public_key] and changes.routes_removed == ["10.99.1.0/24"]
    assert "10.99.1.0" not in run("ip", "-n", hub.ns, "route").stdout
    assert not ping(hub.ns, "10.99.1.1", tries=1)


@pytest.mark.netns
def test_converge_removes_routes_it_does_not_want_and_leaves_others_alone(hub: Device) -> None:
    key = new_key()
    hub.driver.converge(
        "wg0", [PeerSpec(key, ("10.77.0.9/32", "10.98.0.0/24"), routes=("10.98.0.0/24",))]
    )
    run("ip", "-n", hub.ns, "route", "add", "10.97.0.0/24", "dev", "wg0")  # someone else's
    run(
        "ip", "-n", hub.ns, "route", "add", "10.96.0.0/24", "dev", "wg0", "proto", str(ROUTE_PROTO)
    )  # looks like ours, nobody wants it
    run("ip", "-n", hub.ns, "route", "del", "10.98.0.0/24")  # ours, deleted by hand

    changes = hub.driver.converge(
        "wg0", [PeerSpec(key, ("10.77.0.9/32", "10.98.0.0/24"), routes=("10.98.0.0/24",))]
    )

    assert changes.routes_added == ["10.98.0.0/24"]
    assert changes.routes_removed == ["10.96.0.0/24"]
    assert "10.97.0.0/24" in run("ip", "-n", hub.ns, "route").stdout


@pytest.mark.netns
def test_converging_twice_changes_nothing_the_second_time(hub: Device) -> None:
    peers = [PeerSpec(new_key(), (f"10.77.0.{i}/32",), keepalive=25) for i in range(10, 60)]
    peers.append(
        PeerSpec(
            new_key(),
            ("10.77.0.61/32", "10.95.0.0/24"),
            routes=("10.95.0.0/24",),
            preshared_key=base64.b64encode(os.urandom(32)).decode(),
        )
    )

    first = hub.driver.converge("wg0", peers)
    second = hub.driver.converge("wg0", peers)
    _, again = hub.driver.ensure_interface(hub.spec)

    assert len(first.added) == 51 and first.transactions == 1
    assert not second.changed and second.transactions == 0
    assert not again.changed


@pytest.mark.netns
def test_apply_peers_touches_only_the_given_peers(hub: Device) -> None:
    keep, change, drop = new_key(), new_key(), new_key()
    hub.driver.converge(
        "wg0",
        [
            PeerSpec(keep, ("10.77.0.20/32",)),
            PeerSpec(change, ("10.77.0.21/32",)),
            PeerSpec(drop, ("10.77.0.22/32",)),
        ],
    )
    added = new_key()

    changes = hub.driver.apply_peers(
        "wg0",
        [PeerSpec(change, ("10.77.0.23/32",), keepalive=15), PeerSpec(added, ("10.77.0.24/32",))],
        [drop],
    )
    again = hub.driver.apply_peers("wg0", [PeerSpec(added, ("10.77.0.24/32",))], [])

    assert (changes.added, changes.updated, changes.removed) == ([added], [change], [drop])
    assert changes.transactions == 1
    assert not again.changed
    peers = hub.state().peers
    assert set(peers) == {keep, change, added}
    assert peers[change].allowed_ips == {"10.77.0.23/32"} and peers[change].keepalive == 15


@pytest.mark.netns
def test_same_named_interfaces_live_in_two_namespaces_at_once(
    hub: Device, sites: list[Device]
) -> None:
    pids = {hub.driver.processes.pid("wg0"), *(s.driver.processes.pid("wg0") for s in sites)}

    assert None not in pids and len(pids) == 3
    for dev in (hub, *sites):
        assert dev.driver.list_interfaces() == ["wg0"]
        assert dev.state().listen_port in (HUB_PORT, SITE_PORT)
    assert not Path("/run/wireguard/wg0.sock").exists()  # nothing leaked to the host
    assert run("findmnt", "/run/wireguard", check=False).returncode != 0


@pytest.mark.netns
def test_a_killed_device_comes_back_with_its_peers_on_the_next_converge(
    netns_topology: Topology, hub: Device, sites: list[Device]
) -> None:
    peers = [hub_view_of(s, i, netns_topology, with_endpoint=True) for i, s in enumerate(sites)]
    hub.driver.converge("wg0", peers)
    assert ping(hub.ns, "10.77.0.2")
    pid = hub.driver.processes.pid("wg0")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    _wait_gone(pid)

    with pytest.raises(DataplaneError) as err:
        hub.driver.apply_peers("wg0", [PeerSpec(new_key(), ("10.77.0.40/32",))], [])
    assert err.value.code == "device_not_running" and err.value.retryable

    changes = hub.driver.converge("wg0", peers)

    assert changes.interface_created and len(changes.added) == 2
    assert hub.state().listen_port == HUB_PORT
    assert "10.77.0.1/24" in run("ip", "-n", hub.ns, "addr", "show", "wg0").stdout
    assert ping(hub.ns, "10.77.0.2")


def _wait_gone(pid: int) -> None:
    deadline = time.monotonic() + 3
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.01)


@pytest.mark.netns
def test_bad_input_is_refused_and_the_device_stays_as_it_was(
    netns_topology: Topology, hub: Device
) -> None:
    good = PeerSpec(new_key(), ("10.77.0.30/32",))
    hub.driver.converge("wg0", [good])
    before = hub.snapshot()
    bad_requests = {
        "invalid_key": lambda: hub.driver.converge(
            "wg0", [good, PeerSpec("nope", ("10.1.1.1/32",))]
        ),
        "invalid_address": lambda: hub.driver.apply_peers(
            "wg0", [PeerSpec(new_key(), ("10.77.0.300/32",))], []
        ),
        "duplicate_address": lambda: hub.driver.converge(
            "wg0", [good, PeerSpec(new_key(), ("10.77.0.30/32",))]
        ),
        "invalid_endpoint": lambda: hub.driver.apply_peers(
            "wg0", [PeerSpec(new_key(), ("10.77.0.31/32",), endpoint="1.2.3.4")], []
        ),
        "invalid_interface": lambda: hub.driver.ensure_interface(
            InterfaceSpec("wg0", hub.spec.private_key_file, 70000, ("10.77.0.1/24",))
        ),
    }
    for code, request in bad_requests.items():
        with pytest.raises(DataplaneError) as err:
            request()
        assert (err.value.code, err.value.retryable) == (code, False)
        assert hub.snapshot() == before, code


@pytest.mark.netns
def test_a_port_in_use_is_refused_and_the_device_keeps_its_port(
    netns_topology: Topology, hub: Device
) -> None:
    holder = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            hub.ns,
            "python3",
            "-c",
            "import socket,time; s=socket.socket(2,2); s.bind(('',51999)); print(1, flush=True);"
            " time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"1"
        before = hub.snapshot()
        taken = InterfaceSpec("wg0", hub.spec.private_key_file, 51999, ("10.77.0.1/24",), 1420)

        with pytest.raises(DataplaneError) as err:
            hub.driver.ensure_interface(taken)

        assert (err.value.code, err.value.retryable) == ("port_in_use", False)
        assert hub.snapshot() == before
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.netns
def test_a_namespace_that_does_not_exist_is_not_found(tmp_path: Path) -> None:
    driver = UapiDriver(tmp_path, "ely-missing-0000")
    spec = InterfaceSpec("wg0", tmp_path / "k", HUB_PORT, ("10.77.0.1/24",))

    for request in (lambda: driver.ensure_interface(spec), lambda: driver.converge("wg0", [])):
        with pytest.raises(DataplaneError) as err:
            request()
        assert (err.value.code, err.value.retryable) == ("netns_not_found", False)
    assert not Path("/run/netns/ely-missing-0000").exists()


# ---- the UAPI text protocol -----------------------------------------------------------------


def test_set_request_puts_the_port_first_and_speaks_hex() -> None:
    key, peer = generate_private_key(), new_key()
    update = DeviceUpdate(
        listen_port=51820,
        private_key=key,
        fwmark=0,
        peers=[
            PeerUpdate(
                peer,
                update_only=True,
                replace_allowed_ips=True,
                allowed_ips=("10.0.0.2/32",),
                keepalive=25,
                preshared_key="",
            ),
            PeerUpdate(new_key(), remove=True),
        ],
    )

    lines = encode_set(update).decode().split("\n")

    assert lines[:4] == [
        "set=1",
        "listen_port=51820",
        f"private_key={base64.b64decode(key).hex()}",
        "fwmark=0",
    ]
    assert lines[4:10] == [
        f"public_key={base64.b64decode(peer).hex()}",
        "update_only=true",
        "preshared_key=" + "0" * 64,
        "persistent_keepalive_interval=25",
        "replace_allowed_ips=true",
        "allowed_ip=10.0.0.2/32",
    ]
    assert lines[11] == "remove=true"
    assert encode_set(update).endswith(b"\n\n")


def test_get_answer_parses_the_same_fast_and_line_by_line() -> None:
    key = new_key()
    answer = (
        "private_key=" + "11" * 32 + "\nlisten_port=51820\n"
        f"public_key={base64.b64decode(key).hex()}\npreshared_key=" + "0" * 64 + "\n"
        "protocol_version=1\nendpoint=198.18.0.11:51821\nlast_handshake_time_sec=1700000000\n"
        "last_handshake_time_nsec=5\ntx_bytes=10\nrx_bytes=20\npersistent_keepalive_interval=0\n"
        "allowed_ip=10.77.0.2/32\nallowed_ip=10.99.0.0/24\n"
        f"public_key={'22' * 32}\npreshared_key=" + "0" * 64 + "\nprotocol_version=1\n"
        "last_handshake_time_sec=0\nlast_handshake_time_nsec=0\ntx_bytes=0\nrx_bytes=0\n"
        "persistent_keepalive_interval=25\n"
    ).encode()

    stats = parse_stats(answer)
    state = parse_state(answer)

    assert stats == _parse_stats_by_line(answer)
    assert stats[0].public_key == key and stats[0].rx_bytes == 20 and stats[0].tx_bytes == 10
    assert stats[0].allowed_ips == ("10.77.0.2/32", "10.99.0.0/24")
    assert stats[0].last_handshake_at is not None and stats[1].last_handshake_at is None
    assert stats[1].endpoint is None and stats[1].allowed_ips == ()
    assert state.listen_port == 51820 and state.peers[key].endpoint == "198.18.0.11:51821"


def _peer_text(key: str, rx: int, handshake: int = 0, ips: tuple[str, ...] = ()) -> str:
    return (
        f"public_key={base64.b64decode(key).hex()}\npreshared_key={'0' * 64}\n"
        f"protocol_version=1\nlast_handshake_time_sec={handshake}\nlast_handshake_time_nsec=0\n"
        f"tx_bytes=7\nrx_bytes={rx}\npersistent_keepalive_interval=0\n"
        + "".join(f"allowed_ip={ip}\n" for ip in ips)
    )


def test_stats_reader_reuses_only_peers_whose_text_did_not_change() -> None:
    idle, busy, gone, new = new_key(), new_key(), new_key(), new_key()
    device = "private_key=" + "11" * 32 + "\nlisten_port=51820\n"
    first = device + _peer_text(idle, 5, ips=("10.0.0.1/32",)) + _peer_text(busy, 5)
    first += _peer_text(gone, 0)
    second = device + _peer_text(idle, 5, ips=("10.0.0.1/32",))
    second += _peer_text(busy, 900, handshake=1700000000, ips=("10.0.0.2/32",))
    second += _peer_text(new, 1)
    reader = StatsReader()

    before = reader.parse(first.encode())
    after = reader.parse(second.encode())

    assert after == parse_stats(second.encode()) == _parse_stats_by_line(second.encode())
    assert [s.public_key for s in after] == [idle, busy, new]
    assert after[0] is before[0]  # unchanged text: the same stats, not parsed again
    assert (after[1].rx_bytes, after[1].allowed_ips) == (900, ("10.0.0.2/32",))
    assert after[1].last_handshake_at is not None and before[1].last_handshake_at is None
    assert reader.parse(b"private_key=" + b"11" * 32 + b"\n") == []


def test_errno_98_from_the_device_means_port_in_use() -> None:
    err = UapiError(-98, "refused")
    assert (err.code, err.retryable) == ("port_in_use", False)
    assert UapiError(-22, "bad").code == "uapi"


# ---- the kernel driver (no kernel module on this machine) -----------------------------------


def _roundtrip(msg):  # type: ignore[no-untyped-def]
    from pyroute2.netlink.generic.wireguard import wgmsg

    msg["header"]["type"] = 0x20
    msg.encode()
    decoded = wgmsg(msg.data)
    decoded.decode()
    return decoded


def test_kernel_set_messages_carry_settings_once_and_peers_in_batches() -> None:
    key = generate_private_key()
    peers = [
        PeerUpdate(new_key(), allowed_ips=(f"10.0.{i // 256}.{i % 256}/32",)) for i in range(600)
    ]
    peers[0] = PeerUpdate(
        peers[0].public_key,
        update_only=True,
        replace_allowed_ips=True,
        allowed_ips=("fd00::2/128",),
        endpoint="[fd00::9]:51820",
        keepalive=5,
    )
    peers[1] = PeerUpdate(peers[1].public_key, remove=True)

    messages = [
        _roundtrip(m)
        for m in build_set_messages(
            "wg0", DeviceUpdate(listen_port=51820, private_key=key, peers=peers)
        )
    ]

    assert len(messages) == 3
    assert messages[0].get_attr("WGDEVICE_A_LISTEN_PORT") == 51820
    assert messages[0].get_attr("WGDEVICE_A_PRIVATE_KEY") == key.encode()
    assert all(m.get_attr("WGDEVICE_A_LISTEN_PORT") is None for m in messages[1:])
    assert sum(len(m.get_attr("WGDEVICE_A_PEERS")) for m in messages) == 600
    first, second = messages[0].get_attr("WGDEVICE_A_PEERS")[:2]
    assert first.get_attr("WGPEER_A_FLAGS") == 0x4 | 0x2  # update only, replace allowed IPs
    assert first.get_attr("WGPEER_A_ALLOWEDIPS")[0]["addr"] == "fd00::2/128"
    assert first.get_attr("WGPEER_A_ENDPOINT")["port"] == 51820
    assert first.get_attr("WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL") == 5
    assert second.get_attr("WGPEER_A_FLAGS") == 0x1  # remove me
    assert second.get_attr("WGPEER_A_ALLOWEDIPS") is None


def test_kernel_dump_parts_merge_into_one_peer_list() -> None:
    key = new_key()
    update = DeviceUpdate(peers=[PeerUpdate(key, allowed_ips=("10.0.0.2/32",))])
    part1 = _roundtrip(build_set_messages("wg0", update)[0])
    update2 = DeviceUpdate(peers=[PeerUpdate(key, allowed_ips=("10.9.0.0/24",), keepalive=7)])
    part2 = _roundtrip(build_set_messages("wg0", update2)[0])

    state, stats = parse_device([part1, part2])

    assert state.peers[key].allowed_ips == {"10.0.0.2/32", "10.9.0.0/24"}
    assert [s.public_key for s in stats] == [key]
    assert stats[0].allowed_ips == ("10.0.0.2/32", "10.9.0.0/24")


@pytest.mark.skipif(kernel_wireguard_available(), reason="this kernel speaks WireGuard")
def test_kernel_driver_without_the_module_is_wireguard_unavailable(tmp_path: Path) -> None:
    with pytest.raises(DataplaneError) as err:
        KernelDriver(tmp_path, None)
    assert (err.value.code, err.value.retryable) == ("wireguard_unavailable", True)

    with pytest.raises(DataplaneError) as forced:
        make_dataplane("kernel", tmp_path, None)
    assert forced.value.code == "wireguard_unavailable"
    assert isinstance(make_dataplane("auto", tmp_path, None), UapiDriver)


def test_make_dataplane_refuses_an_unknown_driver(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        make_dataplane("magic", tmp_path, None)
    assert isinstance(make_dataplane("userspace", tmp_path, None), UapiDriver)


def test_routes_must_be_among_the_allowed_ips(tmp_path: Path) -> None:
    driver = UapiDriver(tmp_path, None)
    with pytest.raises(DataplaneError) as err:
        driver.apply_peers(
            "wg0", [PeerSpec(new_key(), ("10.0.0.2/32",), routes=("10.5.0.0/24",))], []
        )
    assert err.value.code == "invalid_address" and "routes" in err.value.fields


def test_unix_socket_helper_reports_a_missing_device(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        transact(tmp_path / "nothing.sock", b"get=1\n\n")
    assert socket.AF_UNIX  # the transport is a plain unix stream socket


def test_a_deep_state_directory_still_gets_a_working_socket(
    netns_topology: Topology, tmp_path: Path
) -> None:
    deep = tmp_path.joinpath(*(["a-rather-long-directory-name"] * 5))
    assert len(str(deep / "netns" / netns_topology.hub / "wg1.sock")) > 108
    driver = UapiDriver(deep, netns_topology.hub)
    try:
        spec = InterfaceSpec("wg1", deep / "keys" / "wg1.key", 51999, ("10.78.0.1/24",))
        pub, _ = driver.ensure_interface(spec)
        assert driver.dump("wg1") == []
        assert len(pub) == 44
    finally:
        driver.remove_interface("wg1")
        driver.close()

"""The kernel driver: ``wireguard`` links, programmed over generic netlink (pyroute2).

The link is made with rtnetlink; key, port and peers go through the ``wireguard`` generic
netlink family in batches (:func:`build_set_messages`), read back with one dump.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pyroute2 import WireGuard
from pyroute2.netlink import NLM_F_ACK, NLM_F_REQUEST
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.generic.wireguard import (
    WG_CMD_SET_DEVICE,
    WG_GENL_VERSION,
    WGPEER_F_REMOVE_ME,
    WGPEER_F_REPLACE_ALLOWEDIPS,
    WGPEER_F_UPDATE_ONLY,
    wgmsg,
)

from dataplane.base import PeerStats
from dataplane.driver import ConvergingDriver
from dataplane.links import require_netns
from dataplane.peer_state import DeviceState, DeviceUpdate, PeerState, PeerUpdate
from elysium.errors import DataplaneError

# Peers per netlink message: keeps each message well under the socket buffer, as wg(8) does.
PEERS_PER_MESSAGE = 256
ZERO_KEY = "A" * 43 + "="


def open_wireguard(netns: str | None) -> WireGuard:
    """A ``wireguard`` generic netlink socket, or ``wireguard_unavailable`` (retryable)."""
    require_netns(netns)
    try:
        return WireGuard(netns=netns, flags=0) if netns else WireGuard()
    except (NetlinkError, OSError) as exc:
        raise DataplaneError(
            f"the kernel has no WireGuard support (generic netlink family 'wireguard'): {exc}",
            code="wireguard_unavailable",
            retryable=True,
        ) from None


def kernel_wireguard_available(netns: str | None = None) -> bool:
    """Whether the ``wireguard`` family answers (the kernel loads the module on demand)."""
    try:
        open_wireguard(netns).close()
    except DataplaneError:
        return False
    return True


def peer_attrs(peer: PeerUpdate) -> dict[str, Any]:
    """The ``WGDEVICE_A_PEERS`` entry for one peer update."""
    attrs: list[list[Any]] = [["WGPEER_A_PUBLIC_KEY", peer.public_key]]
    if peer.remove:
        attrs.append(["WGPEER_A_FLAGS", WGPEER_F_REMOVE_ME])
        return {"attrs": attrs}
    flags = (WGPEER_F_UPDATE_ONLY if peer.update_only else 0) | (
        WGPEER_F_REPLACE_ALLOWEDIPS if peer.replace_allowed_ips else 0
    )
    attrs.append(["WGPEER_A_FLAGS", flags])
    if peer.preshared_key is not None:
        attrs.append(["WGPEER_A_PRESHARED_KEY", peer.preshared_key or ZERO_KEY])
    if peer.endpoint is not None:
        host, _, port = peer.endpoint.rpartition(":")
        attrs.append(["WGPEER_A_ENDPOINT", {"addr": host.strip("[]"), "port": int(port)}])
    if peer.keepalive is not None:
        attrs.append(["WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL", peer.keepalive])
    if peer.allowed_ips:
        attrs.append(["WGPEER_A_ALLOWEDIPS", [_allowed_ip(ip) for ip in peer.allowed_ips]])
    return {"attrs": attrs}


def _allowed_ip(cidr: str) -> dict[str, Any]:
    net = ipaddress.ip_network(cidr)
    family = socket.AF_INET if net.version == 4 else socket.AF_INET6
    return {
        "attrs": [
            ["WGALLOWEDIP_A_FAMILY", family],
            ["WGALLOWEDIP_A_IPADDR", net.network_address.packed],
            ["WGALLOWEDIP_A_CIDR_MASK", net.prefixlen],
        ]
    }


def build_set_messages(ifname: str, update: DeviceUpdate) -> list[wgmsg]:
    """``WG_CMD_SET_DEVICE`` messages for one update: device settings ride on the first."""
    messages: list[wgmsg] = []
    peers = update.peers
    for start in range(0, max(len(peers), 1), PEERS_PER_MESSAGE):
        msg = wgmsg()
        msg["cmd"] = WG_CMD_SET_DEVICE
        msg["version"] = WG_GENL_VERSION
        msg["attrs"].append(["WGDEVICE_A_IFNAME", ifname])
        if start == 0:
            if update.listen_port is not None:
                msg["attrs"].append(["WGDEVICE_A_LISTEN_PORT", update.listen_port])
            if update.private_key is not None:
                msg["attrs"].append(["WGDEVICE_A_PRIVATE_KEY", update.private_key])
            if update.fwmark is not None:
                msg["attrs"].append(["WGDEVICE_A_FWMARK", update.fwmark])
        chunk = peers[start : start + PEERS_PER_MESSAGE]
        if chunk:
            msg["attrs"].append(["WGDEVICE_A_PEERS", [peer_attrs(p) for p in chunk]])
        messages.append(msg)
    return messages


def parse_device(messages: Iterable[Any]) -> tuple[DeviceState, list[PeerStats]]:
    """Decoded ``WG_CMD_GET_DEVICE`` dump parts as device state and per-peer stats.

    A big device comes in several parts; a peer split across parts repeats its key.
    """
    state = DeviceState()
    stats: dict[str, PeerStats] = {}
    for msg in messages:
        key = msg.get_attr("WGDEVICE_A_PRIVATE_KEY")
        if key is not None:
            state.private_key = _text(key)
        state.listen_port = msg.get_attr("WGDEVICE_A_LISTEN_PORT") or state.listen_port
        state.fwmark = msg.get_attr("WGDEVICE_A_FWMARK") or state.fwmark
        for peer in msg.get_attr("WGDEVICE_A_PEERS") or ():
            _merge_peer(state, stats, peer)
    return state, list(stats.values())


def _merge_peer(state: DeviceState, stats: dict[str, PeerStats], peer: Any) -> None:
    key = _text(peer.get_attr("WGPEER_A_PUBLIC_KEY"))
    ips = tuple(ip["addr"] for ip in peer.get_attr("WGPEER_A_ALLOWEDIPS") or ())
    old = state.peers.get(key)
    if old is not None:  # continuation of a peer from the previous part
        state.peers[key] = PeerState(
            key, old.allowed_ips | set(ips), old.endpoint, old.keepalive, old.preshared_key
        )
        prev = stats[key]
        stats[key] = PeerStats(
            key,
            prev.endpoint,
            prev.last_handshake_at,
            prev.rx_bytes,
            prev.tx_bytes,
            prev.allowed_ips + ips,
        )
        return
    endpoint = peer.get_attr("WGPEER_A_ENDPOINT")
    ep = None
    if endpoint is not None and endpoint.get("port"):
        addr = endpoint["addr"]
        ep = f"[{addr}]:{endpoint['port']}" if ":" in addr else f"{addr}:{endpoint['port']}"
    psk = peer.get_attr("WGPEER_A_PRESHARED_KEY")
    psk_text = _text(psk) if psk is not None else None
    keepalive = peer.get_attr("WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL") or 0
    state.peers[key] = PeerState(
        key, frozenset(ips), ep, keepalive, None if psk_text in (None, ZERO_KEY) else psk_text
    )
    handshake = peer.get_attr("WGPEER_A_LAST_HANDSHAKE_TIME")
    seen = None
    if handshake is not None and handshake.get("tv_sec"):
        seen = datetime.fromtimestamp(handshake["tv_sec"] + handshake["tv_nsec"] / 1e9, UTC)
    stats[key] = PeerStats(
        key,
        ep,
        seen,
        peer.get_attr("WGPEER_A_RX_BYTES") or 0,
        peer.get_attr("WGPEER_A_TX_BYTES") or 0,
        ips,
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class KernelDriver(ConvergingDriver):
    """WireGuard through the kernel module. Raises ``wireguard_unavailable`` without it."""

    def __init__(self, state_dir: Path, netns: str | None) -> None:
        super().__init__(state_dir, netns)
        self.wg = open_wireguard(netns)

    def close(self) -> None:
        """Release the rtnetlink and the generic netlink socket (links stay)."""
        try:
            super().close()
        finally:
            self.wg.close()

    def _running(self, name: str) -> bool:
        return self.links.kind(name) == "wireguard"

    def _create(self, name: str) -> None:
        try:
            self.links.ipr.link("add", ifname=name, kind="wireguard")
        except NetlinkError as exc:
            raise DataplaneError(
                f"cannot create {name}: {exc}", code="device_start_failed", retryable=True
            ) from exc

    def _destroy(self, name: str) -> bool:
        idx = self.links.index(name)
        if idx is None or not self._running(name):
            return False
        self.links.ipr.link("del", index=idx)
        return True

    def _names(self) -> list[str]:
        links = self.links.ipr.get_links()
        return sorted(
            link.get_attr("IFLA_IFNAME")
            for link in links
            if (info := link.get_attr("IFLA_LINKINFO")) is not None
            and info.get_attr("IFLA_INFO_KIND") == "wireguard"
        )

    def _dump(self, name: str) -> tuple[DeviceState, list[PeerStats]]:
        try:
            return parse_device(self.wg.info(name))
        except NetlinkError as exc:
            raise DataplaneError(
                f"{name}: {exc}", code="device_not_running", retryable=True
            ) from exc

    def _read(self, name: str) -> DeviceState:
        return self._dump(name)[0]

    def _stats(self, name: str) -> list[PeerStats]:
        return self._dump(name)[1]

    def _write(self, name: str, update: DeviceUpdate) -> None:
        for msg in build_set_messages(name, update):
            self._send(msg)

    def _send(self, msg: wgmsg) -> None:
        try:
            self.wg.nlm_request(msg, msg_type=self.wg.prid, msg_flags=NLM_F_REQUEST | NLM_F_ACK)
        except NetlinkError as exc:
            if exc.code == 98:  # EADDRINUSE
                raise DataplaneError(
                    "listen port already in use",
                    code="port_in_use",
                    fields={"listen_port": "already in use"},
                ) from None
            raise DataplaneError(
                f"wireguard netlink: {exc}", code="netlink", retryable=True
            ) from exc

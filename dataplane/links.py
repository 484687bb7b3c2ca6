"""Interface addresses, MTU, link state and peer-subnet routes, through rtnetlink (pyroute2).

Routes we install carry a protocol number of our own (:data:`ROUTE_PROTO`), so converge can
tell them from anyone else's: it removes extra ones and repairs missing ones of ours only.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from elysium.errors import DataplaneError

ROUTE_PROTO = 69  # "E"; not among /etc/iproute2/rt_protos' reserved numbers
NETNS_DIR = Path("/run/netns")
EEXIST = 17
ENODEV = 19
ESRCH = 3
SCOPE_UNIVERSE = 0
SCOPE_LINK = 253


def require_netns(netns: str | None) -> None:
    """Raise ``netns_not_found`` unless the named namespace exists."""
    if netns is not None and not (NETNS_DIR / netns).exists():
        raise DataplaneError(
            f"network namespace {netns!r} does not exist",
            code="netns_not_found",
            fields={"netns": "not found"},
        )


def open_iproute(netns: str | None) -> IPRoute:
    """An rtnetlink socket inside ``netns`` (never creating the namespace)."""
    require_netns(netns)
    try:
        return IPRoute(netns=netns, flags=0) if netns else IPRoute()
    except FileNotFoundError:
        require_netns(netns)
        raise


class InterfaceLinks:
    """Addresses, MTU, state and our routes of the interfaces in one namespace."""

    def __init__(self, netns: str | None) -> None:
        self.netns = netns
        self._ipr: IPRoute | None = None
        self._pid = os.getpid()

    @property
    def ipr(self) -> IPRoute:
        if self._ipr is None or self._pid != os.getpid():  # a forked worker gets its own socket
            self._ipr = open_iproute(self.netns)
            self._pid = os.getpid()
        return self._ipr

    def close(self) -> None:
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None

    def index(self, ifname: str) -> int | None:
        found = self.ipr.link_lookup(ifname=ifname)
        return found[0] if found else None

    def kind(self, ifname: str) -> str | None:
        """The link kind (``wireguard``, ``tun``, ...) of an interface, None if absent."""
        idx = self.index(ifname)
        if idx is None:
            return None
        (link,) = self.ipr.get_links(idx)
        info = link.get_attr("IFLA_LINKINFO")
        return info.get_attr("IFLA_INFO_KIND") if info is not None else None

    def configure(self, ifname: str, addresses: Iterable[str], mtu: int | None) -> list[str]:
        """Make the link have exactly ``addresses`` (link-local aside), ``mtu``, and be up.

        Returns what changed among ``"addresses"``, ``"mtu"``, ``"state"``.
        """
        idx = self._need_index(ifname)
        changed: list[str] = []
        (link,) = self.ipr.get_links(idx)
        if mtu is not None and link.get_attr("IFLA_MTU") != mtu:
            self.ipr.link("set", index=idx, mtu=mtu)
            changed.append("mtu")
        want = {str(ipaddress.ip_interface(a)) for a in addresses}
        have: dict[str, Any] = {}
        for msg in self.ipr.get_addr(index=idx):
            addr = f"{msg.get_attr('IFA_ADDRESS')}/{msg['prefixlen']}"
            if msg.get_attr("IFA_LOCAL") is not None:
                addr = f"{msg.get_attr('IFA_LOCAL')}/{msg['prefixlen']}"
            if ipaddress.ip_interface(addr).is_link_local:
                continue
            have[str(ipaddress.ip_interface(addr))] = msg
        for addr in sorted(have.keys() - want):
            iface = ipaddress.ip_interface(addr)
            self.ipr.addr(
                "del", index=idx, address=str(iface.ip), prefixlen=iface.network.prefixlen
            )
        for addr in sorted(want - have.keys()):
            iface = ipaddress.ip_interface(addr)
            self.ipr.addr(
                "add", index=idx, address=str(iface.ip), prefixlen=iface.network.prefixlen
            )
        if want != have.keys():
            changed.append("addresses")
        if not link["flags"] & 1:  # IFF_UP
            self.ipr.link("set", index=idx, state="up")
            changed.append("state")
        return changed

    def routes(self, ifname: str) -> set[str]:
        """Destinations of our routes via ``ifname`` (canonical CIDRs)."""
        idx = self.index(ifname)
        if idx is None:
            return set()
        out: set[str] = set()
        for family in (socket.AF_INET, socket.AF_INET6):
            for msg in self.ipr.route("dump", family=family, proto=ROUTE_PROTO, oif=idx):
                if msg["proto"] != ROUTE_PROTO or msg.get_attr("RTA_OIF") != idx:
                    continue
                dst = msg.get_attr("RTA_DST") or ("0.0.0.0" if family == socket.AF_INET else "::")
                out.add(str(ipaddress.ip_network(f"{dst}/{msg['dst_len']}")))
        return out

    def add_routes(self, ifname: str, dsts: Iterable[str]) -> list[str]:
        """Install our routes; a destination someone else already routes is ``route_conflict``.

        Either all are added or none (those added before a failure are taken back).
        """
        idx = self._need_index(ifname)
        added: list[str] = []
        try:
            for dst in dsts:
                try:
                    self.ipr.route("add", dst=dst, oif=idx, proto=ROUTE_PROTO)
                except NetlinkError as exc:
                    if exc.code != EEXIST:
                        raise
                    raise DataplaneError(
                        f"{dst} is already routed on this host",
                        code="route_conflict",
                        fields={"routes": f"{dst} is already routed"},
                    ) from None
                added.append(dst)
        except Exception:
            self.remove_routes(ifname, added)
            raise
        return added

    def remove_routes(self, ifname: str, dsts: Iterable[str]) -> list[str]:
        """Remove our routes to ``dsts`` (missing ones are skipped)."""
        idx = self.index(ifname)
        removed: list[str] = []
        if idx is None:
            return removed
        for dst in dsts:
            if self._delete_route(dst, idx):
                removed.append(dst)
        return removed

    def _delete_route(self, dst: str, idx: int) -> bool:
        # Ours are scope universe; one added by hand as "dev wg0 proto 69" has scope link.
        for scope in (SCOPE_UNIVERSE, SCOPE_LINK):
            try:
                self.ipr.route("del", dst=dst, oif=idx, proto=ROUTE_PROTO, scope=scope)
                return True
            except NetlinkError as exc:
                if exc.code not in (ESRCH, ENODEV):
                    raise
        return False

    def _need_index(self, ifname: str) -> int:
        idx = self.index(ifname)
        if idx is None:
            raise DataplaneError(f"interface {ifname} is missing", code="interface_not_found")
        return idx


def underlay_addresses(netns: str | None, wireguard: Iterable[str]) -> list[str]:
    """The addresses of the hub's other interfaces in its namespace: not loopback, not its
    WireGuard devices (``wireguard`` names, or any link of kind ``wireguard``).

    The heartbeat reports them so the API can refuse routed subnets that cover them.
    """
    skip = set(wireguard) | {"lo"}
    ipr = open_iproute(netns)  # its own socket: the heartbeat thread shares none
    try:
        skipped = set()
        for link in ipr.get_links():
            info = link.get_attr("IFLA_LINKINFO")
            kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
            if link.get_attr("IFLA_IFNAME") in skip or kind == "wireguard":
                skipped.add(link["index"])
        found = {
            str(ipaddress.ip_address(a.get_attr("IFA_LOCAL") or a.get_attr("IFA_ADDRESS")))
            for a in ipr.get_addr()
            if a["index"] not in skipped
        }
    finally:
        ipr.close()
    return sorted(found, key=lambda a: (ipaddress.ip_address(a).version, ipaddress.ip_address(a)))

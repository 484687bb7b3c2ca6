"""What a hub enforces besides WireGuard: forwarding, and its interfaces' policies and NAT
in Elysium's nftables table.

A full load (interface created or changed, policy replaced, reconcile, worker start) puts
the whole table in place in one transaction. A peer joining, leaving or changing tags only
changes elements of the policy's sets; the rules stay as they are.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from psycopg import Connection
from psycopg.rows import DictRow

import elysium.policy as policy
from db import peers as peers_db
from db.rows import DesiredPeer, InterfaceRow
from elysium.errors import DataplaneError
from services.policy import compile_with, memberships, mesh_peers
from workers.firewall import Firewall, InterfaceFirewall
from workers.forwarding import Forwarding

log = logging.getLogger(__name__)


def _elements(members: policy.SetMembers, sets: set[str]) -> set[tuple[str, str]]:
    return {(name, e) for name, elements in members.items() if name in sets for e in elements}


def _as_members(elements: Iterable[tuple[str, str]]) -> policy.SetMembers:
    out: policy.SetMembers = {}
    for name, element in sorted(elements):
        out.setdefault(name, []).append(element)
    return out


class HubPolicy:
    """Forwarding and the nftables table of one hub (in its namespace, if it has one)."""

    def __init__(self, state_dir: Path, netns: str | None) -> None:
        self.netns = netns
        self._firewall: Firewall | None = None
        self.forwarding = Forwarding(state_dir, netns)
        # What the table holds now, per interface: its sets, and each peer's share of them.
        self._sets: dict[str, set[str]] = {}
        self._peers: dict[str, dict[int, set[tuple[str, str]]]] = {}

    @property
    def firewall(self) -> Firewall:
        """Opened on first use: the namespace may not exist yet when the worker starts."""
        if self._firewall is None:
            self._firewall = Firewall(self.netns)
        return self._firewall

    def _share(self, name: str, peer: DesiredPeer) -> set[tuple[str, str]]:
        members = policy.members_for(name, memberships([peer]), [], [])
        return _elements(members, self._sets.get(name, set()))

    def load(self, conn: Connection[DictRow], interfaces: list[InterfaceRow]) -> bool:
        """Put the whole table in place (one transaction); True when it differed from what
        was there (drift, or a change). Without interfaces the table goes and forwarding
        is put back as it was."""
        if not interfaces:
            self.teardown()
            return False
        loaded = []
        shares: dict[str, dict[int, set[tuple[str, str]]]] = {}
        across = mesh_peers(conn, interfaces[0]["hub"])  # one read for all the hub's interfaces
        for iface in interfaces:
            local = peers_db.desired_peers(conn, iface["id"])
            compiled, members = compile_with(iface, local, across)
            self._sets[iface["name"]] = {s.name for s in compiled.sets}
            nat = iface["nat"] or {}
            networks = tuple(n for n in (iface["network"], iface["network6"]) if n)
            loaded.append(
                InterfaceFirewall(iface["name"], compiled, members, networks, nat.get("egress"))
            )
            shares[iface["name"]] = {p["id"]: self._share(iface["name"], p) for p in local}
        changed = self.firewall.apply(loaded)
        self._sets = {f.name: {s.name for s in f.compiled.sets} for f in loaded}
        self._peers = shares
        return changed

    def follow_peers(
        self, conn: Connection[DictRow], iface: InterfaceRow, peer_ids: list[int]
    ) -> None:
        """Peers of ``iface`` that joined, left or changed: their set elements follow."""
        name = iface["name"]
        if name not in self._peers:  # nothing loaded for it yet: the next full load covers it
            return
        now = {p["id"]: p for p in peers_db.desired_peers(conn, iface["id"], peer_ids)}
        shares = self._peers[name]
        add: set[tuple[str, str]] = set()
        remove: set[tuple[str, str]] = set()
        for peer_id in peer_ids:
            new = self._share(name, now[peer_id]) if peer_id in now else set()
            old = shares.get(peer_id, set())
            add |= new - old
            remove |= old - new
            if new:
                shares[peer_id] = new
            else:
                shares.pop(peer_id, None)
        if add or remove:
            self.firewall.update_members(_as_members(add), _as_members(remove))

    def ensure_forwarding(self, interfaces: Iterable[str] = ()) -> list[str]:
        """The gateway switches in place (forwarding on, no redirects) for the namespace and
        ``interfaces``; the switches that were off."""
        return self.forwarding.ensure(interfaces)

    def teardown(self) -> None:
        """Elysium's table gone, forwarding as Elysium found it."""
        try:
            self.firewall.remove()
        except DataplaneError as exc:
            log.warning("removing the firewall table: %s", exc.message)
        self.forwarding.restore()
        self._sets.clear()
        self._peers.clear()

    def close(self) -> None:
        if self._firewall is not None:
            self._firewall.close()

"""A hub's side of the mesh: its mesh device (``elymesh``), one WireGuard peer per linked
hub with the networks behind that hub as allowed IPs and routes.

The mesh key is made here, on first start, and never leaves the hub; the worker reports its
public half. Link jobs and reconcile converge every link at once (one device read, one
write). An endpoint that does not resolve, or that this hub has no route to, fails that
link alone with a clear code: the device keeps what it had for it, the others are set.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
from pathlib import Path
from typing import Any

from psycopg import Connection
from psycopg.rows import DictRow
from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from dataplane import ChangeSet, Dataplane, InterfaceSpec, PeerSpec, PeerStats
from dataplane.links import open_iproute
from db import mesh as mesh_db
from db.rows import JobRow
from elysium.errors import DataplaneError
from elysium.keys import load_or_create_private_key, public_key
from elysium.mesh import MESH_DEVICE, MESH_KEEPALIVE_S, split_endpoint
from services.mesh_jobs import record_link_jobs
from workers import metrics

log = logging.getLogger(__name__)


class HubMesh:
    """The mesh device of hub ``hub`` in ``netns``."""

    def __init__(self, hub: str, state_dir: Path, netns: str | None, dataplane: Dataplane) -> None:
        self.hub = hub
        self.netns = netns
        self.dataplane = dataplane
        self.key_file = state_dir / "keys" / f"{MESH_DEVICE}.key"

    # ---- the key ----------------------------------------------------------------------
    def public_key(self) -> str:
        self.key_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        return public_key(load_or_create_private_key(self.key_file))

    def report_key(self, conn: Connection[DictRow]) -> list[JobRow]:
        """Record this hub's mesh public key; when it is new, the linked hubs get a link job
        (their peer entry for this hub waited for it). Returns those jobs, to be sent."""
        with conn.transaction():
            if not mesh_db.record_mesh_key(conn, self.hub, self.public_key()):
                return []
            me, linked = mesh_db.mesh_of(conn, self.hub)
            if me is None:
                return []
            return record_link_jobs(conn, [(o, me) for o in linked], f"hub:{self.hub}", "mesh.key")

    # ---- what the device should hold ----------------------------------------------------
    def _spec(self, me: dict[str, Any]) -> InterfaceSpec:
        return InterfaceSpec(
            name=MESH_DEVICE,
            private_key_file=self.key_file,
            listen_port=me["mesh_port"],
            addresses=(),
        )

    def _reach(self, other: dict[str, Any], ipr: IPRoute) -> str:
        """The address:port to dial for ``other``: resolved, and routable from this hub."""
        host, port = split_endpoint(other["mesh_endpoint"], other["mesh_port"])
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            try:
                info = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
            except OSError as exc:
                raise DataplaneError(
                    f"{self.hub} cannot resolve {other['name']}'s mesh endpoint {host}: {exc}",
                    code="mesh_endpoint_unresolvable",
                ) from None
            address = ipaddress.ip_address(info[0][4][0])
        try:
            ipr.route("get", dst=str(address))
        except NetlinkError as exc:
            if exc.code in (errno.ENETUNREACH, errno.EHOSTUNREACH):
                raise DataplaneError(
                    f"{self.hub} has no route to {other['name']}'s mesh endpoint {address}",
                    code="mesh_peer_unreachable",
                ) from None
            raise
        return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"

    def _peer(self, other: dict[str, Any], behind: list[str], ipr: IPRoute) -> PeerSpec:
        return PeerSpec(
            public_key=other["mesh_public_key"],
            allowed_ips=tuple(behind),
            routes=tuple(behind),
            endpoint=self._reach(other, ipr),
            keepalive=MESH_KEEPALIVE_S,
        )

    # ---- converge -----------------------------------------------------------------------
    def converge(self, conn: Connection[DictRow]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Every link at once (reconcile, or a burst of link jobs): the device holds exactly
        the links it should, in one read and one write. A link whose endpoint fails keeps
        what the device had for it, and its error is recorded.

        Returns what changed and, per linked hub, ``"linked"``, ``"waiting"`` (no key yet)
        or the :class:`DataplaneError` that link met."""
        me, linked = mesh_db.mesh_of(conn, self.hub)
        states: dict[str, Any] = {h["name"]: "waiting" for h in linked}
        ready = [h for h in linked if h["mesh_public_key"]]
        if me is None or not ready:
            if MESH_DEVICE in self.dataplane.list_interfaces():
                self.dataplane.remove_interface(MESH_DEVICE)
                return {"interface_removed": True}, states
            return {}, states
        _, changes = self.dataplane.ensure_interface(self._spec(me))
        held = {p.public_key: p for p in self.dataplane.dump(MESH_DEVICE)}
        behind = mesh_db.networks_behind(conn, [h["id"] for h in ready])
        peers = []
        ipr = open_iproute(self.netns)  # one rtnetlink socket checks every endpoint's route
        try:
            for other in ready:
                try:
                    peers.append(self._peer(other, behind[other["id"]], ipr))
                    states[other["name"]] = "linked"
                except DataplaneError as exc:
                    states[other["name"]] = exc
                    with conn.transaction():
                        mesh_db.record_link_error(
                            conn, me["id"], other["id"], exc.code, exc.message
                        )
                    kept = held.get(other["mesh_public_key"])
                    if kept is not None:
                        peers.append(_as_spec(kept, behind[other["id"]]))
        finally:
            ipr.close()
        converged = self.dataplane.converge(MESH_DEVICE, peers)
        report: dict[str, Any] = _merge(changes, converged).to_dict()
        errors = {n: e.code for n, e in states.items() if isinstance(e, DataplaneError)}
        if errors:
            report["errors"] = errors
        return report, states

    def report_links(self, conn: Connection[DictRow]) -> int:
        """Write what the mesh device holds of each link (handshake, counters)."""
        me, hubs = mesh_db.mesh_of(conn, self.hub)
        try:
            stats = self.dataplane.dump(MESH_DEVICE) if me is not None else []
        except DataplaneError:
            stats = []
        if me is None or not stats:
            metrics.mesh_links({})
            return 0
        linked = {h["mesh_public_key"]: h for h in hubs}
        known = [s for s in stats if s.public_key in linked]
        rows = [_link_row(linked[s.public_key]["id"], s) for s in known]
        with conn.transaction():
            mesh_db.record_link_stats(conn, me["id"], rows)
        metrics.mesh_links(
            {
                linked[s.public_key]["name"]: (
                    s.last_handshake_at.timestamp() if s.last_handshake_at else 0.0,
                    s.rx_bytes,
                    s.tx_bytes,
                )
                for s in known
            }
        )
        return len(rows)


def _link_row(hub_id: int, s: PeerStats) -> tuple[int, str | None, Any, int, int]:
    return (hub_id, s.endpoint, s.last_handshake_at, s.rx_bytes, s.tx_bytes)


def _as_spec(stats: PeerStats, behind: list[str]) -> PeerSpec:
    """What the device holds for a link, kept as it is."""
    held = tuple(stats.allowed_ips) or tuple(behind)
    return PeerSpec(
        public_key=stats.public_key,
        allowed_ips=held,
        routes=held,
        endpoint=stats.endpoint,
        keepalive=MESH_KEEPALIVE_S,
    )


def _merge(device: ChangeSet, peers: ChangeSet) -> ChangeSet:
    peers.interface_created = device.interface_created
    peers.interface_changed = device.interface_changed + peers.interface_changed
    peers.transactions += device.transactions
    return peers

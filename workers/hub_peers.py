"""Peer jobs on a hub: the add, enroll, update, remove, expire and key-rotation jobs waiting
for one interface are taken together (a burst), applied in one dataplane transaction, and
each ended on its own; a batch the device refuses is applied job by job, so only the bad
one fails. The policy's sets follow the peers that moved.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Protocol

from psycopg import Connection
from psycopg.rows import DictRow

from dataplane import ChangeSet, Dataplane, PeerSpec
from db import interfaces as interfaces_db
from db import jobs as jobs_db
from db import peers as peers_db
from db.peer_config import peer_config
from db.rows import DesiredPeer, InterfaceRow, JobRow, PeerRow
from elysium.errors import DataplaneError, ElysiumError
from elysium.networks import peer_allowed_ips
from elysium.states import CONFIG_KINDS, LIVE_PEER, PEER_KINDS, JobKind, PeerStatus
from workers.hub_policy import HubPolicy
from workers.metrics import dataplane_transaction

log = logging.getLogger(__name__)


def known(value: int | None) -> int:
    """An id a job or row of this kind always carries (its kind was checked before)."""
    assert value is not None
    return value


def peer_spec(peer: DesiredPeer | PeerRow) -> PeerSpec:
    address = peer["address"]
    assert address is not None  # only live peers, which hold their address, are put on devices
    return PeerSpec(
        public_key=peer["public_key"],
        allowed_ips=tuple(peer_allowed_ips(address, peer["address6"], peer["subnets"])),
        routes=tuple(peer["subnets"]),
    )


def is_desired(peer: PeerRow) -> bool:
    return bool(peer["enabled"]) and peer["status"] in LIVE_PEER


def plan_changes(jobs: list[JobRow], peers: list[PeerRow]) -> tuple[list[PeerSpec], list[str]]:
    """What some peer jobs ask of the device: the peers to set and the keys to remove."""
    upserts = {p["public_key"]: peer_spec(p) for p in peers if is_desired(p)}
    removes = {p["public_key"] for p in peers if not is_desired(p)}
    removes |= {j["payload"]["old_public_key"] for j in jobs if j["kind"] == JobKind.ROTATE_KEY}
    return list(upserts.values()), sorted(removes - set(upserts))


def record_applied(conn: Connection[DictRow], peers: list[PeerRow]) -> None:
    """The device now holds what these peers' rows want: pending ones become active, removed
    ones give their addresses back."""
    peers_db.mark_applied(conn, [p["id"] for p in peers if is_desired(p)])
    peers_db.finish_removal(conn, [p["id"] for p in peers if not is_desired(p)])


class Hub(Protocol):
    """What a burst needs of its hub worker."""

    queue: str
    actor: str
    dataplane: Dataplane
    policy: HubPolicy
    ready: set[str]  # interfaces converged since the worker started

    def converge_interface(self, conn: Connection[DictRow], iface: InterfaceRow) -> ChangeSet: ...

    def load_policy(self, conn: Connection[DictRow]) -> bool: ...

    def finish(self, conn: Connection[DictRow], burst: Iterable[JobRow], result: Any) -> None: ...


class PeerBursts:
    """The peer jobs of one hub worker."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def run(self, conn: Connection[DictRow], job: JobRow) -> None:
        """Take this job and every other open peer job of its interface; apply them in one
        dataplane transaction; end each on its own."""
        try:
            iface = interfaces_db.get_interface(conn, known(job["interface_id"]))
        except ElysiumError as exc:
            with conn.transaction():
                jobs_db.fail_job(conn, job["id"], exc.code, exc.message, self.hub.actor)
            return
        with conn.transaction():
            burst = jobs_db.claim_interface_jobs(
                conn, self.hub.queue, iface["id"], PEER_KINDS, job["id"]
            )
        if not burst:
            return
        peers = {p["id"]: p for p in peers_db.get_peers(conn, [known(j["peer_id"]) for j in burst])}
        upserts, removes = plan_changes(burst, list(peers.values()))
        try:
            if iface["name"] not in self.hub.ready:
                self.hub.converge_interface(conn, iface)  # device first; covers the whole burst
            else:
                with dataplane_transaction("apply_peers"):
                    self.hub.dataplane.apply_peers(iface["name"], upserts, removes)
        except DataplaneError as exc:
            if not exc.retryable:
                self._apply_one_by_one(conn, iface["name"], burst, peers, exc)
                return
            log.warning("device %s needs repair (%s); converging it", iface["name"], exc.message)
            self.hub.ready.discard(iface["name"])
            self.hub.converge_interface(conn, iface)
        with conn.transaction():
            record_applied(conn, list(peers.values()))
        self._follow_peers(conn, iface, list(peers))
        batch = {"id": str(burst[0]["id"]), "size": len(burst)}
        self.hub.finish(conn, burst, lambda j: {**self._peer_result(conn, j), "batch": batch})

    def _follow_peers(
        self, conn: Connection[DictRow], iface: InterfaceRow, peer_ids: list[int]
    ) -> None:
        """The policy's sets follow peers that joined, left or changed tags; should the
        element update fail, the whole table is loaded again."""
        try:
            self.hub.policy.follow_peers(conn, iface, peer_ids)
        except ElysiumError as exc:
            log.warning("policy sets not updated (%s); loading the table again", exc.message)
            self.hub.load_policy(conn)

    def _peer_result(self, conn: Connection[DictRow], job: JobRow) -> dict[str, Any]:
        if job["kind"] in CONFIG_KINDS:
            result = peer_config(conn, known(job["peer_id"]))
            if job["payload"].get("certificate"):
                result["certificate"] = job["payload"]["certificate"]
            return result
        peer = peers_db.get_peer(conn, known(job["peer_id"]))
        return {"peer_id": peer["id"], "status": peer["status"], "enabled": peer["enabled"]}

    def _apply_one_by_one(
        self,
        conn: Connection[DictRow],
        iface_name: str,
        burst: list[JobRow],
        peers: dict[int, PeerRow],
        exc: DataplaneError,
    ) -> None:
        """A batch the device refused: apply each job alone so only the bad one fails."""
        for j in burst:
            peer = peers[known(j["peer_id"])]
            upserts, removes = plan_changes([j], [peer])
            try:
                self.hub.dataplane.apply_peers(iface_name, upserts, removes)
            except DataplaneError as one:
                with conn.transaction():
                    jobs_db.fail_job(conn, j["id"], one.code, one.message, self.hub.actor)
                    peers_db.update_peer(conn, peer["id"], {"status": PeerStatus.FAILED})
                    peers_db.finish_removal(conn, [peer["id"]])
                continue
            with conn.transaction():
                record_applied(conn, [peer])
                jobs_db.succeed_job(conn, j["id"], self._peer_result(conn, j), self.hub.actor)
        log.info("batch refused (%s); applied job by job", exc.message)

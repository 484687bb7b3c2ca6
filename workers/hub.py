"""The HubWorker: converge this hub's WireGuard to the database (its Celery tasks, which call
it, are in ``workers/tasks/hub.py``; this module does not import Celery).

Every task is idempotent: it reads the desired state and makes the device match, so a task
run twice, or after a crash, leaves the hub right. Peer jobs come in bursts
(``workers/hub_peers.py``), link jobs too (``workers/hub_mesh.py``).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from psycopg import Connection
from psycopg.rows import DictRow
from psycopg_pool import ConnectionPool
from pyroute2.netlink.exceptions import NetlinkError

from dataplane import ChangeSet, Dataplane, InterfaceSpec, PeerStats
from dataplane.links import underlay_addresses
from db import hubs as hubs_db
from db import interfaces as interfaces_db
from db import jobs as jobs_db
from db import peer_liveness
from db import peers as peers_db
from db.rows import InterfaceRow, JobRow
from elysium.errors import DataplaneError, ElysiumError
from elysium.files import write_atomic
from elysium.keys import generate_private_key
from elysium.mesh import MESH_DEVICE
from elysium.networks import hub_addresses
from elysium.queue import hub_queue
from elysium.settings import Settings
from elysium.states import FINAL_JOB, PEER_KINDS, POLICY_KINDS, InterfaceStatus, JobKind
from services.hubs import record_reconcile
from workers.hub_mesh import HubMesh
from workers.hub_peers import PeerBursts, known, peer_spec
from workers.hub_policy import HubPolicy
from workers.metrics import dataplane_transaction

log = logging.getLogger(__name__)

# What runs a job of one kind: the worker's connection and the job, taken from the table.
JobHandler = Callable[[Connection[DictRow], JobRow], None]


def interface_spec(state_dir: Path, iface: InterfaceRow) -> InterfaceSpec:
    return InterfaceSpec(
        name=iface["name"],
        private_key_file=state_dir / "keys" / f"{iface['name']}.key",
        listen_port=iface["listen_port"],
        addresses=tuple(hub_addresses(iface["network"], iface["network6"])),
        mtu=iface["mtu"],
    )


def rotate_key_file(key_file: Path, job_id: str, old_public_key: str | None) -> str | None:
    """Put a new private key (0600) in ``key_file`` for rotation job ``job_id``; the public key
    it replaces. Once per job: a redelivered job (its worker died before the job ended, or the
    message came twice) finds its own marker and reuses what the first delivery made, so the
    hub key changes once and the result names the same old key."""
    marker = key_file.with_name(key_file.name + ".rotation")  # {job, old_public_key}
    pending = key_file.with_name(key_file.name + ".next")  # the new key until it is in place
    key_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    done = json.loads(marker.read_text()) if marker.exists() else {}
    if done.get("job") != job_id:
        write_atomic(pending, generate_private_key() + "\n", 0o600)
        done = {"job": job_id, "old_public_key": old_public_key}
        write_atomic(marker, json.dumps(done), 0o600)
    if pending.exists():
        os.replace(pending, key_file)
    return done.get("old_public_key")


class HubWorker:
    """One hub's worker: heartbeat, recovery at start, and the jobs of its queue."""

    def __init__(
        self,
        settings: Settings,
        pool: ConnectionPool[Connection[DictRow]],
        dataplane: Dataplane | None = None,
        send: Callable[[JobRow], object] | None = None,
    ) -> None:
        self.settings = settings
        self.hub = settings.hub
        self.queue = hub_queue(self.hub)
        self.actor = f"hub:{self.hub}"  # who ends this hub's jobs, in the audit trail
        self.pool = pool
        self.state_dir = settings.state_dir / "hubs" / self.hub
        if dataplane is None:
            from dataplane import make_dataplane

            dataplane = make_dataplane(
                settings.wg_driver, self.state_dir, settings.netns or None, settings.wireguard_go
            )
        self.dataplane = dataplane
        self.policy = HubPolicy(self.state_dir, settings.netns or None)
        self.peer_jobs = PeerBursts(self)
        self.mesh = HubMesh(self.hub, self.state_dir, settings.netns or None, dataplane)
        # Sends a job this worker records for other hubs (left queued for the janitor if None).
        self.send = send or (lambda job: None)
        self.ready: set[str] = set()  # interfaces converged since this process started
        self.handlers = self._job_handlers()
        self._started = False
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    # ---- life cycle -------------------------------------------------------------------
    def start(self) -> None:
        """Heartbeat, converge every interface, finish jobs a predecessor left open."""
        if self._started:
            return
        self._started = True
        self.beat()
        with self.pool.connection() as conn:
            for job in self.mesh.report_key(conn):
                self.send(job)
        self.converge_all()
        self.finish_open_jobs()
        self._heartbeat = threading.Thread(target=self._beat_loop, name="heartbeat", daemon=True)
        self._heartbeat.start()

    def stop(self) -> None:
        """End the heartbeat and release the dataplane's sockets (the devices keep running)."""
        self._stop.set()
        self.dataplane.close()
        self.policy.close()

    def beat(self) -> None:
        info = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "driver": type(self.dataplane).__name__,
            "netns": self.settings.netns or None,
        }
        with self.pool.connection() as conn:
            names = [i["name"] for i in interfaces_db.list_hub_interfaces(conn, self.hub)]
            try:
                info["addresses"] = underlay_addresses(self.settings.netns or None, names)
            except (OSError, NetlinkError, ElysiumError) as exc:  # e.g. no namespace (yet)
                log.warning("heartbeat: underlay addresses not read: %s", exc)
            hubs_db.record_heartbeat(conn, self.hub, info)

    def _beat_loop(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_interval_s):
            try:
                self.beat()
            except Exception as exc:  # PostgreSQL away: try again next beat
                log.warning("heartbeat failed: %s", exc)

    # ---- converge ---------------------------------------------------------------------
    def converge_interface(self, conn: Connection[DictRow], iface: InterfaceRow) -> ChangeSet:
        """Create or repair the device and give it exactly the desired peers (one batch)."""
        public_key, changes = self.dataplane.ensure_interface(interface_spec(self.state_dir, iface))
        forwarding = self.policy.ensure_forwarding([iface["name"]])
        desired = peers_db.desired_peers(conn, iface["id"])
        with dataplane_transaction("converge"):
            peer_changes = self.dataplane.converge(iface["name"], [peer_spec(p) for p in desired])
        with conn.transaction():
            interfaces_db.set_interface_ready(conn, iface["id"], public_key)
            peers_db.mark_applied(conn, [p["id"] for p in desired])
        self.ready.add(iface["name"])
        peer_changes.interface_created = changes.interface_created
        peer_changes.interface_changed = changes.interface_changed + (
            ["forwarding"] if forwarding else []
        )
        peer_changes.transactions += changes.transactions
        return peer_changes

    def load_policy(self, conn: Connection[DictRow]) -> bool:
        """Forwarding rules, NAT and every interface's policy, as one nftables transaction;
        True when the table differed from the database's (drift, or a change)."""
        interfaces = interfaces_db.list_hub_interfaces(conn, self.hub)
        live = [i for i in interfaces if i["status"] != InterfaceStatus.DELETING]
        return self.policy.load(conn, live)

    def converge_all(self) -> dict[str, dict[str, object]]:
        """Reconcile: every interface of this hub to the database; unknown devices removed."""
        report: dict[str, dict[str, object]] = {}
        with self.pool.connection() as conn:
            wanted = interfaces_db.list_hub_interfaces(conn, self.hub)
            for iface in wanted:
                if iface["status"] == InterfaceStatus.DELETING:
                    continue
                try:
                    report[iface["name"]] = self.converge_interface(conn, iface).to_dict()
                except ElysiumError as exc:  # one broken interface must not stop the others
                    log.error("converging %s failed: %s", iface["name"], exc.message)
                    report[iface["name"]] = {"error": exc.code, "message": exc.message}
            names = {i["name"] for i in wanted if i["status"] != InterfaceStatus.DELETING}
            try:
                mesh, _ = self.mesh.converge(conn)
                if mesh:
                    report[MESH_DEVICE] = mesh
            except ElysiumError as exc:  # the interfaces and their firewall still converge
                log.error("converging the mesh failed: %s", exc.message)
                report[MESH_DEVICE] = {"error": exc.code, "message": exc.message}
            for name in self.dataplane.list_interfaces():
                if name not in names and name != MESH_DEVICE:
                    self.dataplane.remove_interface(name)
                    report[name] = {"interface_removed": True}
            try:
                report["firewall"] = {"firewall_changed": self.load_policy(conn)}
            except ElysiumError as exc:  # the previous table stays in force
                log.error("loading the firewall failed: %s", exc.message)
                report["firewall"] = {"error": exc.code, "message": exc.message}
        return report

    def dump_all(self) -> dict[int, list[PeerStats]]:
        """Liveness of every ready interface: interface id -> its peers, one dump per device.

        A device that is not running is skipped (reconcile repairs it).
        """
        with self.pool.connection() as conn:
            interfaces = interfaces_db.list_hub_interfaces(conn, self.hub)
        dumps: dict[int, list[PeerStats]] = {}
        for iface in interfaces:
            if iface["status"] != InterfaceStatus.READY:
                continue
            try:
                dumps[iface["id"]] = self.dataplane.dump(iface["name"])
            except DataplaneError as exc:
                log.warning("liveness: %s not dumped (%s)", iface["name"], exc.message)
        return dumps

    def report_liveness(self) -> int:
        """Dump every interface once and write each dump to PostgreSQL in one statement.

        Returns how many peers the dumps held.
        """
        dumps = self.dump_all()
        with self.pool.connection() as conn:
            for interface_id, stats in dumps.items():
                peer_liveness.record_liveness(
                    conn,
                    interface_id,
                    [s.public_key for s in stats],
                    [s.last_handshake_at for s in stats],
                    [s.rx_bytes for s in stats],
                    [s.tx_bytes for s in stats],
                    [s.endpoint for s in stats],
                    self.settings.online_after_s,
                )
            self.mesh.report_links(conn)
        return sum(len(stats) for stats in dumps.values())

    def reconcile(self) -> dict[str, dict[str, object]]:
        """Converge every interface and audit what changed (the periodic drift repair)."""
        started = time.monotonic()
        report = self.converge_all()
        changed = {k: v for k, v in report.items() if _changed(v)}
        with self.pool.connection() as conn:
            record_reconcile(conn, self.hub, changed, time.monotonic() - started)
        return report

    def finish_open_jobs(self) -> None:
        """Jobs left queued or running on this hub's queue (e.g. after a crash) end now."""
        with self.pool.connection() as conn:
            for job in jobs_db.open_jobs_on_queue(conn, self.queue):
                self.run_job(str(job["id"]))

    # ---- jobs -------------------------------------------------------------------------
    def run_job(self, job_id: str) -> None:
        """Run one job (and any burst it belongs to); a job that has ended is left alone."""
        with self.pool.connection() as conn:
            job = jobs_db.get_job(conn, job_id)
            if job["status"] in FINAL_JOB:
                return
            handler = self.handlers.get(job["kind"])
            if handler is not None:
                handler(conn, job)
                return
            with conn.transaction():
                jobs_db.fail_job(
                    conn, job_id, "unknown_kind", f"unknown job kind {job['kind']}", self.actor
                )

    def _job_handlers(self) -> dict[str, JobHandler]:
        """The table from a job's kind to what runs it on this hub (a renewal has no hub work)."""
        table: dict[str, JobHandler] = {kind: self.peer_jobs.run for kind in PEER_KINDS}
        table |= {kind: self._run_policy_change for kind in POLICY_KINDS}
        table[JobKind.CREATE_INTERFACE] = self._run_create_interface
        table[JobKind.DELETE_INTERFACE] = self._run_delete_interface
        table[JobKind.ROTATE_INTERFACE_KEY] = self._run_rotate_interface_key
        table[JobKind.MESH_LINK] = self._run_mesh_links
        return table

    def _run_create_interface(self, conn: Connection[DictRow], job: JobRow) -> None:
        if jobs_db.start_job(conn, job["id"]) is None:
            return
        iface = interfaces_db.get_interface(conn, known(job["interface_id"]))
        if iface["status"] == InterfaceStatus.DELETING:
            self.finish(conn, [job], lambda j: {"skipped": "interface is being deleted"})
            return
        changes = self.converge_interface(conn, iface)
        self.load_policy(conn)
        iface = interfaces_db.get_interface(conn, known(job["interface_id"]))
        self.finish(
            conn,
            [job],
            lambda j: {
                "interface_id": iface["id"],
                "name": iface["name"],
                "public_key": iface["public_key"],
                "changes": changes.to_dict(),
            },
        )

    def _run_rotate_interface_key(self, conn: Connection[DictRow], job: JobRow) -> None:
        """A new private key (0600, never sent), applied; its public key goes to the database."""
        if jobs_db.start_job(conn, job["id"]) is None:
            return
        iface = interfaces_db.get_interface(conn, known(job["interface_id"]))
        key_file = interface_spec(self.state_dir, iface).private_key_file
        old = rotate_key_file(key_file, str(job["id"]), iface["public_key"])
        changes = self.converge_interface(conn, iface)  # applies it, records the public key
        new = interfaces_db.get_interface(conn, iface["id"])["public_key"]
        self.finish(
            conn,
            [job],
            lambda j: (
                {"interface_id": iface["id"], "public_key": new, "old_public_key": old}
                | {"changes": changes.to_dict()}
            ),
        )

    def _run_delete_interface(self, conn: Connection[DictRow], job: JobRow) -> None:
        if jobs_db.start_job(conn, job["id"]) is None:
            return
        name = job["payload"].get("name")
        removed = self.dataplane.remove_interface(name) if name else False
        self.ready.discard(name)
        with conn.transaction():
            interfaces_db.delete_interface(conn, known(job["interface_id"]))
        self.load_policy(conn)  # the last interface gone: the table goes, forwarding back
        with conn.transaction():
            jobs_db.succeed_job(
                conn,
                job["id"],
                {"interface_id": job["interface_id"], "device_removed": removed},
                self.actor,
            )

    def _run_policy_change(self, conn: Connection[DictRow], job: JobRow) -> None:
        """Routes, exit, NAT or the policy changed: load the table again (all or nothing)."""
        if jobs_db.start_job(conn, job["id"]) is None:
            return
        iface = interfaces_db.get_interface(conn, known(job["interface_id"]))
        if iface["name"] not in self.ready:
            self.converge_interface(conn, iface)
        changed = self.load_policy(conn)
        self.finish(conn, [job], lambda j: {"interface_id": iface["id"], "changed": changed})

    def _run_mesh_links(self, conn: Connection[DictRow], job: JobRow) -> None:
        """Link jobs waiting on this hub's queue, taken together (a hub joining a mesh of N
        leaves N here): every link converged in one device write, the firewall reloaded once
        (its tags may name linked hubs' peers). A link that cannot be programmed fails its
        job alone, its error kept; a retryable failure puts the burst back for a retry."""
        with conn.transaction():
            burst = jobs_db.claim_queue_jobs(conn, self.queue, (JobKind.MESH_LINK,), job["id"])
        if not burst:
            return
        try:
            report, states = self.mesh.converge(conn)
            report["firewall_changed"] = self.load_policy(conn)
        except ElysiumError as exc:
            with conn.transaction():
                for j in burst:
                    if exc.retryable and j["id"] != job["id"]:
                        jobs_db.retry_job(conn, j["id"], exc.code, exc.message)
                    elif not exc.retryable:
                        jobs_db.fail_job(conn, j["id"], exc.code, exc.message, self.actor)
            if exc.retryable:
                raise  # the task retries the named job; the janitor sends the others again
            return
        batch = {"id": str(burst[0]["id"]), "size": len(burst)}
        with conn.transaction():
            for j in burst:
                other = j["payload"]["peer_hub"]
                state = states.get(other, "removed")
                if isinstance(state, DataplaneError):
                    jobs_db.fail_job(conn, j["id"], state.code, state.message, self.actor)
                    continue
                result = {"link": other, "state": state, "changes": report, "batch": batch}
                jobs_db.succeed_job(conn, j["id"], result, self.actor)

    def finish(self, conn: Connection[DictRow], burst: Iterable[JobRow], result: Any) -> None:
        with conn.transaction():
            for j in burst:
                jobs_db.succeed_job(conn, j["id"], result(j), self.actor)


def _changed(report: dict[str, object]) -> bool:
    keys = ("added", "removed", "updated", "routes_added", "routes_removed", "firewall_changed")
    more = ("interface_created", "interface_removed", "interface_changed")
    return any(report.get(k) for k in (*keys, *more))

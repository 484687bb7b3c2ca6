"""The hub mesh: 8 hubs, each with a real hub worker and a wireguard-go ``wg0`` of 1,000 peers,
all meshed: how long a new hub takes to join, one liveness sweep across all 8, and how many
queue messages one peer change costs.

Run as root: ``.venv/bin/python -m bench.hubs`` (writes bench/results/hubs.json). A throwaway
database and Redis key prefix; a bridge in an underlay namespace and a namespace per hub on it
(198.18.0.1-8, the benchmark range), where each hub worker runs its wireguard-go devices and
nftables; a control worker. Requests go through the service layer the API's views call (no
HTTP, as in ``bench.jobs``). Workers are stopped by their pids, the namespaces (and the
devices in them) removed, even on failure. Worker logs: ``$TMPDIR/elysium-bench-hubs/``.

- ``mesh_join_s``: with 7 hubs meshed, the 8th joins (``join_mesh``, the body of
  ``PUT /v1/hubs/{name}/mesh``) until the last of its ``mesh_link`` jobs has succeeded: one
  per end of each new link, ``mesh_join_messages`` (goal 2 x 7). Its ``elymesh`` then holds
  7 links; ``mesh_join_handshakes_s`` runs on until it has a handshake on each. The median of
  ``JOINS`` joins; the hub leaves in between (``mesh_leave_s``: until both ends of each of
  its links dropped it). ``mesh_join_new_hub_jobs_s`` is the wall time of the new hub's own 7
  jobs (its worker takes them together: one device write, one firewall load);
  ``mesh_join_1_link_s`` the second hub's join (one link).
- ``liveness_sweep_8k_s``: the control task that beat sends (``CONTROL_LIVENESS_SWEEP``) until
  every hub has written its dump: its peers in one ``UPDATE``, then its mesh links (their
  ``updated_at``, written last, stops the clock). Before each run every peer row is moved off
  what the idle devices report, so all 8,000 rows are rewritten (the worst case, as in
  ``bench.liveness``); ``_unchanged_s`` is the idle case, nothing to write.
  ``liveness_fanout_8k_s`` sends the hub task to the 8 queues directly (``send_to_hubs``);
  its baseline is the same for one hub (``liveness_sweep_1hub_1k_s``).
- ``messages_per_peer_change``: the messages sent to the broker for one new peer on hub 1:
  ``plain`` (no tags, no subnets), ``tagged`` (a tag hub 2's policy names) and ``routed`` (a
  subnet, which every linked hub routes). ``jobs_per_peer_change`` counts job rows recorded
  anywhere (workers included) until all ended; ``peer_change_done_s`` is the time until the
  last one succeeded. Each case is checked on the hubs: hub 2's tag set holds the tagged
  peer, hub 8's link to hub 1 carries the routed subnet. ``messages_per_interface_change``
  does the same for hub 1's ``wg0`` changing its NAT (nothing behind the hub moves: goal 1)
  or its pushed routes (every linked hub routes them: goal 8).
"""

from __future__ import annotations

import re
import secrets
import shutil
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import redis
from psycopg import Connection
from psycopg.rows import DictRow, dict_row

from bench.scaffold import (
    elysium_processes,
    random_key,
    size,
    throwaway_database,
    throwaway_underlay,
    wait_until,
    write_result,
)
from dataplane import PeerStats
from dataplane.uapi_protocol import parse_stats, transact
from dataplane.wireguard_go import GET, WireguardGo
from db.peers import create_peer
from elysium.mesh import MESH_DEVICE
from elysium.queue import (
    CONTROL_LIVENESS_SWEEP,
    CONTROL_RECONCILE_ALL,
    HUB_REPORT_LIVENESS,
    JobQueue,
    hub_queue,
)
from elysium.settings import Settings
from services.hubs import declare_hub
from services.interfaces import change_interface, create_interface
from services.jobs import Submitted
from services.mesh import join_mesh, leave_mesh
from services.peers import add_peer
from services.policy import set_policy

HUBS = size(8, 3)  # small: still a first link, a second one, and a hub that joins two
PEERS = size(1000, 20)  # per hub
TAG = "ops"  # every tenth peer has it; hub 2's policy names it
MESH_PORT = 51900
UNDERLAY = "198.18.0"
JOINS = size(3, 2)  # the second join follows a leave
REPEAT = size(5, 1)  # sweeps of each kind
CHANGES = size(3, 1)  # changes of each kind
ACTOR = "bench"
HUB_NAMES = [f"hub-{i}" for i in range(1, HUBS + 1)]


class CountingQueue(JobQueue):
    """The producer the services send with, counting the job messages it sent, by queue."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.sent: Counter[str] = Counter()

    def _offer(
        self, job_id: Any, task: str, queue: str, kwargs: dict[str, str], task_id: str
    ) -> bool:
        sent = super()._offer(job_id, task, queue, kwargs, task_id)
        if sent:
            self.sent[queue] += 1
        return sent


@dataclass
class Mesh:
    """The bench's view of the 8 hubs: database connections, the producer, the namespaces."""

    conn: Connection[DictRow]
    listener: Connection[DictRow]  # LISTEN job_done
    queue: CountingQueue
    state: Path
    namespaces: list[str]

    def one(self, sql: str, *params: Any) -> Any:
        row = self.conn.execute(sql, params).fetchone()
        assert row is not None
        return row[next(iter(row))]

    def wait_jobs(self, ids: list[str]) -> float:
        """Block until every job of ``ids`` has ended; the perf_counter time the last one was
        announced. Fails unless all succeeded."""
        pending = set(ids)
        for note in self.listener.notifies(timeout=120):
            pending.discard(note.payload)
            if not pending:
                break
        done = time.perf_counter()
        bad = self.conn.execute(
            "SELECT id, status, error_message FROM jobs WHERE id = ANY(%s::uuid[])"
            " AND status <> 'succeeded'",
            (ids,),
        ).fetchall()
        if pending or bad:
            raise RuntimeError(f"jobs did not succeed: {len(pending)} pending, {bad}")
        return done

    def jobs_since(self, since: datetime) -> Counter[str]:
        rows = self.conn.execute(
            "SELECT queue, count(*) AS n FROM jobs WHERE created_at >= %s GROUP BY queue", (since,)
        ).fetchall()
        return Counter({r["queue"]: r["n"] for r in rows})

    def mesh_socket(self, i: int) -> Path:
        state = self.state / "hubs" / HUB_NAMES[i - 1]
        return WireguardGo(state, self.namespaces[i - 1]).socket_path(MESH_DEVICE)

    def links(self, i: int) -> list[PeerStats]:
        """What hub ``i``'s mesh device holds (read on its UAPI socket)."""
        return parse_stats(transact(self.mesh_socket(i), GET))

    # ---- joining --------------------------------------------------------------------------
    def mesh_change(self, change: Callable[[], dict[str, Any]], hub: str) -> dict[str, Any]:
        """Run a join or leave; seconds until all its jobs succeeded, messages sent, jobs
        recorded, and the seconds the hub's own jobs ran."""
        self.queue.sent.clear()
        since = self.one("SELECT clock_timestamp()")
        start = time.perf_counter()
        ids = [j["job_id"] for j in change()["jobs"]]
        done = self.wait_jobs(ids) if ids else start
        own = self.one(
            "SELECT coalesce(extract(epoch FROM max(finished_at) - min(started_at)), 0) FROM jobs"
            " WHERE id = ANY(%s::uuid[]) AND queue = %s",
            ids,
            hub_queue(hub),
        )
        return {
            "s": done - start,
            "start": start,
            "messages": sum(self.queue.sent.values()),
            "jobs": sum(self.jobs_since(since).values()),
            "own_jobs_s": float(own),
        }

    def join(self, i: int) -> dict[str, Any]:
        body = {"listen_port": MESH_PORT, "endpoint": f"{UNDERLAY}.{i}:{MESH_PORT}"}
        hub = HUB_NAMES[i - 1]
        return self.mesh_change(lambda: join_mesh(self.conn, self.queue, ACTOR, hub, body), hub)

    def leave(self, i: int) -> dict[str, Any]:
        hub = HUB_NAMES[i - 1]
        return self.mesh_change(lambda: leave_mesh(self.conn, self.queue, ACTOR, hub), hub)

    def joins(self) -> dict[str, Any]:
        """Hubs 1-7 join one by one, then hub 8 joins ``JOINS`` times (leaving in between)."""
        first = [self.join(i) for i in range(1, HUBS)]
        last, leaves = [], []
        for n in range(JOINS):
            if n:
                leaves.append(self.leave(HUBS))
                assert not self.mesh_socket(HUBS).exists(), "the mesh device outlived the leave"
            joined = self.join(HUBS)
            held = self.links(HUBS)
            assert len(held) == HUBS - 1, held
            wait_until(
                lambda: all(s.last_handshake_at for s in self.links(HUBS)),
                30,
                "the new hub's handshakes",
                every=0.02,
            )
            joined["handshakes_s"] = time.perf_counter() - joined["start"]
            last.append(joined)
        for key in ("messages", "jobs"):
            if len({j[key] for j in last}) != 1 or len({j[key] for j in leaves}) != 1:
                raise RuntimeError(f"{key} differ between joins: {last} {leaves}")
        med = {k: statistics.median(j[k] for j in last) for k in last[0]}
        return {
            "mesh_join_s": round(med["s"], 4),
            "mesh_join_max_s": round(max(j["s"] for j in last), 4),
            "mesh_join_messages": last[0]["messages"],
            "mesh_join_jobs": last[0]["jobs"],
            "mesh_join_links": HUBS - 1,
            "mesh_join_handshakes_s": round(med["handshakes_s"], 4),
            "mesh_join_new_hub_jobs_s": round(med["own_jobs_s"], 4),
            "mesh_join_1_link_s": round(first[1]["s"], 4),
            "mesh_leave_s": round(statistics.median(j["s"] for j in leaves), 4),
            "mesh_leave_messages": leaves[0]["messages"],
        }

    # ---- liveness -------------------------------------------------------------------------
    def sweep(self, send: Callable[[], object], hubs: int, rewrite: bool) -> float:
        """Seconds from sending until the last of the first ``hubs`` hubs wrote its dump."""
        if rewrite:  # every row now differs from the idle device's dump: each is written
            self.conn.execute("UPDATE peers SET rx_bytes = rx_bytes + 1")
        names = HUB_NAMES[:hubs]
        start = time.time()  # the database's now() reads the same clock
        send()

        def written() -> list[float]:
            rows = self.conn.execute(
                "SELECT max(l.updated_at) AS at FROM mesh_links l JOIN hubs h ON h.id = l.hub_id"
                " WHERE h.name = ANY(%s) GROUP BY h.name",
                (names,),
            ).fetchall()
            return [r["at"].timestamp() for r in rows if r["at"].timestamp() > start]

        wait_until(lambda: len(written()) == hubs, 30, f"{hubs} hubs' liveness", every=0.02)
        elapsed = max(written()) - start
        if rewrite:
            left = self.one(
                "SELECT count(*) FROM peers p JOIN interfaces i ON i.id = p.interface_id"
                " JOIN hubs h ON h.id = i.hub_id WHERE h.name = ANY(%s) AND p.rx_bytes <> 0",
                names,
            )
            assert left == 0, f"{left} peer rows not written"
            self.conn.execute("UPDATE peers SET rx_bytes = 0 WHERE rx_bytes <> 0")  # the rest
        return elapsed

    def liveness(self) -> dict[str, float]:
        q = self.queue
        kinds: dict[str, tuple[Callable[[], object], int, bool]] = {
            "control": (lambda: q.app.send_task(CONTROL_LIVENESS_SWEEP), HUBS, True),
            "unchanged": (lambda: q.app.send_task(CONTROL_LIVENESS_SWEEP), HUBS, False),
            "fanout": (lambda: q.send_to_hubs(HUB_REPORT_LIVENESS, HUB_NAMES, 30), HUBS, True),
            "one": (lambda: q.send_to_hubs(HUB_REPORT_LIVENESS, HUB_NAMES[:1], 30), 1, True),
        }
        runs: dict[str, list[float]] = {k: [] for k in kinds}
        for _ in range(REPEAT):
            for kind, (send, hubs, rewrite) in kinds.items():
                runs[kind].append(self.sweep(send, hubs, rewrite))
        med = {k: statistics.median(v) for k, v in runs.items()}
        return {
            "liveness_sweep_8k_s": round(med["control"], 4),
            "liveness_sweep_8k_max_s": round(max(runs["control"]), 4),
            "liveness_sweep_8k_unchanged_s": round(med["unchanged"], 4),
            "liveness_fanout_8k_s": round(med["fanout"], 4),
            "liveness_sweep_1hub_1k_s": round(med["one"], 4),
            "liveness_fanout_ratio": round(med["fanout"] / med["one"], 3),
        }

    # ---- peer changes ---------------------------------------------------------------------
    def count_change(self, submit: Callable[[], Submitted]) -> tuple[Submitted, dict[str, Any]]:
        """Submit one change: messages sent, jobs recorded (a worker's too), hubs they went to,
        and seconds until the last of them succeeded."""
        self.queue.sent.clear()
        since = self.one("SELECT clock_timestamp()")
        start = time.perf_counter()
        sub = submit()
        sent = sum(self.queue.sent.values())
        ids = self.conn.execute("SELECT id FROM jobs WHERE created_at >= %s", (since,))
        done = self.wait_jobs([str(r["id"]) for r in ids])
        time.sleep(0.3)  # a job that a worker records in turn is counted too
        recorded = self.jobs_since(since)
        counts = {"messages": sent, "jobs": sum(recorded.values()), "hubs": len(recorded)}
        return sub, {**counts, "done_s": done - start}

    def changes(
        self, kinds: dict[str, Callable[[int], Submitted]], what: str
    ) -> dict[str, dict[str, Any]]:
        """``CHANGES`` changes of each kind, each checked on the hubs (``check_acted``):
        ``messages_per_<what>`` and the rest, by kind."""
        out: dict[str, dict[str, Any]] = {}
        for kind, submit in kinds.items():
            runs = []
            for k in range(CHANGES):
                sub, counts = self.count_change(lambda: submit(k))  # noqa: B023
                self.check_acted(kind, sub)
                runs.append(counts)
            for figure in ("messages", "jobs", "hubs"):
                values = {r[figure] for r in runs}
                if len(values) != 1:
                    raise RuntimeError(f"{kind}: {figure} differ between changes: {values}")
                out.setdefault(f"{figure}_per_{what}", {})[kind] = values.pop()
            done = statistics.median(r["done_s"] for r in runs)
            out.setdefault(f"{what}_done_s", {})[kind] = round(done, 4)
        return out

    def peer_changes(self, interface_id: int) -> dict[str, dict[str, Any]]:
        """New peers on hub 1: plain, with the tag hub 2's policy names, with a subnet."""
        extra: dict[str, Callable[[int], dict[str, Any]]] = {
            "plain": lambda k: {},
            "tagged": lambda k: {"tags": [TAG]},
            "routed": lambda k: {"subnets": [f"192.168.{100 + k}.0/24"]},
        }

        def adder(kind: str) -> Callable[[int], Submitted]:
            return lambda k: add_peer(
                self.conn,
                self.queue,
                ACTOR,
                interface_id,
                name=f"{kind}{k}",
                public_key=random_key(),
                **extra[kind](k),
            )

        return self.changes({kind: adder(kind) for kind in extra}, "peer_change")

    def interface_changes(self, interface_id: int) -> dict[str, dict[str, Any]]:
        """Hub 1's wg0 changes NAT (nothing behind it moves) or its pushed routes."""
        body: dict[str, Callable[[int], dict[str, Any]]] = {
            "nat": lambda k: {"nat": None if k % 2 else {"egress": "eth0"}},
            "routes": lambda k: {"routes": [f"172.20.{k}.0/24"]},
        }

        def changer(kind: str) -> Callable[[int], Submitted]:
            return lambda k: change_interface(
                self.conn, self.queue, ACTOR, interface_id, body[kind](k)
            )

        return self.changes({kind: changer(kind) for kind in body}, "interface_change")

    def check_acted(self, kind: str, sub: Submitted) -> None:
        """The other hubs did what their messages asked: hub 2's set for the tag holds a tagged
        peer's address; hub 8's link to hub 1 carries a routed peer's subnet, or a route
        pushed by hub 1's interface."""
        peer_id = sub.job["peer_id"]
        if kind == "tagged":
            address = self.one("SELECT host(address) FROM peers WHERE id = %s", peer_id)
            tag_set = ["inet", "elysium", f"wg0_t_{TAG}_4"]
            listing = subprocess.run(
                ["ip", "netns", "exec", self.namespaces[1], "nft", "list", "set", *tag_set],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            if not re.search(rf"(?<![\d.]){re.escape(address)}(?![\d.])", listing):
                raise RuntimeError(f"{HUB_NAMES[1]}'s set for tag {TAG} lacks {address}")
        elif kind in ("routed", "routes"):
            if kind == "routed":
                net = self.one("SELECT subnets[1]::text FROM peers WHERE id = %s", peer_id)
            else:
                net = sub.job["payload"]["routes"][0]
            key = self.one("SELECT mesh_public_key FROM hubs WHERE name = %s", HUB_NAMES[0])
            link = next(s for s in self.links(HUBS) if s.public_key == key)
            if net not in link.allowed_ips:
                raise RuntimeError(f"{HUB_NAMES[-1]}'s link to {HUB_NAMES[0]} lacks {net}")


# ---- setup ------------------------------------------------------------------------------------
def declare(conn: Connection[DictRow], queue: JobQueue) -> list[int]:
    """The hubs, each with wg0 (hub i: 10.10i.0.0/16) and 1,000 peers recorded in SQL before
    its worker starts (which converges them, in one batch); the interface ids."""
    interfaces = []
    for i, hub in enumerate(HUB_NAMES, 1):
        declare_hub(conn, ACTOR, hub, f"{UNDERLAY}.{i}:51820")
        network = f"10.{100 + i}.0.0/16"
        sub = create_interface(conn, queue, ACTOR, hub, name="wg0", network=network)
        interface_id = sub.job["interface_id"]
        assert interface_id is not None
        with conn.transaction():
            for p in range(PEERS):
                create_peer(
                    conn,
                    interface_id,
                    f"p{p}",
                    random_key(),
                    [],
                    None,
                    ACTOR,
                    has_ipv6=False,
                    tags=[TAG] if p % 10 == 0 else [],
                    network=network,
                )
        interfaces.append(interface_id)
    return interfaces


def workers_ready(mesh: Mesh) -> None:
    """Every device converged and every mesh key reported; then a reconcile sent through the
    control worker, which each hub worker audits: every queue has its consumer."""
    wait_until(
        lambda: (
            mesh.one(
                "SELECT count(*) FROM hubs h JOIN interfaces i ON i.hub_id = h.id"
                " WHERE i.status = 'ready' AND h.mesh_public_key IS NOT NULL"
            )
            == HUBS
        ),
        120,
        "the hub workers to converge",
    )
    since = mesh.one("SELECT clock_timestamp()")
    mesh.queue.app.send_task(CONTROL_RECONCILE_ALL)
    reconciled = "SELECT count(DISTINCT actor) FROM audit WHERE action = 'reconcile' AND at >= %s"
    wait_until(lambda: mesh.one(reconciled, since) == HUBS, 60, "every hub worker's reconcile")


def run(url: str, namespaces: list[str], state: Path, logs: Path) -> dict[str, Any]:
    settings = Settings.from_env(
        {},
        database_url=url,
        state_dir=state,
        redis_key_prefix=f"elybench{secrets.token_hex(3)}:",
        wg_driver="userspace",
        db_pool_max=4,
    )
    queue = CountingQueue(settings)
    try:
        with (
            psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn,
            psycopg.connect(url, autocommit=True, row_factory=dict_row) as listener,
            elysium_processes(settings, logs) as start,
        ):
            listener.execute("LISTEN job_done")
            mesh = Mesh(conn, listener, queue, state, namespaces)
            t = time.perf_counter()
            interfaces = declare(conn, queue)
            setup = {"declare_s": round(time.perf_counter() - t, 2)}
            t = time.perf_counter()
            start("control-worker", ["control-worker", "--concurrency", "1"])
            for hub, ns in zip(HUB_NAMES, namespaces, strict=True):
                start(hub, ["hub-worker", "--hub", hub, "--netns", ns, "--state-dir", str(state)])
            workers_ready(mesh)
            setup["workers_ready_s"] = round(time.perf_counter() - t, 2)
            rules = [{"from": f"tag:{TAG}", "to": "any", "action": "accept"}]
            sub = set_policy(conn, queue, ACTOR, interfaces[1], {"rules": rules})
            mesh.wait_jobs([str(sub.job["id"])])
            figures: dict[str, Any] = {"hubs_in_mesh": HUBS, **mesh.joins()}
            figures.update(mesh.liveness())
            figures.update(mesh.peer_changes(interfaces[0]))
            figures.update(mesh.interface_changes(interfaces[0]))
    finally:
        queue.close()
        r = redis.Redis.from_url(settings.redis_url)
        for key in r.scan_iter(match=f"{settings.redis_key_prefix}*"):
            r.delete(key)
        r.close()
    figures["setup"] = {
        "hubs": HUBS,
        "peers_per_hub": PEERS,
        "tagged_every": 10,
        "joins": JOINS,
        "sweeps_of_each_kind": REPEAT,
        "changes_of_each_kind": CHANGES,
        **setup,
    }
    return figures


def main() -> None:
    state = Path(tempfile.mkdtemp(prefix="ely-bh-", dir="/tmp"))
    logs = Path(tempfile.gettempdir()) / "elysium-bench-hubs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir()
    try:
        with throwaway_database() as url, throwaway_underlay(HUBS, UNDERLAY) as namespaces:
            figures = run(url, namespaces, state, logs)
    finally:
        shutil.rmtree(state, ignore_errors=True)
    figures["goals"] = {
        "mesh_join_messages": 2 * (HUBS - 1),
        "liveness_sweep_8k_s": 1.0,
        "messages_per_peer_change.plain": 1,
        "messages_per_peer_change.tagged": 2,
        "messages_per_peer_change.routed": HUBS,
        "messages_per_interface_change.nat": 1,
        "messages_per_interface_change.routes": HUBS,
    }
    write_result("hubs", figures)


if __name__ == "__main__":
    main()

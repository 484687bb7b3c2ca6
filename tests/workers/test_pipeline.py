"""The first end-to-end slice: a job submitted through the service layer ends as a working
tunnel, with real Redis, real worker processes and real wireguard-go in namespaces."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from psycopg import Connection
from psycopg.rows import DictRow, dict_row

from dataplane import InterfaceSpec, PeerSpec
from dataplane.uapi import UapiDriver
from db import interfaces as interfaces_db
from db.jobs import get_job
from elysium.keys import generate_private_key, public_key
from elysium.queue import JobQueue, hub_queue
from elysium.settings import Settings
from services.hubs import declare_hub
from services.interfaces import create_interface, delete_interface, rotate_interface_key
from services.jobs import send
from services.peers import add_peer, change_peer, remove_peer
from tests.netns import Topology, ping
from tests.stack import Process, elysium_command, settings_env, wait_for
from workers.forwarding import SYSCTLS

HUB = "hub-e2e"
NETWORK = "10.50.0.0/22"


def wait_job(conn: Connection[DictRow], job_id: object, timeout: float = 30) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job = get_job(conn, str(job_id))
        return job if job["status"] in ("succeeded", "failed") else None

    return wait_for(done, timeout, f"job {job_id} to end", interval=0.05)  # type: ignore[return-value]


class Stack:
    """A control worker and this hub's worker, as subprocesses of the test."""

    def __init__(self, settings: Settings, topo: Topology, tmp: Path) -> None:
        self.settings = settings
        self.topo = topo
        self.tmp = tmp
        # Short: UNIX socket paths under it must fit in 108 bytes.
        self.state_dir = Path(tempfile.mkdtemp(prefix="ely-", dir="/tmp"))
        self.env = settings_env(settings, ELYSIUM_HEARTBEAT_INTERVAL_S="1")
        self.processes: list[Process] = []
        self.hub_worker: Process | None = None

    def start_control(self) -> None:
        self.processes.append(
            Process(
                elysium_command("control-worker", "--concurrency", "1"),
                self.env,
                self.tmp / "control.log",
            )
        )

    def start_hub(self, *, plain_celery: bool = False) -> Process:
        if plain_celery:  # the README's other way: an ordinary celery worker command
            args = [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "workers.celery_main",
                "worker",
                "-Q",
                f"hub.{HUB}",
                "--pool",
                "solo",
                "--without-gossip",
                "--without-mingle",
            ]
            env = {
                **self.env,
                "ELYSIUM_HUB": HUB,
                "ELYSIUM_NETNS": self.topo.hub,
                "ELYSIUM_STATE_DIR": str(self.state_dir),
            }
        else:
            args = elysium_command(
                "hub-worker",
                "--hub",
                HUB,
                "--netns",
                self.topo.hub,
                "--state-dir",
                str(self.state_dir),
            )
            env = self.env
        proc = Process(args, env, self.tmp / "hub.log")
        self.processes.append(proc)
        self.hub_worker = proc
        return proc

    def hub_driver(self) -> UapiDriver:
        return UapiDriver(self.state_dir / "hubs" / HUB, self.topo.hub)

    def stop(self) -> None:
        for p in reversed(self.processes):
            p.stop()
        driver = self.hub_driver()
        for name in driver.list_interfaces():
            driver.remove_interface(name)
        driver.close()
        shutil.rmtree(self.state_dir, ignore_errors=True)


@pytest.fixture
def stack(
    settings: Settings, netns_topology: Topology, tmp_path: Path, clean_db: str
) -> Iterator[Stack]:
    s = Stack(settings, netns_topology, tmp_path)
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def conn(clean_db: str) -> Iterator[Connection[DictRow]]:
    with psycopg.connect(clean_db, autocommit=True, row_factory=dict_row) as c:
        yield c


@pytest.fixture
def queue(settings: Settings) -> Iterator[JobQueue]:
    q = JobQueue(settings)
    yield q
    q.close()


def make_interface(
    conn: Connection[DictRow], queue: JobQueue, stack: Stack, *, plain_celery: bool = False
) -> dict[str, Any]:
    declare_hub(conn, "admin", HUB, f"{stack.topo.hub_ip}:51820")
    stack.start_control()
    stack.start_hub(plain_celery=plain_celery)
    sub = create_interface(
        conn, queue, "admin", HUB, name="wg0", network=NETWORK, listen_port=51820, keepalive=5
    )
    job = wait_job(conn, sub.job["id"], timeout=60)
    assert job["status"] == "succeeded", (job, stack.hub_worker and stack.hub_worker.log())
    return job


def test_an_added_peer_gets_a_working_tunnel_to_the_hub(
    conn: Connection[DictRow], queue: JobQueue, stack: Stack, tmp_path: Path
) -> None:
    iface_job = make_interface(conn, queue, stack)
    assert len(iface_job["result"]["public_key"]) == 44

    peer_private = generate_private_key()
    sub = add_peer(
        conn,
        queue,
        "op",
        iface_job["interface_id"],
        name="site-1",
        public_key=public_key(peer_private),
    )
    job = wait_job(conn, sub.job["id"])
    assert job["status"] == "succeeded", job
    config = job["result"]
    assert config["address"] == "10.50.0.2"
    assert config["hub_public_key"] == iface_job["result"]["public_key"]
    assert config["endpoint"] == f"{stack.topo.hub_ip}:51820"

    # The peer side, configured in its own namespace from the job's result.
    key_file = tmp_path / "peer" / "wg0.key"
    key_file.parent.mkdir(mode=0o700)
    key_file.write_text(peer_private + "\n")
    key_file.chmod(0o600)
    peer_ns = stack.topo.peers[0]
    driver = UapiDriver(tmp_path / "peer", peer_ns)
    try:
        driver.ensure_interface(InterfaceSpec("wg0", key_file, None, tuple(config["addresses"])))
        driver.converge(
            "wg0",
            [
                PeerSpec(
                    config["hub_public_key"],
                    tuple(config["allowed_ips"]),
                    endpoint=config["endpoint"],
                    keepalive=5,
                )
            ],
        )
        assert ping(peer_ns, "10.50.0.1")

        # Removing the peer takes it off the hub: the tunnel stops working.
        removed = wait_job(conn, remove_peer(conn, queue, "op", sub.job["peer_id"]).job["id"])
        assert removed["status"] == "succeeded"
        trail = conn.execute(
            "SELECT actor, action, outcome FROM audit WHERE target = %s ORDER BY id",
            (f"peer:{sub.job['peer_id']}",),
        ).fetchall()
        assert [(a["action"], a["outcome"]) for a in trail] == [
            ("add_peer", "accepted"),
            ("add_peer", "succeeded"),
            ("remove_peer", "accepted"),
            ("remove_peer", "succeeded"),
        ]
        assert {a["actor"] for a in trail} == {"op", f"hub:{HUB}"}
        assert not ping(peer_ns, "10.50.0.1", tries=2)
        row = conn.execute(
            "SELECT status, address FROM peers WHERE id = %s", (sub.job["peer_id"],)
        ).fetchone()
        assert row == {"status": "removed", "address": None}
    finally:
        driver.remove_interface("wg0")
        driver.close()


def test_a_hub_worker_killed_mid_burst_ends_every_job_once_with_every_peer_once(
    conn: Connection[DictRow], queue: JobQueue, stack: Stack
) -> None:
    iface_id = make_interface(conn, queue, stack)["interface_id"]
    keys = [public_key(generate_private_key()) for _ in range(300)]
    job_ids = [
        add_peer(conn, queue, "op", iface_id, name=f"p{i}", public_key=k).job["id"]
        for i, k in enumerate(keys)
    ]

    def some_job_started() -> bool:
        row = conn.execute(
            "SELECT count(*) AS n FROM jobs WHERE id = ANY(%s) AND status <> 'queued'", (job_ids,)
        ).fetchone()
        return bool(row and row["n"])

    wait_for(some_job_started, 30, "the burst to start", interval=0.01)
    assert stack.hub_worker is not None
    stack.hub_worker.kill()
    stack.start_hub()

    for job_id in job_ids:
        assert wait_job(conn, job_id, timeout=60)["status"] == "succeeded"
    driver = stack.hub_driver()
    try:
        on_device = [s.public_key for s in driver.dump("wg0")]
    finally:
        driver.close()
    assert sorted(on_device) == sorted(keys)
    rows = conn.execute(
        "SELECT status, count(*) AS n, count(DISTINCT address) AS addresses"
        " FROM peers GROUP BY status"
    ).fetchall()
    assert rows == [{"status": "active", "n": 300, "addresses": 300}]
    ends = conn.execute(
        "SELECT count(*) AS n FROM jobs WHERE id = ANY(%s) AND status = 'succeeded'"
        " AND finished_at IS NOT NULL",
        (job_ids,),
    ).fetchone()
    assert ends == {"n": 300}


def test_a_job_whose_interface_vanished_fails_with_a_code_and_leaves_nothing(
    conn: Connection[DictRow], queue: JobQueue, stack: Stack
) -> None:
    iface_id = make_interface(conn, queue, stack)["interface_id"]
    assert stack.hub_worker is not None
    stack.hub_worker.stop()
    sub = add_peer(
        conn, queue, "op", iface_id, name="orphan", public_key=public_key(generate_private_key())
    )
    conn.execute("DELETE FROM interfaces WHERE id = %s", (iface_id,))  # removed behind its back
    stack.start_hub()
    job = wait_job(conn, sub.job["id"])
    assert job["status"] == "failed" and job["error_code"] == "interface_not_found"
    ended = conn.execute(
        "SELECT outcome, detail->>'error_code' AS code FROM audit WHERE detail->>'job_id' = %s"
        " AND actor = %s",
        (str(sub.job["id"]), f"hub:{HUB}"),
    ).fetchall()
    assert ended == [{"outcome": "failed", "code": "interface_not_found"}]
    assert conn.execute("SELECT count(*) AS n FROM peers").fetchone() == {"n": 0}
    driver = stack.hub_driver()
    try:
        assert driver.list_interfaces() == []  # the hub removed the device nobody wants
    finally:
        driver.close()


def test_a_job_submitted_while_the_hub_worker_is_down_runs_when_it_returns(
    conn: Connection[DictRow], queue: JobQueue, stack: Stack
) -> None:
    iface_id = make_interface(conn, queue, stack)["interface_id"]
    assert stack.hub_worker is not None
    stack.hub_worker.kill()
    sub = add_peer(
        conn, queue, "op", iface_id, name="late", public_key=public_key(generate_private_key())
    )
    # Its message waits on the hub's queue, and nothing else takes the job meanwhile.
    waiting = redis.Redis.from_url(stack.settings.redis_url)
    key = f"{stack.settings.redis_key_prefix}{hub_queue(HUB)}"
    try:
        wait_for(lambda: waiting.llen(key) > 0, 30, "the job's message on the hub's queue")
    finally:
        waiting.close()
    assert get_job(conn, str(sub.job["id"]))["status"] == "queued"
    stack.start_hub()
    assert wait_job(conn, sub.job["id"])["status"] == "succeeded"


def test_a_hub_worker_started_as_a_plain_celery_worker_converges_and_takes_jobs(
    conn: Connection[DictRow], queue: JobQueue, stack: Stack
) -> None:
    iface_id = make_interface(conn, queue, stack, plain_celery=True)["interface_id"]
    key = public_key(generate_private_key())
    job = wait_job(conn, add_peer(conn, queue, "op", iface_id, name="p", public_key=key).job["id"])
    assert job["status"] == "succeeded"
    driver = stack.hub_driver()
    try:
        assert [s.public_key for s in driver.dump("wg0")] == [key]
    finally:
        driver.close()
    beat = conn.execute("SELECT last_heartbeat_at FROM hubs WHERE name = %s", (HUB,)).fetchone()
    assert beat is not None and beat["last_heartbeat_at"] is not None


def hub_routes(stack: Stack) -> set[str]:
    out = subprocess.run(
        ["ip", "-n", stack.topo.hub, "route", "show", "dev", "wg0"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {
        line.split()[0] for line in out.splitlines() if "proto" in line and "kernel" not in line
    }


def test_a_peers_routed_subnets_follow_its_record_on_the_hub(
    conn: Connection[DictRow], queue: JobQueue, stack: Stack
) -> None:
    iface_id = make_interface(conn, queue, stack)["interface_id"]
    key = public_key(generate_private_key())
    sub = add_peer(
        conn, queue, "op", iface_id, name="site", public_key=key, subnets=["192.168.70.0/24"]
    )
    assert wait_job(conn, sub.job["id"])["status"] == "succeeded"
    assert hub_routes(stack) == {"192.168.70.0/24"}

    peer_id = sub.job["peer_id"]
    changed = change_peer(conn, queue, "op", peer_id, {"subnets": ["192.168.71.0/24"]})
    assert wait_job(conn, changed.job["id"])["status"] == "succeeded"
    assert hub_routes(stack) == {"192.168.71.0/24"}
    driver = stack.hub_driver()
    try:
        [stats] = driver.dump("wg0")
    finally:
        driver.close()
    assert set(stats.allowed_ips) == {"10.50.0.2/32", "192.168.71.0/24"}

    disabled = change_peer(conn, queue, "op", peer_id, {"enabled": False})
    assert wait_job(conn, disabled.job["id"])["status"] == "succeeded"
    assert hub_routes(stack) == set()
    enabled = change_peer(conn, queue, "op", peer_id, {"enabled": True})
    assert wait_job(conn, enabled.job["id"])["status"] == "succeeded"
    assert hub_routes(stack) == {"192.168.71.0/24"}


def gateway_switches(stack: Stack) -> dict[str, str]:
    keys = [*SYSCTLS, "net/ipv4/conf/wg0/send_redirects"]
    script = "; ".join(f"cat /proc/sys/{k} 2>/dev/null || echo gone" for k in keys)
    out = subprocess.run(
        ["ip", "netns", "exec", stack.topo.hub, "sh", "-c", script],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(zip(keys, out.split(), strict=True))


def test_the_hub_owns_its_gateway_switches_while_it_has_interfaces(
    conn: Connection[DictRow], queue: JobQueue, stack: Stack
) -> None:
    found = gateway_switches(stack)
    iface_id = make_interface(conn, queue, stack)["interface_id"]

    now = gateway_switches(stack)
    assert now == {**SYSCTLS, "net/ipv4/conf/wg0/send_redirects": "0"}
    chain = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            stack.topo.hub,
            "nft",
            "list",
            "chain",
            "inet",
            "elysium",
            "mss_clamp",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "maxseg size set rt mtu" in chain

    job = wait_job(conn, delete_interface(conn, queue, "admin", iface_id).job["id"])
    assert job["status"] == "succeeded", job
    restored = gateway_switches(stack)
    assert restored == {**found, "net/ipv4/conf/wg0/send_redirects": "gone"}


def test_a_redelivered_key_rotation_rotates_the_hub_key_once(
    conn: Connection[DictRow], queue: JobQueue, stack: Stack
) -> None:
    iface_id = make_interface(conn, queue, stack)["interface_id"]
    first_key = interfaces_db.get_interface(conn, iface_id)["public_key"]
    sub = rotate_interface_key(conn, queue, "admin", iface_id)
    done = wait_job(conn, sub.job["id"])
    assert done["status"] == "succeeded", done
    rotated = done["result"]["public_key"]
    assert done["result"]["old_public_key"] == first_key and rotated != first_key
    # The worker died after applying the key but before it recorded the end, and the message
    # comes again (as the broker redelivers an unacknowledged one).
    conn.execute(
        "UPDATE jobs SET status = 'running', finished_at = NULL, result = NULL WHERE id = %s",
        (sub.job["id"],),
    )
    assert send(queue, get_job(conn, str(sub.job["id"])))
    again = wait_job(conn, sub.job["id"])
    assert again["status"] == "succeeded", again
    assert again["result"]["public_key"] == rotated
    assert again["result"]["old_public_key"] == first_key
    assert interfaces_db.get_interface(conn, iface_id)["public_key"] == rotated
    device = stack.hub_driver()._read("wg0")  # the device holds the same key
    assert device.private_key is not None and public_key(device.private_key) == rotated

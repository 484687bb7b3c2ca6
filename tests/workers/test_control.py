"""The periodic workflows end to end: beat → control worker → hub worker → wireguard-go.

One hub (``hub-a``, ``wg0`` in its own namespace) serves the whole module; each test starts
its own control worker and beat with the short periods it needs (``ELYSIUM_*``).
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from psycopg import Connection
from psycopg.rows import DictRow, dict_row

from dataplane import InterfaceSpec, PeerSpec
from dataplane.uapi import UapiDriver
from dataplane.uapi_protocol import b64_to_hex, transact
from dataplane.wireguard_go import WireguardGo
from db import enrollment_tokens as enrollment_tokens_db
from db import jobs as jobs_db
from db import peers as peers_db
from db.audit import list_audit
from elysium.keys import generate_private_key, public_key
from elysium.queue import CONTROL_QUEUE, JobQueue, hub_queue
from elysium.settings import Settings
from elysium.states import JobKind
from services.hubs import declare_hub
from services.interfaces import create_interface
from services.peers import add_peer
from tests.conftest import TABLES
from tests.netns import Topology, in_ns, ping, run
from tests.stack import Process, elysium_command, settings_env, wait_for

pytestmark = pytest.mark.netns

HUB = "hub-a"
NETWORK = "10.78.0.0/24"
HUB_TUNNEL_IP = "10.78.0.1"
PORT = 51820
PERIOD_S = 0.5


@dataclass
class Stack:
    """The module's hub: its namespace, worker, device and a connection to the database."""

    settings: Settings
    topology: Topology
    conn: Connection[DictRow]
    queue: JobQueue
    broker: redis.Redis
    hub_worker: Process
    hub_state_dir: Path
    interface_id: int

    def hub_keys(self) -> set[str]:
        """Peer keys on the hub's wg0, read from its device."""
        driver = UapiDriver(self.hub_state_dir, self.topology.hub)
        try:
            return {p.public_key for p in driver.dump("wg0")}
        finally:
            driver.close()

    def wait_job(self, job_id: Any, timeout: float = 30) -> dict[str, Any]:
        def ended() -> dict[str, Any] | None:
            job = jobs_db.get_job(self.conn, job_id)
            return job if job["status"] in jobs_db.FINAL else None

        return wait_for(ended, timeout, f"job {job_id} to end")  # type: ignore[return-value]

    def audit(self, action: str) -> list[dict[str, Any]]:
        return [a for a in list_audit(self.conn, limit=1000) if a["action"] == action]


@pytest.fixture(scope="module")
def stack(
    settings: Settings, netns_topology: Topology, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    state_dir = tmp_path_factory.mktemp("control-hub")
    hub_settings = dataclasses.replace(settings, heartbeat_interval_s=1.0)
    conn = psycopg.connect(settings.database_url, autocommit=True, row_factory=dict_row)
    conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    queue = JobQueue(settings)
    broker = redis.Redis.from_url(settings.redis_url)
    worker = Process(
        elysium_command(
            "hub-worker", "--hub", HUB, "--netns", netns_topology.hub, "--state-dir", str(state_dir)
        ),
        settings_env(hub_settings),
        state_dir / "hub-worker.log",
    )
    try:
        declare_hub(conn, "tests", HUB, netns_topology.hub_ip)
        sub = create_interface(
            conn, queue, "tests", HUB, name="wg0", network=NETWORK, listen_port=PORT
        )
        s = Stack(
            settings,
            netns_topology,
            conn,
            queue,
            broker,
            worker,
            state_dir / "hubs" / HUB,
            int(sub.job["interface_id"]),
        )
        assert s.wait_job(sub.job["id"], 60)["status"] == "succeeded", worker.log()
        yield s
    finally:
        worker.stop()
        processes = WireguardGo(state_dir / "hubs" / HUB, netns_topology.hub)
        for name in processes.names():
            processes.stop(name)
        queue.close()
        broker.close()
        conn.close()


@pytest.fixture
def start_control(stack: Stack, tmp_path: Path) -> Iterator[Callable[..., Settings]]:
    """Start a control worker and a beat with the given settings overrides (short periods)."""
    started: list[Process] = []

    def start(**overrides: Any) -> Settings:
        periods = dict(
            liveness_interval_s=PERIOD_S,
            expiry_interval_s=PERIOD_S,
            reconcile_interval_s=PERIOD_S,
            janitor_interval_s=PERIOD_S,
            beat_lease_s=2.0,
        )
        s = dataclasses.replace(stack.settings, **{**periods, **overrides})
        stack.broker.delete(f"{s.redis_key_prefix}{CONTROL_QUEUE}")
        env = settings_env(s)
        started.append(
            Process(
                elysium_command("control-worker", "--concurrency", "2"),
                env,
                tmp_path / "control.log",
            )
        )
        started.append(Process(elysium_command("beat"), env, tmp_path / "beat.log"))
        return s

    yield start
    for proc in started:
        proc.stop()


def new_peer(stack: Stack, name: str, expires_at: datetime | None = None) -> dict[str, Any]:
    """Add a peer with a fresh key through the service layer; wait until the hub has it."""
    private = generate_private_key()
    sub = add_peer(
        stack.conn,
        stack.queue,
        "tests",
        stack.interface_id,
        name=name,
        public_key=public_key(private),
        expires_at=expires_at,
    )
    assert stack.wait_job(sub.job["id"])["status"] == "succeeded"
    peer = peers_db.get_peer(stack.conn, sub.job["peer_id"])
    peer["private_key"] = private
    return peer


# ---- job janitor ----------------------------------------------------------------------------


def tcp_ports(pid: int) -> set[int]:
    """The local TCP ports of the sockets process ``pid`` holds (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd) if fd.is_symlink() else ""
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def popping(broker: redis.Redis, pid: int) -> bool:
    """Whether a connection of process ``pid`` waits in a blocking pop (Redis flag ``b``)."""
    ports = tcp_ports(pid)
    return any(
        "b" in c["flags"] and int(c["addr"].rsplit(":", 1)[1]) in ports
        for c in broker.client_list()
    )


def test_a_job_whose_message_was_lost_is_sent_again_and_succeeds(
    stack: Stack, start_control: Callable[..., Settings]
) -> None:
    start_control(job_requeue_after_s=1.0)
    hub_list = f"{stack.settings.redis_key_prefix}{hub_queue(HUB)}"
    # Freeze the hub worker until its last broker poll has ended (a frozen worker whose pop
    # still waits would take the message), so the message stays in Redis...
    wait_for(lambda: popping(stack.broker, stack.hub_worker.pid), 30, "the hub worker to poll")
    os.kill(stack.hub_worker.pid, signal.SIGSTOP)
    try:
        wait_for(
            lambda: not popping(stack.broker, stack.hub_worker.pid),
            30,
            "the frozen hub worker's broker poll to end",
        )
        sub = add_peer(
            stack.conn,
            stack.queue,
            "tests",
            stack.interface_id,
            name="lost",
            public_key=public_key(generate_private_key()),
        )
        waiting = stack.broker.lrange(hub_list, 0, -1)
        assert any(str(sub.job["id"]).encode() in m for m in waiting)
        # ... and lose it.
        stack.broker.delete(hub_list)
    finally:
        os.kill(stack.hub_worker.pid, signal.SIGCONT)

    job = stack.wait_job(sub.job["id"])

    assert job["status"] == "succeeded"
    peer = peers_db.get_peer(stack.conn, sub.job["peer_id"])
    assert peer["status"] == "active" and peer["public_key"] in stack.hub_keys()
    assert any(a["target"] == f"job:{job['id']}" for a in stack.audit("job.requeue"))


def test_a_job_running_past_its_time_limit_fails_with_timeout(
    stack: Stack, start_control: Callable[..., Settings]
) -> None:
    with stack.conn.transaction():
        job = jobs_db.create_job(
            stack.conn, kind=JobKind.ADD_PEER, queue=hub_queue("nowhere"), submitter="tests"
        )
        jobs_db.start_job(stack.conn, job["id"])  # a worker took it, then vanished
    start_control(job_time_limit_s=2.0)

    ended = stack.wait_job(job["id"], 15)

    assert (ended["status"], ended["error_code"]) == ("failed", "timeout")
    assert ended["finished_at"] - ended["started_at"] >= timedelta(seconds=2)
    assert any(a["target"] == f"job:{job['id']}" for a in stack.audit("job.timeout"))


# ---- expiry ---------------------------------------------------------------------------------


def test_an_expired_peer_is_removed_from_the_hub_and_marked_expired(
    stack: Stack, start_control: Callable[..., Settings]
) -> None:
    peer = new_peer(stack, "short-lived", expires_at=datetime.now(UTC) + timedelta(seconds=3))
    keeper = new_peer(stack, "keeper")
    assert peer["public_key"] in stack.hub_keys()
    start_control()

    wait_for(lambda: peer["public_key"] not in stack.hub_keys(), 20, "the key to leave the hub")

    gone = wait_for(
        lambda: (p := peers_db.get_peer(stack.conn, peer["id"]))["address"] is None and p,
        10,
        "the address to be released",
    )
    assert gone["status"] == "expired" and not gone["online"]  # type: ignore[index]
    assert keeper["public_key"] in stack.hub_keys()
    assert peers_db.get_peer(stack.conn, keeper["id"])["status"] == "active"
    expiries = [a for a in stack.audit("expire_peer") if a["target"] == f"peer:{peer['id']}"]
    assert [(a["actor"], a["outcome"]) for a in expiries] == [
        ("control", "accepted"),
        ("hub:hub-a", "succeeded"),
    ]
    assert jobs_db.get_job(stack.conn, expiries[0]["detail"]["job_id"])["status"] == "succeeded"


def test_expired_enrollment_tokens_are_marked(
    stack: Stack, start_control: Callable[..., Settings]
) -> None:
    row, _ = enrollment_tokens_db.create_enrollment_token(
        stack.conn, stack.interface_id, "short", 1, 1, [], "tests"
    )
    lasting, _ = enrollment_tokens_db.create_enrollment_token(
        stack.conn, stack.interface_id, "long", 600, 1, [], "tests"
    )
    start_control()

    def expired(token_id: int) -> bool:
        return bool(
            stack.conn.execute(
                "SELECT expired FROM enrollment_tokens WHERE id = %s", (token_id,)
            ).fetchone()["expired"]
        )  # type: ignore[index]

    wait_for(lambda: expired(row["id"]), 10, "the token to be marked expired")
    assert not expired(lasting["id"])
    assert any(a["detail"].get("enrollment", 0) >= 1 for a in stack.audit("tokens.expire"))


# ---- liveness -------------------------------------------------------------------------------


@pytest.fixture
def site(stack: Stack, tmp_path: Path) -> Iterator[tuple[dict[str, Any], UapiDriver]]:
    """A peer whose own wg0 runs in a peer namespace, pointed at the hub."""
    peer = new_peer(stack, f"site-{secrets.token_hex(2)}")
    ns = stack.topology.peers[0]
    key_file = tmp_path / "site" / "wg0.key"
    key_file.parent.mkdir(mode=0o700)
    key_file.write_text(peer["private_key"] + "\n")
    key_file.chmod(0o600)
    driver = UapiDriver(tmp_path / "site", ns)
    driver.ensure_interface(InterfaceSpec("wg0", key_file, None, (f"{peer['address']}/24",)))
    hub_key = stack.conn.execute(
        "SELECT public_key FROM interfaces WHERE id = %s", (stack.interface_id,)
    ).fetchone()["public_key"]  # type: ignore[index]
    driver.converge(
        "wg0", [PeerSpec(hub_key, (NETWORK,), endpoint=f"{stack.topology.hub_ip}:{PORT}")]
    )
    try:
        yield peer, driver
    finally:
        driver.remove_interface("wg0")
        driver.close()


def test_a_peer_that_handshakes_is_online_with_growing_counters_then_goes_offline(
    stack: Stack,
    start_control: Callable[..., Settings],
    site: tuple[dict[str, Any], UapiDriver],
) -> None:
    peer, driver = site
    start_control(online_after_s=4.0)

    assert ping(stack.topology.peers[0], HUB_TUNNEL_IP)
    first = wait_for(
        lambda: (
            (p := peers_db.get_peer(stack.conn, peer["id"]))["online"] and p["rx_bytes"] > 0 and p
        ),
        10,
        "the peer to show online",
    )
    assert first["last_handshake_at"] is not None  # type: ignore[index]
    assert first["endpoint"] == f"{stack.topology.peer_ip(0)}:{first['endpoint'].split(':')[1]}"  # type: ignore[index]

    in_ns(stack.topology.peers[0], "ping", "-c3", "-i0.2", "-n", HUB_TUNNEL_IP)
    wait_for(
        lambda: peers_db.get_peer(stack.conn, peer["id"])["rx_bytes"] > first["rx_bytes"],
        10,
        "rx to grow",
    )  # type: ignore[index]

    driver.remove_interface("wg0")  # the peer goes away
    wait_for(
        lambda: not peers_db.get_peer(stack.conn, peer["id"])["online"],
        15,
        "the peer to go offline",
    )


def test_a_silent_hub_is_marked_stale(stack: Stack, start_control: Callable[..., Settings]) -> None:
    os.kill(stack.hub_worker.pid, signal.SIGSTOP)
    try:
        start_control(hub_stale_after_s=2.0)
        wait_for(
            lambda: stack.conn.execute("SELECT stale FROM hubs WHERE name = %s", (HUB,)).fetchone()[
                "stale"
            ],
            15,
            "the hub to be marked stale",
        )  # type: ignore[index]
    finally:
        os.kill(stack.hub_worker.pid, signal.SIGCONT)
    assert any(a["target"] == f"hub:{HUB}" for a in stack.audit("hub.stale"))
    wait_for(
        lambda: (
            not stack.conn.execute("SELECT stale FROM hubs WHERE name = %s", (HUB,)).fetchone()[
                "stale"
            ]
        ),
        10,
        "the heartbeat to clear it",
    )  # type: ignore[index]


# ---- reconcile ------------------------------------------------------------------------------


def test_reconcile_recreates_a_deleted_interface_with_its_peers(
    stack: Stack, start_control: Callable[..., Settings]
) -> None:
    peer = new_peer(stack, "survivor")
    run("ip", "-n", stack.topology.hub, "link", "del", "wg0")
    start_control()

    wait_for(lambda: peer["public_key"] in stack.hub_keys(), 20, "wg0 to come back")

    assert in_ns(stack.topology.hub, "ip", "link", "show", "wg0").returncode == 0
    assert HUB_TUNNEL_IP in run("ip", "-n", stack.topology.hub, "-br", "addr", "show", "wg0").stdout
    assert any(a["outcome"] == "changed" for a in stack.audit("reconcile"))


def test_reconcile_removes_a_peer_added_by_hand(
    stack: Stack, start_control: Callable[..., Settings]
) -> None:
    intruder = public_key(generate_private_key())
    socket_path = WireguardGo(stack.hub_state_dir, stack.topology.hub).socket_path("wg0")
    transact(
        socket_path,
        f"set=1\npublic_key={b64_to_hex(intruder)}\nallowed_ip=10.78.0.250/32\n\n".encode(),
    )
    assert intruder in stack.hub_keys()
    start_control()

    wait_for(lambda: intruder not in stack.hub_keys(), 20, "the hand-added peer to go")

"""1,000 peers following their config on one API instance (TLS, 2 gunicorn workers).

Each light follower is one keep-alive TLS connection with its own client certificate that
long-polls ``GET /v1/peer/config?version=V&wait=N`` (no tunnel). With all of them waiting, one
interface-wide change (the interface's DNS) must reach every one: ``fanout_1000_p99_s`` (goal
≤ 2 s). ``/healthz`` is timed on its own keep-alive connection before the followers come and
while they wait, in the same run (goal: ratio ≤ 2), and the API's resident memory is summed
over its processes while they wait.
Run: ``.venv/bin/python -m bench.follow`` (writes bench/results/follow.json).

``follow_across_replicas`` runs the same followers at scale for ``bench/ha.py``: API replicas
(separate gunicorn masters) behind several HAProxy processes, the followers spread over
spawned client processes (asyncio, one balancer each) so that the client is not what limits
the fan-out; each follower asks again at once when told of the change, as a real one does.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import multiprocessing
import os
import secrets
import shutil
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psycopg
import requests
from psycopg.rows import dict_row

from bench.api import _free_port, api_server, tls_settings
from bench.scaffold import (
    percentile,
    random_key,
    size,
    stop_process,
    throwaway_database,
    wait_until,
    write_result,
)
from db.interfaces import create_interface
from db.peers import create_peer
from elysium import pki
from elysium.haproxy import haproxy_config
from elysium.settings import Settings
from services.hubs import declare_hub

FOLLOWERS = size(1000, 10)
WAIT_S = 55
CONNECTING_AT_ONCE = 50
CONNECT_ATTEMPTS = 5
UNAVAILABLE_ATTEMPTS = 10
HEALTHZ_SAMPLES = size(300, 10)


class Unavailable(RuntimeError):
    """A 503 answer (the database was not reachable in time, or too many waiting)."""


class Follower:
    """One peer's keep-alive TLS connection, long-polling its config."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext) -> None:
        self.host, self.port, self.context = host, port, context
        self.version: str | None = None
        self.changed_at: float | None = None
        self.waiting = asyncio.Event()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.reconnects = 0
        self.unavailable = 0  # 503 answers, each asked again a second later
        self.received = 0  # bytes of every answer: head (status line, headers) and body

    async def connect(self) -> None:
        await self._open()
        self.version = (await self.get(""))["version"]

    async def _open(self) -> None:
        for attempt in range(CONNECT_ATTEMPTS):
            try:
                self.reader, self.writer = await asyncio.open_connection(
                    self.host, self.port, ssl=self.context, server_hostname=self.host
                )
                return
            except (ConnectionError, ssl.SSLError):  # as a real follower: again, a bit later
                if attempt == CONNECT_ATTEMPTS - 1:
                    raise
                self.reconnects += 1
                await asyncio.sleep(0.2 * (attempt + 1))

    async def get(self, query: str) -> dict[str, Any]:
        for attempt in range(UNAVAILABLE_ATTEMPTS):
            last = attempt == UNAVAILABLE_ATTEMPTS - 1
            try:
                return await self._get(query)
            except (ConnectionError, asyncio.IncompleteReadError):  # the server closed it
                if last:
                    raise
                self.reconnects += 1
                self.close()
                await self._open()
            except Unavailable:  # 503: as a real follower, again a little later (counted)
                if last:
                    raise
                self.unavailable += 1
                await asyncio.sleep(1)
        raise AssertionError("unreachable")

    def send(self, query: str) -> None:
        assert self.writer is not None
        self.writer.write(
            f"GET /v1/peer/config{query} HTTP/1.1\r\nHost: {self.host}\r\n"
            "Accept: application/json\r\n\r\n".encode()
        )

    async def _get(self, query: str) -> dict[str, Any]:
        assert self.reader is not None and self.writer is not None
        self.send(query)
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        raw = await self.reader.readexactly(length)
        self.received += len(head) + len(raw)
        body = json.loads(raw)
        if status == 503:
            raise Unavailable(f"{status}: {body}")
        if status != 200:
            raise RuntimeError(f"{status}: {body}")
        return dict(body)

    async def follow(self, repoll: bool = False) -> None:
        """Wait for the version to move once; note when it did. ``repoll``: then send the next
        wait at once, as a real follower does (the server answers it inside the fan-out)."""
        while True:
            self.waiting.set()
            body = await self.get(f"?version={self.version}&wait={WAIT_S}")
            if body["version"] != self.version:
                self.changed_at = time.time()
                self.version = body["version"]
                if repoll:
                    self.send(f"?version={self.version}&wait={WAIT_S}")
                    assert self.writer is not None
                    await self.writer.drain()
                return

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def peers_with_certificates(url: str, d: Path, count: int) -> list[ssl.SSLContext]:
    """``count`` live peers of one interface, each with a client certificate of its own."""
    return [client_context(d, path) for path in enroll_peers(url, d, count)]


def client_context(d: Path, certificate: Path) -> ssl.SSLContext:
    """A follower's TLS context: the CA of ``d``, ``certificate`` and the shared peer key."""
    context = ssl.create_default_context(cafile=str(d / "ca.pem"))
    context.load_cert_chain(str(certificate), str(d / "peer.key"))
    return context


def enroll_peers(url: str, d: Path, count: int) -> list[Path]:
    """``count`` live peers of one interface made straight in the database, each with a client
    certificate of its own (files in ``d``; one key, ``d / "peer.key"``, for all)."""
    ca_cert, ca_key = pki.load_certificate(d / "ca.pem"), pki.load_private_key(d / "ca.key")
    key = pki.new_private_key()
    pki.write_private_key(d / "peer.key", key)
    csr = pki.make_csr(key)
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        declare_hub(conn, "bench", "bench-hub", "192.0.2.1")
        with conn.transaction():
            iface = create_interface(conn, 1, "wg0", "10.64.0.0/18", None, 51820, None, [], 25)
        with conn.transaction():
            ids = [
                create_peer(conn, iface["id"], f"f{i}", random_key(), (), None, "bench")["id"]
                for i in range(count)
            ]
    serials, paths = [], []
    for peer_id in ids:
        path = d / f"peer-{peer_id}.pem"
        cert = pki.sign_csr(ca_cert, ca_key, csr, peer_id, 1)
        pki.write_certificate(path, cert)
        serials.append((pki.serial_hex(cert), peer_id))
        paths.append(path)
    with psycopg.connect(url, autocommit=True) as plain, plain.cursor() as cur:
        # As enrollment does: the API accepts only the certificate recorded as the peer's.
        cur.executemany("UPDATE peers SET certificate_serial = %s WHERE id = %s", serials)
    return paths


def healthz_p99_ms(base: str, ca: str) -> float:
    session = requests.Session()
    session.get(f"{base}/healthz", verify=ca, timeout=10)
    took = []
    for _ in range(HEALTHZ_SAMPLES):
        started = time.perf_counter()
        assert session.get(f"{base}/healthz", verify=ca, timeout=10).ok
        took.append(time.perf_counter() - started)
        time.sleep(0.005)
    session.close()
    return round(percentile(took, 0.99) * 1000, 2)


def rss_mb(root_pid: int) -> float:
    """Resident memory of a process and its children (the gunicorn master and workers)."""
    out = subprocess.run(
        ["ps", "-o", "pid=,ppid=,rss=", "-e"], capture_output=True, text=True, check=True
    ).stdout
    rows = [tuple(int(x) for x in line.split()) for line in out.splitlines() if line.strip()]
    family, total = {root_pid}, 0
    for _ in range(3):
        family |= {pid for pid, ppid, _ in rows if ppid in family}
    total = sum(rss for pid, _, rss in rows if pid in family)
    return round(total / 1024, 1)


async def connect_all(
    followers: Sequence[Follower], then: Callable[[Follower], Any] | None = None
) -> float:
    """Connect every follower, ``CONNECTING_AT_ONCE`` at a time; how long that took.
    ``then``: called with each follower once it is connected (say, to start it following at
    once, as a real one does, before the server's keep-alive closes an idle connection)."""
    gate = asyncio.Semaphore(CONNECTING_AT_ONCE)

    async def connect(f: Follower) -> None:
        async with gate:
            await f.connect()
        if then is not None:
            then(f)

    started = time.perf_counter()
    await asyncio.gather(*(connect(f) for f in followers))
    return time.perf_counter() - started


async def run_followers(
    base: str, contexts: list[ssl.SSLContext], url: str, measure: Any
) -> dict[str, Any]:
    host, port = base.removeprefix("https://").split(":")
    followers = [Follower(host, int(port), c) for c in contexts]
    connected_s = await connect_all(followers)
    tasks = [asyncio.create_task(f.follow()) for f in followers]
    await asyncio.gather(*(f.waiting.wait() for f in followers))
    await asyncio.sleep(2)  # every request has reached the server and waits there
    while_following = await asyncio.to_thread(measure)
    changed_at = time.time()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE interfaces SET dns = '{10.64.0.53}'")
    done, pending = await asyncio.wait(tasks, timeout=30)
    for t in pending:
        t.cancel()
    for t in done:
        t.result()
    for f in followers:
        f.close()
    delays = [f.changed_at - changed_at for f in followers if f.changed_at is not None]
    return {
        "connect_all_s": round(connected_s, 2),
        "reconnects": sum(f.reconnects for f in followers),
        "reached": len(delays),
        "fanout_p50_s": round(percentile(delays, 0.5), 3) if delays else None,
        "fanout_p99_s": round(percentile(delays, 0.99), 3) if delays else None,
        "fanout_max_s": round(max(delays), 3) if delays else None,
        **while_following,
    }


# --- Many followers across API replicas behind load balancers (bench/ha.py) -------------


def group_cpu_s(pids: list[int]) -> float:
    """CPU time (user + system, seconds) of processes ``pids`` and their children so far."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        pid = int(stat.parent.name)
        parents[pid] = int(fields[1])
        cpu[pid] = (int(fields[11]) + int(fields[12])) / tick
    family = set(pids)
    for _ in range(3):
        family |= {pid for pid, ppid in parents.items() if ppid in family}
    return sum(cpu.get(pid, 0.0) for pid in family)


def wait_idle(pids: list[int], timeout: float, busy: float = 0.05) -> None:
    """Until ``pids`` (and children) use under ``busy`` of a core for a second: every
    follower's wait has reached its replica and waits there."""
    deadline = time.monotonic() + timeout
    before = group_cpu_s(pids)
    while time.monotonic() < deadline:
        time.sleep(1)
        now = group_cpu_s(pids)
        if now - before < busy:
            return
        before = now


@contextlib.contextmanager
def replicas_behind_balancers(
    settings: Settings, d: Path, replicas: int, balancers: int, connections: int
) -> Iterator[tuple[list[str], list[int]]]:
    """``replicas`` API replicas (separate gunicorn masters, own state directories) and
    ``balancers`` HAProxy processes, each in front of every replica (TCP mode, as
    elysium/haproxy.py renders it): the balancers' URLs and the replicas' pids."""
    pids: list[int] = []
    with contextlib.ExitStack() as stack:
        addresses = []
        for i in range(1, replicas + 1):
            state_dir = d / f"api{i}"
            state_dir.mkdir()
            replica = dataclasses.replace(settings, state_dir=state_dir)
            base = stack.enter_context(api_server(replica, d, pids, f"api{i}.log"))
            addresses.append(base.removeprefix("https://"))
        urls = []
        for i in range(1, balancers + 1):
            port = _free_port()
            config = d / f"haproxy{i}.cfg"
            # Two descriptors a connection, under the open-file limit of 20,000 here: hence
            # several balancers for 10,000 followers (as a real deployment has no single one).
            config.write_text(
                haproxy_config(
                    f"127.0.0.1:{port}",
                    addresses,
                    d / "ca.pem",
                    max_connections=connections // balancers + 256,
                )
            )
            log = stack.enter_context(open(d / f"haproxy{i}.log", "wb"))
            proc = subprocess.Popen(
                ["haproxy", "-db", "-f", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            stack.callback(stop_process, proc)
            url = f"https://127.0.0.1:{port}"
            ready = functools.partial(_answers, f"{url}/readyz", d / "ca.pem")
            wait_until(ready, 30, f"haproxy {i}")
            urls.append(url)
        yield urls, pids


def _answers(url: str, ca: Path) -> bool:
    try:
        return requests.get(url, verify=str(ca), timeout=2).ok
    except requests.RequestException:
        return False


def _client_process(
    pipe: Connection, base: str, d: str, certificates: list[str], repoll: bool
) -> None:
    """One process of asyncio followers (all through one balancer): tells the parent when
    they all wait, is told when the change was made, and sends back when each saw it."""
    asyncio.run(_client_followers(pipe, base, Path(d), [Path(c) for c in certificates], repoll))


async def _client_followers(
    pipe: Connection, base: str, d: Path, certificates: list[Path], repoll: bool
) -> None:
    host, port = base.removeprefix("https://").split(":")
    followers = [Follower(host, int(port), client_context(d, c)) for c in certificates]
    tasks: list[asyncio.Task[None]] = []
    # Each follows as soon as it is connected: 10,000 take longer to connect than the API
    # keeps an idle connection open (30 s), and a real follower does not wait for the others.
    connected_s = await connect_all(
        followers, lambda f: tasks.append(asyncio.create_task(f.follow(repoll)))
    )
    await asyncio.gather(*(f.waiting.wait() for f in followers))
    pipe.send(("waiting", connected_s))
    await asyncio.to_thread(pipe.recv)  # the change is made
    done, pending = await asyncio.wait(tasks, timeout=FANOUT_TIMEOUT_S)
    for t in pending:
        t.cancel()
    failed = [repr(t.exception()) for t in done if t.exception() is not None]
    for f in followers:
        f.close()
    pipe.send(
        (
            "done",
            [f.changed_at for f in followers if f.changed_at is not None],
            sum(f.reconnects for f in followers),
            sum(f.unavailable for f in followers),
            failed[:3],
        )
    )


FANOUT_TIMEOUT_S = 60


def _from_client(
    proc: multiprocessing.process.BaseProcess, pipe: Connection, timeout: float
) -> Any:
    """The next message of a client process; it failing or falling silent fails the run."""
    deadline = time.monotonic() + timeout
    while not pipe.poll(1):
        if not proc.is_alive() or time.monotonic() > deadline:
            raise SystemExit(f"follow: a client process failed (exit code {proc.exitcode})")
    return pipe.recv()


def follow_across_replicas(
    followers: int,
    *,
    replicas: int = 2,
    balancers: int = 2,
    client_processes: int = 4,
    workers: int = 2,
    threads: int | None = None,
    repoll: bool = True,
    pool_max: int | None = None,
    logs: Path | None = None,
    before_change: Callable[[list[int]], Any] | None = None,
) -> dict[str, Any]:
    """``followers`` peers long-polling their config through ``balancers`` HAProxy processes
    (each follower process through one) in front of ``replicas`` API replicas of ``workers``
    gunicorn workers; one interface-wide change; when each saw it, and the replicas' RSS."""
    if threads is None:  # a follower holds no thread while it waits: the default
        threads = Settings.api_threads
    prefix = f"elybench{secrets.token_hex(3)}:"
    ctx = multiprocessing.get_context("spawn")
    with throwaway_database() as url, tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        settings = dataclasses.replace(
            tls_settings(url, d, prefix), api_workers=workers, api_threads=threads
        )
        if pool_max is not None:
            settings = dataclasses.replace(settings, db_pool_max=pool_max)
        started = time.perf_counter()
        certificates = enroll_peers(url, d, followers)
        enrolled_s = time.perf_counter() - started
        with replicas_behind_balancers(settings, d, replicas, balancers, followers) as (
            urls,
            pids,
        ):
            idle_rss = sum(rss_mb(pid) for pid in pids)
            clients = []
            for i in range(client_processes):
                mine, theirs = ctx.Pipe()
                proc = ctx.Process(
                    target=_client_process,
                    args=(
                        theirs,
                        urls[i % len(urls)],
                        str(d),
                        [str(c) for c in certificates[i::client_processes]],
                        repoll,
                    ),
                    daemon=True,
                )
                proc.start()
                clients.append((proc, mine))
            try:
                connect_s = max(_from_client(proc, pipe, 900)[1] for proc, pipe in clients)
                wait_idle(pids, 60)
                following_rss = sum(rss_mb(pid) for pid in pids)
                if before_change is not None:  # e.g. a profiler, given the replicas' pids
                    before_change(pids)
                client_pids = [proc.pid for proc, _ in clients if proc.pid is not None]
                cpu_before = group_cpu_s(pids), group_cpu_s(client_pids)
                changed_at = time.time()
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute("UPDATE interfaces SET dns = '{10.64.0.53}'")
                for _, pipe in clients:
                    pipe.send("changed")
                delays: list[float] = []
                reconnects = unavailable = 0
                failed: list[str] = []
                for proc, pipe in clients:
                    _, seen, again, refused, errors = _from_client(
                        proc, pipe, FANOUT_TIMEOUT_S + 30
                    )
                    delays += [at - changed_at for at in seen]
                    reconnects += again
                    unavailable += refused
                    failed += errors
                # CPU the fan-out took (to the last follower's answer, and a little after):
                # what the figure costs apart from how busy the machine was.
                fanout_cpu = (
                    group_cpu_s(pids) - cpu_before[0],
                    group_cpu_s(client_pids) - cpu_before[1],
                )
            finally:
                if logs is not None:  # the replicas' and balancers' logs, for a look after
                    logs.mkdir(parents=True, exist_ok=True)
                    for log in d.glob("*.log"):
                        shutil.copy(log, logs / log.name)
                for proc, _ in clients:
                    proc.join(10)
                    if proc.is_alive():
                        proc.kill()
                        proc.join()
    return {
        "followers": followers,
        "reached": len(delays),
        "fanout_p50_s": round(percentile(delays, 0.5), 3) if delays else None,
        "fanout_p99_s": round(percentile(delays, 0.99), 3) if delays else None,
        "fanout_max_s": round(max(delays), 3) if delays else None,
        "replicas_cpu_s": round(fanout_cpu[0], 2),
        "clients_cpu_s": round(fanout_cpu[1], 2),
        "replicas_rss_mb_idle": round(idle_rss, 1),
        "replicas_rss_mb": round(following_rss, 1),
        "connect_all_s": round(connect_s, 1),
        "enroll_s": round(enrolled_s, 1),
        "reconnects": reconnects,
        "unavailable": unavailable,
        "errors": failed[:3],
        "shape": {
            "replicas": replicas,
            "balancers": balancers,
            "workers_per_replica": workers,
            "threads_per_worker": threads,
            "client_processes": client_processes,
            "repoll": repoll,
        },
    }


def main() -> None:
    prefix = f"elybench{secrets.token_hex(3)}:"
    with throwaway_database() as url, tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        settings = tls_settings(url, d, prefix)
        contexts = peers_with_certificates(url, d, FOLLOWERS)
        ca = str(d / "ca.pem")
        pids: list[int] = []
        with api_server(settings, d, pids) as base:
            healthz_p99_ms(base, ca)  # warm-up
            idle_p99 = healthz_p99_ms(base, ca)
            idle_rss = rss_mb(pids[0])

            def measure() -> dict[str, Any]:
                return {
                    "healthz_p99_ms_while_following": healthz_p99_ms(base, ca),
                    "api_rss_mb_1000_followers": rss_mb(pids[0]),
                }

            run = asyncio.run(run_followers(base, contexts, url, measure))
    figures: dict[str, Any] = {
        "followers": FOLLOWERS,
        "fanout_1000_p99_s": run.pop("fanout_p99_s"),
        "healthz_p99_ms_idle": idle_p99,
        "healthz_p99_ms_while_following": run["healthz_p99_ms_while_following"],
        "healthz_ratio": round(run.pop("healthz_p99_ms_while_following") / idle_p99, 2),
        "api_rss_mb_idle": idle_rss,
        "api_rss_mb_1000_followers": run.pop("api_rss_mb_1000_followers"),
        **run,
        "goals": {"fanout_1000_p99_s": 2, "healthz_ratio": 2},
        "server": {
            "workers": settings.api_workers,
            "worker_class": "gthread",
            "threads": settings.api_threads,
            "listen": "one LISTEN connection per worker process",
            "tls": True,
        },
    }
    write_result("follow", figures)
    os.sync()


if __name__ == "__main__":
    main()

"""1,000 peers following their config on one API instance (TLS, 2 gunicorn workers).

Each light follower is one keep-alive TLS connection with its own client certificate that
long-polls ``GET /v1/peer/config?version=V&wait=N`` (no tunnel). With all of them waiting, one
interface-wide change (the interface's DNS) must reach every one: ``fanout_1000_p99_s`` (goal
≤ 2 s). ``/healthz`` is timed on its own keep-alive connection before the followers come and
while they wait, in the same run (goal: ratio ≤ 2), and the API's resident memory is summed
over its processes while they wait.
Run: ``.venv/bin/python -m bench.follow`` (writes bench/results/follow.json).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import ssl
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
import requests
from psycopg.rows import dict_row

from bench.api import api_server, tls_settings
from bench.scaffold import percentile, random_key, size, throwaway_database, write_result
from db.interfaces import create_interface
from db.peers import create_peer
from elysium import pki
from services.hubs import declare_hub

FOLLOWERS = size(1000, 10)
WAIT_S = 55
CONNECTING_AT_ONCE = 50
HEALTHZ_SAMPLES = size(300, 10)


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
        self.received = 0  # bytes of every answer: head (status line, headers) and body

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(
            self.host, self.port, ssl=self.context, server_hostname=self.host
        )
        self.version = (await self.get(""))["version"]

    async def get(self, query: str) -> dict[str, Any]:
        try:
            return await self._get(query)
        except (ConnectionError, asyncio.IncompleteReadError):  # the server closed it: again
            self.reconnects += 1
            self.close()
            self.reader, self.writer = await asyncio.open_connection(
                self.host, self.port, ssl=self.context, server_hostname=self.host
            )
            return await self._get(query)

    async def _get(self, query: str) -> dict[str, Any]:
        assert self.reader is not None and self.writer is not None
        self.writer.write(
            f"GET /v1/peer/config{query} HTTP/1.1\r\nHost: {self.host}\r\n"
            "Accept: application/json\r\n\r\n".encode()
        )
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
        if status != 200:
            raise RuntimeError(f"{status}: {body}")
        return dict(body)

    async def follow(self) -> None:
        """Wait for the version to move once; note when it did."""
        while True:
            self.waiting.set()
            body = await self.get(f"?version={self.version}&wait={WAIT_S}")
            if body["version"] != self.version:
                self.changed_at = time.time()
                self.version = body["version"]
                return

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def peers_with_certificates(url: str, d: Path, count: int) -> list[ssl.SSLContext]:
    """``count`` live peers of one interface, each with a client certificate of its own."""
    ca_cert, ca_key = pki.load_certificate(d / "ca.pem"), pki.load_private_key(d / "ca.key")
    key = pki.new_private_key()
    pki.write_private_key(d / "peer.key", key)
    csr = pki.make_csr(key)
    contexts = []
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        declare_hub(conn, "bench", "bench-hub", "192.0.2.1")
        with conn.transaction():
            iface = create_interface(conn, 1, "wg0", "10.64.0.0/18", None, 51820, None, [], 25)
        with conn.transaction():
            ids = [
                create_peer(conn, iface["id"], f"f{i}", random_key(), (), None, "bench")["id"]
                for i in range(count)
            ]
    serials = []
    for peer_id in ids:
        path = d / f"peer-{peer_id}.pem"
        cert = pki.sign_csr(ca_cert, ca_key, csr, peer_id, 1)
        pki.write_certificate(path, cert)
        serials.append((pki.serial_hex(cert), peer_id))
        context = ssl.create_default_context(cafile=str(d / "ca.pem"))
        context.load_cert_chain(str(path), str(d / "peer.key"))
        contexts.append(context)
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cur:
        # As enrollment does: the API accepts only the certificate recorded as the peer's.
        cur.executemany("UPDATE peers SET certificate_serial = %s WHERE id = %s", serials)
    return contexts


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


async def run_followers(
    base: str, contexts: list[ssl.SSLContext], url: str, measure: Any
) -> dict[str, Any]:
    host, port = base.removeprefix("https://").split(":")
    followers = [Follower(host, int(port), c) for c in contexts]
    gate = asyncio.Semaphore(CONNECTING_AT_ONCE)

    async def connect(f: Follower) -> None:
        async with gate:
            await f.connect()

    started = time.perf_counter()
    await asyncio.gather(*(connect(f) for f in followers))
    connected_s = time.perf_counter() - started
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

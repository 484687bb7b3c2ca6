"""The API under load: requests/s and p99 of ``POST /v1/enroll`` and of ``GET /healthz`` on the
same gunicorn server (TLS, 2 workers) in the same run. Enrollment does the real work (token
redeem, address allocation, peer, job and audit rows, one Celery message to Redis); no hub
worker runs, so the jobs just queue.

The client (``bench/http_load.py``) is 4 processes of 4 threads, each thread on one keep-alive
TLS connection opened before the clock starts (16 connections). ``healthz`` sends
``GET /healthz``; ``enroll`` sends ``POST /v1/enroll {token, name, public_key}`` with a fresh
key and name each time, all on one token of one interface; ``enroll_csr`` adds a CSR, as
``elysium-client`` sends it (the API checks it; the control worker signs it later). Each
figure says ``client_busiest_process_cpu``: the busiest client process's share of a core, well
below 1 when the client is not what limits the rate (the machine's cores are shared with the
server, so the server's own workers are the ceiling).

The three run side by side, healthz → enroll → enroll_csr, in 5 rounds (this host's speed
moves ±15 % from minute to minute); the figures are the median round's by the enroll ratio,
whole, and ``rounds_ratios`` lists every round's.

Goal: ``enroll_to_healthz_ratio`` ≥ 0.5.
Run: ``.venv/bin/python -m bench.api`` (writes bench/results/api.json).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import redis
import requests
from psycopg.rows import dict_row

from bench.http_load import CLIENT_PROCESSES, THREADS_PER_PROCESS, run_load
from bench.scaffold import (
    REDIS_URL,
    random_key,
    size,
    stop_process,
    throwaway_database,
    write_result,
)
from db.enrollment_tokens import create_enrollment_token
from db.interfaces import create_interface
from elysium import pki
from elysium.settings import Settings
from services.hubs import declare_hub

REQUESTS = size(4000, 40)
ROUNDS = size(5, 1)
GOAL_RATIO = 0.5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tls_settings(url: str, d: Path, prefix: str, **extra: Any) -> Settings:
    """A PKI made in ``d`` and the settings of a TLS API (2 workers) on it, for a benchmark."""
    _write_pki(d)
    return Settings.from_env(
        {},
        database_url=url,
        redis_url=REDIS_URL,
        redis_key_prefix=prefix,
        state_dir=d,
        tls_cert=d / "server.pem",
        tls_key=d / "server.key",
        tls_ca=d / "ca.pem",
        api_workers=2,
        **extra,
    )


def _write_pki(d: Path) -> None:
    ca, key = pki.create_ca()
    pki.write_certificate(d / "ca.pem", ca)
    pki.write_private_key(d / "ca.key", key)
    cert, ckey = pki.create_server_certificate(ca, key, ["127.0.0.1"])
    pki.write_certificate(d / "server.pem", cert)
    pki.write_private_key(d / "server.key", ckey)


@contextlib.contextmanager
def api_server(
    settings: Settings, d: Path, pids: list[int] | None = None, log_name: str = "api.log"
) -> Iterator[str]:
    """``elysium api`` on a free loopback port; stopped by its own pid (added to ``pids``);
    its output goes to ``d / log_name``."""
    import subprocess

    port = _free_port()
    env = {**os.environ, **settings.to_env()}
    env.update(ELYSIUM_API_BIND=f"127.0.0.1:{port}", ELYSIUM_API_LOGLEVEL="warning")
    with open(d / log_name, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "api"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if pids is not None:
            pids.append(proc.pid)
        url = f"https://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if requests.get(f"{url}/healthz", verify=str(d / "ca.pem"), timeout=2).ok:
                        break
                except requests.RequestException:
                    if time.monotonic() > deadline:
                        raise
                time.sleep(0.2)
            yield url
        finally:
            stop_process(proc)


def main() -> None:
    prefix = f"elybench{secrets.token_hex(3)}:"
    with throwaway_database() as url, tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        settings = tls_settings(url, d, prefix, ca_key=d / "ca.key")
        with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
            declare_hub(conn, "bench", "bench-hub", "192.0.2.1")
            with conn.transaction():
                iface = create_interface(conn, 1, "wg0", "10.64.0.0/16", None, 51820, None, [], 25)
            _, token = create_enrollment_token(
                conn, iface["id"], "bench", 3600, REQUESTS * 3 * ROUNDS, [], "bench"
            )
        ca = str(d / "ca.pem")

        def healthz(session: requests.Session, base: str, i: int) -> requests.Response:
            return session.get(f"{base}/healthz", timeout=30)

        def enroll(session: requests.Session, base: str, i: int) -> requests.Response:
            body = {"token": token, "name": f"bench-{i}", "public_key": random_key()}
            return session.post(f"{base}/v1/enroll", json=body, timeout=30)

        csr = pki.make_csr(pki.new_private_key()).decode()

        def enroll_csr(session: requests.Session, base: str, i: int) -> requests.Response:
            # As elysium-client enrolls: with a CSR (checked in the request, signed later by
            # the control worker; no control worker runs here, so those jobs just queue).
            body = {"token": token, "name": f"csr-{i}", "public_key": random_key(), "csr": csr}
            return session.post(f"{base}/v1/enroll", json=body, timeout=30)

        with api_server(settings, d) as base:
            run_load(base, ca, CLIENT_PROCESSES * THREADS_PER_PROCESS * 4, healthz)  # warm-up
            rounds = []
            for _ in range(ROUNDS):  # each ratio from runs side by side: the machine's own
                # speed moves between rounds (other tenants of the host), not within one
                rounds.append(
                    {
                        "healthz": run_load(base, ca, REQUESTS, healthz),
                        "enroll": run_load(base, ca, REQUESTS, enroll),
                        "enroll_csr": run_load(base, ca, REQUESTS, enroll_csr),
                    }
                )
        r = redis.Redis.from_url(REDIS_URL)
        keys = list(r.scan_iter(f"{prefix}*", count=1000))
        if keys:
            r.delete(*keys)
    for one in rounds:
        rate = one["healthz"]["requests_per_s"]
        one["enroll_to_healthz_ratio"] = round(one["enroll"]["requests_per_s"] / rate, 3)
        one["enroll_csr_to_healthz_ratio"] = round(one["enroll_csr"]["requests_per_s"] / rate, 3)
    # the median round by the enroll ratio, whole: its figures are from the same runs
    middle = sorted(rounds, key=lambda one: one["enroll_to_healthz_ratio"])[len(rounds) // 2]
    health, enrolled, enrolled_csr = middle["healthz"], middle["enroll"], middle["enroll_csr"]
    figures: dict[str, Any] = {
        "enroll": enrolled,
        "healthz": health,
        "enroll_to_healthz_ratio": middle["enroll_to_healthz_ratio"],
        "enroll_csr": enrolled_csr,
        "enroll_csr_to_healthz_ratio": middle["enroll_csr_to_healthz_ratio"],
        "rounds_ratios": [one["enroll_to_healthz_ratio"] for one in rounds],
        "goal_ratio": GOAL_RATIO,
        "server": {
            "workers": 2,
            "worker_class": "gthread",
            "threads": settings.api_threads,
            "tls": True,
        },
        "client_threads": CLIENT_PROCESSES * THREADS_PER_PROCESS,
        "goals": {"enroll_to_healthz_ratio": GOAL_RATIO},
        "setup": {
            "client_processes": CLIENT_PROCESSES,
            "threads_per_process": THREADS_PER_PROCESS,
            "connections": CLIENT_PROCESSES * THREADS_PER_PROCESS,
            "keep_alive": True,
            "sends": {
                "healthz": "GET /healthz",
                "enroll": "POST /v1/enroll {token, name, public_key}, one token",
                "enroll_csr": "POST /v1/enroll {token, name, public_key, csr}, one token",
            },
        },
    }
    write_result("api", figures)


if __name__ == "__main__":
    main()

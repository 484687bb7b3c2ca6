"""A peer's daemon following its network live, end to end: the real API (TLS), control and hub
workers, a hub namespace and a peer namespace on one underlay, and ``elysium-client run``.

Two latencies that the tests only bound generously (a busy machine must not fail a test):
- ``subnet_routed_*_s``: from the API's answer to ``POST /v1/enroll`` of another peer with a
  subnet, until the follower's namespace has the route to that subnet (long-poll wake-up,
  config read, route added). Goal: max ≤ 2 s.
- ``key_rotation_resume_*_s``: from the end of a hub key rotation job until a ping from the
  peer to the hub's tunnel address answers again (probes of 0.3 s, so the figure is measured
  rather than spent in ping's own 1 s time-out). Goal: max ≤ 3 s.
Run: ``.venv/bin/python -m bench.client`` (writes bench/results/client.json).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import requests

from bench.api import api_server, tls_settings
from bench.scaffold import (
    elysium_processes,
    percentile,
    random_key,
    size,
    stop_process,
    throwaway_database,
    throwaway_redis_prefix,
    throwaway_underlay,
    wait_until,
    write_result,
)
from dataplane.wireguard_go import WireguardGo
from db.tokens import create_api_token

UNDERLAY = "198.18.77"
HUB = "hub-a"
NETWORK = "10.77.0.0/24"
HUB_TUNNEL_IP = "10.77.0.1"
JOINS = size(full=20, small=2)
ROTATIONS = size(full=10, small=1)


class Api:
    """Admin calls to the benchmark's API."""

    def __init__(self, url: str, ca: Path, token: str) -> None:
        self.url, self.ca, self.token = url, ca, token

    def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        resp = requests.request(
            method,
            self.url + path,
            verify=str(self.ca),
            timeout=40,
            headers={"Authorization": f"Bearer {self.token}"},
            **kwargs,
        )
        if resp.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {resp.status_code} {resp.text}")
        return dict(resp.json())

    def wait_job(self, job_id: str) -> dict[str, Any]:
        job = self.call("GET", f"/v1/jobs/{job_id}", params={"wait": 30})
        if job["status"] != "succeeded":
            raise RuntimeError(f"job {job_id} ended {job['status']}: {job.get('error')}")
        return job

    def token_for(self, interface_id: int, subnets: tuple[str, ...] = ()) -> str:
        body = {"ttl_seconds": 600, "uses": 1, "subnets": list(subnets)}
        path = f"/v1/interfaces/{interface_id}/enrollment-tokens"
        return str(self.call("POST", path, json=body)["token"])


def in_ns(ns: str, *cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True)


def client_env(state: Path) -> dict[str, str]:
    env = {**os.environ, "ELYSIUM_CLIENT_STATE_DIR": str(state), "ELYSIUM_WG_DRIVER": "userspace"}
    return env | {"WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD": "1"}


def client(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "client", *args],
        env=client_env(state),
        capture_output=True,
        text=True,
        timeout=120,
    )


@contextlib.contextmanager
def follower(state: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``elysium-client run`` for the peer in ``state``; stopped by its pid, tunnel taken down."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "client", "run", "--wait", "20"],
            env=client_env(state),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        stop_process(proc)
        client(state, "down")


def pings(ns: str) -> bool:
    return in_ns(ns, "ping", "-c1", "-W0.3", "-n", HUB_TUNNEL_IP).returncode == 0


def subnet_routed(api: Api, interface_id: int, peer_ns: str) -> list[float]:
    """Seconds from each other peer's enrollment with a subnet to the follower's route."""
    took = []
    for i in range(JOINS):
        subnet = f"10.200.{i}.0/24"
        token = api.token_for(interface_id, (subnet,))
        body = {"token": token, "name": f"site{i}", "public_key": random_key()}
        answered = api.call("POST", "/v1/enroll", json={**body, "subnets": [subnet]})
        t = time.monotonic()
        wait_until(
            lambda s=subnet: in_ns(peer_ns, "ip", "route", "show", s).stdout.strip(),
            30,
            f"the route to {subnet}",
            every=0.01,
        )
        took.append(time.monotonic() - t)
        api.wait_job(answered["job_id"])
    return took


def rotation_resumes(api: Api, interface_id: int, peer_ns: str) -> list[float]:
    """Seconds from each hub key rotation's end to the first answered ping through it."""
    took = []
    for _ in range(ROTATIONS):
        job = api.call("POST", f"/v1/interfaces/{interface_id}/rotate-key")
        api.wait_job(job["job_id"])
        t = time.monotonic()
        wait_until(lambda: pings(peer_ns), 30, "the ping through the new key", every=0.01)
        took.append(time.monotonic() - t)
    return took


def hub_interface(
    api: Api,
    start: Callable[[str, list[str]], None],
    hub: str,
    endpoint: str,
    hub_ns: str,
    state_dir: Path,
    network: str,
) -> int:
    """Declare ``hub``, start its worker in ``hub_ns`` and add its ``wg0`` on ``network``; the
    interface's id once its job has succeeded."""
    api.call("POST", "/v1/hubs", json={"name": hub, "endpoint": endpoint})
    start("hub-worker", ["hub-worker", "--hub", hub, "--netns", hub_ns,
                         "--state-dir", str(state_dir)])  # fmt: skip
    body = {"name": "wg0", "network": network, "listen_port": 51820, "keepalive": 5}
    created = api.call("POST", f"/v1/hubs/{hub}/interfaces", json=body)
    api.wait_job(created["job_id"])
    return int(created["interface_id"])


def run(url: str, namespaces: list[str], d: Path) -> dict[str, Any]:
    hub_ns, peer_ns = namespaces
    with throwaway_redis_prefix() as prefix:
        settings = tls_settings(url, d, prefix, wg_driver="userspace", ca_key=d / "ca.key")
        with psycopg.connect(url, autocommit=True) as conn:
            _, token = create_api_token(conn, "bench-client", "admin", 3600, "bench")
        with api_server(settings, d) as api_url, elysium_processes(settings, d) as start:
            api = Api(api_url, d / "ca.pem", token)
            start("control-worker", ["control-worker", "--concurrency", "1"])
            hub_state = d / "hub"
            interface_id = hub_interface(
                api, start, HUB, f"{UNDERLAY}.1", hub_ns, hub_state, NETWORK
            )
            peer = d / "peer"
            enrolled = client(peer, "enroll", "--server", api_url, "--ca", str(d / "ca.pem"),
                              "--token", api.token_for(interface_id), "--name", "follower",
                              "--netns", peer_ns)  # fmt: skip
            if enrolled.returncode != 0:
                raise RuntimeError(f"enroll: {enrolled.stderr.strip()}")
            try:
                with follower(peer, d / "client-run.log"):
                    wait_until(lambda: pings(peer_ns), 60, "the tunnel to the hub")
                    routed = subnet_routed(api, interface_id, peer_ns)
                    resumed = rotation_resumes(api, interface_id, peer_ns)
            finally:
                devices = WireguardGo(hub_state / "hubs" / HUB, hub_ns)
                for name in devices.names():
                    devices.stop(name)
    return {
        "joins": JOINS,
        "subnet_routed_p50_s": round(percentile(routed, 0.5), 3),
        "subnet_routed_max_s": round(max(routed), 3),
        "rotations": ROTATIONS,
        "key_rotation_resume_p50_s": round(percentile(resumed, 0.5), 3),
        "key_rotation_resume_max_s": round(max(resumed), 3),
    }


def main() -> None:
    d = Path(tempfile.mkdtemp(prefix="ely-bc-", dir="/tmp"))
    try:
        with throwaway_database() as url, throwaway_underlay(2, UNDERLAY) as namespaces:
            figures = run(url, namespaces, d)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    figures["goals"] = {"subnet_routed_max_s": 2.0, "key_rotation_resume_max_s": 3.0}
    write_result("client", figures)


if __name__ == "__main__":
    main()

"""The real stack a peer talks to: the API tests' gunicorn over TLS (private CA), a hub worker
in a hub namespace, and the namespace topology; plus ``elysium-client`` run as a process.

Everything is started by these fixtures and stopped by its own pid; namespaces are ours.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests

from dataplane.wireguard_go import WireguardGo
from db.tokens import create_api_token
from elysium.settings import Settings
from tests.api.conftest import Pki
from tests.conftest import TABLES
from tests.netns import Topology, can_run
from tests.stack import Process, elysium_command, settings_env

HUB = "hub-a"
NETWORK = "10.77.0.0/24"
HUB_TUNNEL_IP = "10.77.0.1"
LISTEN_PORT = 51820


@dataclass
class ApiServer:
    url: str
    ca: Path
    admin_token: str

    def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        resp = requests.request(
            method,
            self.url + path,
            verify=str(self.ca),
            timeout=40,
            headers={"Authorization": f"Bearer {self.admin_token}"},
            **kwargs,
        )
        assert resp.status_code < 400, resp.text
        return dict(resp.json())

    def wait_job(self, job_id: str) -> dict[str, Any]:
        job = self.call("GET", f"/v1/jobs/{job_id}", params={"wait": 30})
        assert job["status"] == "succeeded", job
        return job

    def enrollment_token(self, interface_id: int, uses: int = 1) -> str:
        body = {"ttl_seconds": 600, "uses": uses}
        return str(
            self.call("POST", f"/v1/interfaces/{interface_id}/enrollment-tokens", json=body)[
                "token"
            ]
        )


@dataclass
class HubStack:
    api: ApiServer
    topology: Topology
    interface_id: int
    hub_state_dir: Path


@pytest.fixture(scope="module")
def api_server(api_url: str, api_pki: Pki, database_url: str) -> ApiServer:
    """The API tests' server (gunicorn over TLS), an empty database and an admin token."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
        _, admin_token = create_api_token(conn, "client-tests", "admin", 3600, "tests")
    return ApiServer(api_url, api_pki.ca, admin_token)


@pytest.fixture(scope="module")
def hub_stack(
    api_server: ApiServer,
    api_pki: Pki,
    settings: Settings,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[HubStack]:
    """Hub ``hub-a`` with ``wg0`` (10.77.0.0/24) in its namespace, ready for peers, and the
    control worker that signs their certificates (the one process holding the CA key)."""
    reason = can_run()
    if reason:
        pytest.fail(f"network namespaces: {reason}")
    topo = Topology(peer_count=2).create()
    state_dir = tmp_path_factory.mktemp("hub")
    worker: Process | None = None
    control: Process | None = None
    try:
        control = Process(
            elysium_command("control-worker", "--concurrency", "1"),
            settings_env(
                settings, ELYSIUM_TLS_CA=str(api_pki.ca), ELYSIUM_CA_KEY=str(api_pki.ca_key)
            ),
            state_dir / "control-worker.log",
        )
        api_server.call("POST", "/v1/hubs", json={"name": HUB, "endpoint": topo.hub_ip})
        worker = Process(
            elysium_command(
                "hub-worker", "--hub", HUB, "--netns", topo.hub, "--state-dir", str(state_dir)
            ),
            settings_env(settings),
            state_dir / "hub-worker.log",
        )
        created = api_server.call(
            "POST",
            f"/v1/hubs/{HUB}/interfaces",
            json={
                "name": "wg0",
                "network": NETWORK,
                "listen_port": LISTEN_PORT,
                "keepalive": 5,
            },
        )
        api_server.wait_job(created["job_id"])
        yield HubStack(api_server, topo, int(created["interface_id"]), state_dir / "hubs" / HUB)
    finally:
        for process in (control, worker):
            if process is not None:
                process.stop()
        stop_devices(state_dir / "hubs" / HUB, topo.hub)
        topo.destroy()


def stop_devices(state_dir: Path, netns: str) -> None:
    """Stop the wireguard-go processes a driver started under ``state_dir`` (by pidfile)."""
    processes = WireguardGo(state_dir, netns)
    for name in processes.names():
        processes.stop(name)


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


def run_client(
    *args: str, state_dir: Path, settings: Settings | None = None, timeout: float = 120
) -> Run:
    """``elysium-client ARGS`` as a process (the real entry point, exit code and output)."""
    env = settings_env(settings or Settings.from_env({}, wg_driver="userspace"))
    env["ELYSIUM_CLIENT_STATE_DIR"] = str(state_dir)
    env["COLUMNS"] = "120"
    done = subprocess.run(
        [sys.executable, "-m", "client", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Run(done.returncode, done.stdout, done.stderr)

"""`make up` brings the whole stack up with a demo tunnel; again changes nothing; `make down`
leaves no namespace, link or process of the demo behind."""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import psycopg
import pytest
import requests

from elysium import http_retry
from elysium.settings import Settings
from tests.conftest import TABLES

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def alive(pid: int) -> bool:
    """Running, or still exiting: a killed multi-threaded process (wireguard-go) shows its
    leader as a zombie while its other threads still exit (closing its TUN device)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        threads = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z" or threads != [str(pid)]


def load_demo_part(name: str) -> ModuleType:
    """One of the demo's modules (``deploy/dev/<name>.py``), which import each other by their
    plain names as they do when ``demo.py`` runs as a script."""
    folder = ROOT / "deploy" / "dev"
    if str(folder) not in sys.path:
        sys.path.append(str(folder))
    spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


# A process whose leader thread has exited (a zombie in /proc) while another thread still
# runs: what a killed wireguard-go looks like while its last threads tear its device down.
LEADER_GONE = """
import ctypes, threading, time
threading.Thread(target=time.sleep, args=(300,)).start()
print("ready", flush=True)
ctypes.CDLL(None).pthread_exit(None)
"""


@pytest.fixture
def leader_gone() -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([sys.executable, "-c", LEADER_GONE], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 10
        while Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_a_process_is_alive_until_its_last_thread_has_exited(
    leader_gone: subprocess.Popen[str],
) -> None:
    processes = load_demo_part("demo_processes")
    assert processes.process_alive(leader_gone.pid)
    assert processes.wait_gone([leader_gone.pid], timeout=0.3) == [leader_gone.pid]
    leader_gone.kill()
    assert processes.wait_gone([leader_gone.pid], timeout=10) == []
    assert leader_gone.wait(timeout=10) == -signal.SIGKILL


@pytest.fixture
def demo_env(settings: Settings, clean_db: str) -> Iterator[dict[str, str]]:
    name = f"t{secrets.token_hex(3)}"
    state = Path(tempfile.mkdtemp(prefix="ely-demo-", dir="/tmp"))
    env = {
        **os.environ,
        "ELYSIUM_DEMO_NAME": name,
        "ELYSIUM_DEMO_DIR": str(state),
        "ELYSIUM_DEMO_API_PORT": str(free_port()),
        "ELYSIUM_DATABASE_URL": settings.database_url,
        "ELYSIUM_REDIS_URL": settings.redis_url,
        "ELYSIUM_REDIS_KEY_PREFIX": f"{settings.redis_key_prefix}demo:",
        "ELYSIUM_WG_DRIVER": "userspace",
    }
    try:
        yield env
    finally:
        subprocess.run(["make", "-s", "down"], cwd=ROOT, env=env, capture_output=True, timeout=120)
        shutil.rmtree(state, ignore_errors=True)


def make(target: str, env: dict[str, str]) -> str:
    """Run a make target; it must succeed. Returns its output."""
    done = subprocess.run(
        ["make", "-s", target], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def recorded_pids(state: Path) -> list[int]:
    """Every pid the demo wrote down: its services and the wireguard-go devices."""
    return [int(p.read_text().split()[0]) for p in state.rglob("*.pid")]


def test_make_up_pings_through_the_tunnel_and_make_down_leaves_nothing(
    demo_env: dict[str, str],
) -> None:
    state = Path(demo_env["ELYSIUM_DEMO_DIR"])
    name = demo_env["ELYSIUM_DEMO_NAME"]
    out = make("up", demo_env)
    assert "the demo peer pings 10.99.0.1 through wg0" in out
    token = state / "admin.token"
    assert token.stat().st_mode & 0o777 == 0o600
    url = f"https://127.0.0.1:{demo_env['ELYSIUM_DEMO_API_PORT']}"
    ready = requests.get(f"{url}/readyz", verify=str(state / "pki" / "ca.pem"), timeout=10)
    assert ready.status_code == 200
    assert f"dashboard      {url}/ui/" in out and "sign in by pasting the admin token" in out
    ping = subprocess.run(
        ["ip", "netns", "exec", f"ely-{name}-peer", "ping", "-c1", "-W2", "10.99.0.1"],
        capture_output=True,
    )
    assert ping.returncode == 0

    pids = recorded_pids(state)
    assert len(pids) >= 6 and all(alive(p) for p in pids)  # 4 services, 2 wireguard-go
    again = make("up", demo_env)
    assert "started" not in again and "enrolled" not in again
    assert sorted(recorded_pids(state)) == sorted(pids)

    make("down", demo_env)
    left = {p: Path(f"/proc/{p}/cmdline").read_bytes() for p in pids if alive(p)}
    assert left == {}
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"ely-{name}-" not in namespaces
    make("down", demo_env)  # twice is fine


def pings(name: str) -> bool:
    ping = subprocess.run(
        ["ip", "netns", "exec", f"ely-{name}-peer", "ping", "-c1", "-W2", "10.99.0.1"],
        capture_output=True,
    )
    return ping.returncode == 0


def nothing_left(name: str, pids: list[int]) -> None:
    left = {p: Path(f"/proc/{p}/cmdline").read_bytes() for p in pids if alive(p)}
    assert left == {}
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"ely-{name}-" not in namespaces


@pytest.mark.timeout(600)
def test_up_adopts_the_hub_and_wg0_the_database_has_when_the_state_dir_is_lost(
    demo_env: dict[str, str],
) -> None:
    """A second checkout (or a lost .state/demo) finds the demo's hub and wg0 in the database:
    it adopts them instead of failing with network_overlap, and its old peer is removed."""
    state = Path(demo_env["ELYSIUM_DEMO_DIR"])
    name = demo_env["ELYSIUM_DEMO_NAME"]
    make("up", demo_env)
    make("down", demo_env)
    shutil.rmtree(state)  # the checkout's state: PKI, admin token, client, pid files

    out = make("up", demo_env)
    assert "the demo peer pings 10.99.0.1 through wg0" in out and pings(name)
    assert "removed 1 demo peer(s) whose client state was lost" in out
    assert "creating wg0" not in out and "has wg0" not in out  # adopted, not created


@pytest.mark.timeout(600)
def test_up_replaces_a_refused_admin_token_and_re_enrolls_a_peer_the_database_lost(
    demo_env: dict[str, str], clean_db: str
) -> None:
    """After `make clean` in another checkout (the same database emptied), this checkout's
    saved admin token and enrollment are unknown: up makes a new token and enrolls again."""
    state = Path(demo_env["ELYSIUM_DEMO_DIR"])
    name = demo_env["ELYSIUM_DEMO_NAME"]
    make("up", demo_env)
    old_token = (state / "admin.token").read_text()
    make("down", demo_env)
    with psycopg.connect(clean_db, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")

    out = make("up", demo_env)
    assert "the saved admin token was refused (token_invalid)" in out
    assert "enrolling it again" in out
    assert "the demo peer pings 10.99.0.1 through wg0" in out and pings(name)
    token = state / "admin.token"
    assert token.read_text() != old_token and token.stat().st_mode & 0o777 == 0o600


def test_down_returns_only_when_every_recorded_process_has_exited(
    demo_env: dict[str, str], leader_gone: subprocess.Popen[str]
) -> None:
    """Processes are waited for by pid until their last thread is gone: a zombie leader whose
    threads still run (a wireguard-go closing its device) is not yet gone."""
    state = Path(demo_env["ELYSIUM_DEMO_DIR"])
    name = demo_env["ELYSIUM_DEMO_NAME"]
    make("up", demo_env)
    # One more device process the demo recorded, outside its namespaces, leader already gone.
    device = state / "server" / "hubs" / f"{name}-hub" / "netns" / "host" / "wg9.pid"
    device.parent.mkdir(parents=True, exist_ok=True)
    device.write_text(f"{leader_gone.pid}\n")
    pids = recorded_pids(state)
    assert leader_gone.pid in pids and all(alive(p) for p in pids)

    make("down", demo_env)
    nothing_left(name, pids)


@pytest.mark.timeout(600)
def test_up_with_two_api_replicas_serves_through_haproxy_and_survives_one_killed(
    demo_env: dict[str, str],
) -> None:
    env = {**demo_env, "ELYSIUM_DEMO_API_REPLICAS": "2"}
    state = Path(env["ELYSIUM_DEMO_DIR"])
    port = int(env["ELYSIUM_DEMO_API_PORT"])
    out = make("up", env)
    assert "the demo peer pings 10.99.0.1 through wg0" in out
    assert f"api-1 127.0.0.1:{port + 1}, api-2 127.0.0.1:{port + 2} behind HAProxy" in out
    ca = str(state / "pki" / "ca.pem")
    for replica in (port + 1, port + 2):  # each its own gunicorn, answering on its own
        assert requests.get(f"https://127.0.0.1:{replica}/readyz", verify=ca, timeout=10).ok
    api_1 = int((state / "run" / "api-1.pid").read_text())

    os.killpg(api_1, signal.SIGKILL)  # the replica and its workers, as when its host goes
    token = (state / "admin.token").read_text().strip()
    headers = {"Authorization": f"Bearer {token}"}
    for _ in range(10):  # fresh connections, ridden through as elysium and elysium-client do
        r = http_retry.request(
            requests.Session(), "GET", f"https://127.0.0.1:{port}/v1/hubs",
            headers=headers, verify=ca, timeout=10,
        )  # fmt: skip
        assert r.status_code == 200
    assert pings(env["ELYSIUM_DEMO_NAME"])

    pids = recorded_pids(state)
    make("down", env)
    nothing_left(env["ELYSIUM_DEMO_NAME"], pids)

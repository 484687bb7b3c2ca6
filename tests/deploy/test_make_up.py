"""`make up` brings the whole stack up with a demo tunnel; again changes nothing; `make down`
leaves no namespace, link or process of the demo behind."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from elysium.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def alive(pid: int) -> bool:
    """Running and not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


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

"""What every benchmark stands on: a throwaway database and namespace, keys, result files."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import platform
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

from db.migrate import migrate

ADMIN_URL = os.environ.get(
    "ELYSIUM_BENCH_ADMIN_URL", "postgresql://elysium:elysium@127.0.0.1:5432/elysium"
)
RESULTS_DIR = Path(__file__).parent / "results"


@contextlib.contextmanager
def throwaway_database() -> Iterator[str]:
    """A migrated database of the benchmark's own, dropped afterwards."""
    name = f"elysium_bench_{secrets.token_hex(4)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = f"{ADMIN_URL.rpartition('/')[0]}/{name}"
        migrate(url)
        yield url
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def throwaway_namespace() -> Iterator[str]:
    """A fresh network namespace; whatever runs in it at the end is ours and is killed."""
    ns = f"ely-bench-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        yield ns
    finally:
        pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
        for pid in pids.stdout.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", ns], check=False)


def random_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def write_result(name: str, figures: dict[str, Any]) -> Path:
    """Write ``bench/results/<name>.json`` with the machine it ran on, and print it."""
    RESULTS_DIR.mkdir(exist_ok=True)
    figures = {
        **figures,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    }
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
    return path

"""What every benchmark stands on: a throwaway database, namespaces (one, or hubs on a bridged
underlay), Elysium processes, keys, result files, and its size.

Two environment variables, read here only, let ``make test`` run every benchmark small
(``tests/bench/``) without touching the committed figures:

- ``ELYSIUM_BENCH_SIZE=small``: each benchmark takes its sizes from ``size(full, small)``: a few
  peers, one repetition. Anything else (or unset): the full sizes of ``make bench``.
- ``ELYSIUM_BENCH_RESULTS=<dir>``: results (and the summary) go there instead of
  ``bench/results/``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import platform
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import redis

from db.migrate import drop_database, migrate
from elysium.settings import Settings

ADMIN_URL = os.environ.get(
    "ELYSIUM_BENCH_ADMIN_URL", "postgresql://elysium:elysium@127.0.0.1:5432/elysium"
)
REDIS_URL = os.environ.get("ELYSIUM_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
SMALL = os.environ.get("ELYSIUM_BENCH_SIZE", "full") == "small"
COMMITTED_RESULTS_DIR = Path(__file__).parent / "results"
RESULTS_DIR = Path(os.environ.get("ELYSIUM_BENCH_RESULTS") or COMMITTED_RESULTS_DIR)


def size(full: int, small: int) -> int:
    """``full`` for ``make bench``; ``small`` when ``ELYSIUM_BENCH_SIZE=small`` (``make test``)."""
    return small if SMALL else full


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
        drop_database(ADMIN_URL, name)


@contextlib.contextmanager
def throwaway_redis_prefix() -> Iterator[str]:
    """A Redis key prefix of the benchmark's own; its keys are deleted afterwards."""
    prefix = f"elybench{secrets.token_hex(3)}:"
    try:
        yield prefix
    finally:
        r = redis.Redis.from_url(REDIS_URL)
        keys = list(r.scan_iter(f"{prefix}*", count=1000))
        if keys:
            r.delete(*keys)
        r.close()


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


@contextlib.contextmanager
def throwaway_underlay(hubs: int, prefix: str = "198.18.0") -> Iterator[list[str]]:
    """``hubs`` namespaces on a bridge in an underlay namespace, hub ``i`` (from 1) at
    ``<prefix>.i/24`` on its ``eth0``. At the end whatever runs in them (ours: they are
    made here) gets SIGTERM, then SIGKILL, and they are deleted once it is gone."""
    sfx = secrets.token_hex(3)
    underlay = f"ely-bu-{sfx}"
    names = [f"ely-bh{i}-{sfx}" for i in range(1, hubs + 1)]
    made: list[str] = []
    try:
        for ns in (underlay, *names):
            _ip(f"netns add {ns}")
            made.append(ns)
            _ip(f"-n {ns} link set lo up")
        _ip(f"-n {underlay} link add br0 type bridge")
        _ip(f"-n {underlay} link set br0 up")
        for i, ns in enumerate(names, 1):
            _ip(f"-n {underlay} link add vh{i} type veth peer name eth0 netns {ns}")
            _ip(f"-n {underlay} link set vh{i} master br0 up")
            _ip(f"-n {ns} addr add {prefix}.{i}/24 dev eth0")
            _ip(f"-n {ns} link set eth0 up")
        yield names
    finally:
        for ns in reversed(made):
            _end_namespace(ns)


def _ip(args: str) -> None:
    subprocess.run(["ip", *args.split()], check=True, capture_output=True, timeout=30)


def _ns_pids(ns: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def _end_namespace(ns: str) -> None:
    for sig, wait_s in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
        pids = _ns_pids(ns)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while pids and time.monotonic() < deadline:
            time.sleep(0.05)
            pids = _ns_pids(ns)
        if not pids:
            break
    subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


@contextlib.contextmanager
def elysium_processes(settings: Settings, logs: Path) -> Iterator[Callable[[str, list[str]], None]]:
    """``start(name, args)`` runs ``python -m cli *args --loglevel WARNING`` with ``settings``,
    logging to ``logs/<name>.log``; at the end each is stopped by its own pid."""
    env = {**os.environ, **settings.to_env(), "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD": "1"}
    started: list[subprocess.Popen[bytes]] = []

    def start(name: str, args: list[str]) -> None:
        with open(logs / f"{name}.log", "ab") as log:
            cmd = [sys.executable, "-m", "cli", *args, "--loglevel", "WARNING"]
            started.append(
                subprocess.Popen(
                    cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
            )

    try:
        yield start
    finally:
        for proc in started:
            proc.send_signal(signal.SIGTERM)
        for proc in started:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """SIGTERM to a process a benchmark started (by its pid), SIGKILL if it lingers."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_until(check: Callable[[], object], timeout: float, what: str, every: float = 0.05) -> None:
    """Poll ``check`` until it returns something truthy; TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def random_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def write_result(name: str, figures: dict[str, Any]) -> Path:
    """Write ``<name>.json`` into ``RESULTS_DIR`` with the machine it ran on, and print it."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
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

"""API replicas behind HAProxy, as a fault test runs them, and the ledger of refused writes.

Each replica is a separate gunicorn master (``elysium api``) on its own loopback port and
state directory, as on two hosts; HAProxy (TCP mode, elysium/haproxy.py) listens in front.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from elysium.haproxy import haproxy_config
from elysium.settings import Settings
from tests.api.conftest import Pki, free_port, start_api
from tests.stack import Process, wait_for


@dataclass
class Replicas:
    """The replicas (``processes[i]`` serves ``addresses[i]``) and their balancer."""

    processes: list[Process]
    addresses: list[str]
    balancer: Process
    url: str


def start_replicas(
    settings: Settings, pki: Pki, tmp: Path, state_dir: Path, count: int, ready: bool = True
) -> Replicas:
    """``count`` API replicas and HAProxy in front; answers once /readyz passes through it
    (``ready``), or /healthz."""
    processes: list[Process] = []
    addresses: list[str] = []
    try:
        for i in range(1, count + 1):
            port = free_port()
            server, _ = start_api(
                settings,
                pki,
                tmp / f"api{i}.log",
                port,
                ELYSIUM_STATE_DIR=str(state_dir / f"api{i}"),
            )
            processes.append(server)
            addresses.append(f"127.0.0.1:{port}")
        port = free_port()
        config = tmp / "haproxy.cfg"
        config.write_text(haproxy_config(f"127.0.0.1:{port}", addresses, pki.ca))
        balancer = Process(
            ["haproxy", "-db", "-f", str(config)], {"PATH": "/usr/sbin:/usr/bin:/bin"},
            tmp / "haproxy.log",
        )  # fmt: skip
        processes.append(balancer)
        url = f"https://127.0.0.1:{port}"
        probe = "/readyz" if ready else "/healthz"
        wait_for(
            lambda: requests.get(f"{url}{probe}", verify=str(pki.ca), timeout=2).ok,
            30,
            f"the API to answer {probe} through HAProxy",
        )
    except BaseException:
        for proc in reversed(processes):
            proc.stop()
        raise
    return Replicas(processes[:-1], addresses, balancer, url)


def group_rss_mb(pgid: int) -> float:
    """Resident memory of every process in process group ``pgid`` (a replica: its gunicorn
    master and workers), in MB."""
    total_kb = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid:  # the process group, after state and ppid
                continue
            status = (stat.parent / "status").read_text()
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
        total_kb += sum(
            int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")
        )
    return round(total_kb / 1024, 1)


@dataclass
class WriteLog:
    """When writes were answered and when they were refused (a dropped connection, a 5xx)."""

    events: list[tuple[float, bool]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, ok: bool) -> None:
        with self._lock:
            self.events.append((time.monotonic(), ok))

    @property
    def refused(self) -> int:
        return sum(1 for _, ok in self.events if not ok)

    def longest_refusal(self) -> float:
        """The longest stretch from a refused write to the next answered one (seconds)."""
        longest, since = 0.0, None
        for at, ok in sorted(self.events):
            if not ok and since is None:
                since = at
            elif ok and since is not None:
                longest, since = max(longest, at - since), None
        if since is not None:  # never answered again
            return float("inf")
        return longest

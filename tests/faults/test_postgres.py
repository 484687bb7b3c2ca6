"""PostgreSQL stopped and started under a running stack: /readyz says so, everything recovers.

The database is a private cluster of this test (``initdb`` in a temp dir, run as the
``postgres`` OS user on a free loopback port), never the shared 15/main; removed afterwards.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from db.migrate import migrate
from tests.api.conftest import free_port
from tests.faults.conftest import PG_BIN, FaultStack, SecretLedger

pytestmark = pytest.mark.netns


# From PostgreSQL's start to every API worker serving again: generous (a busy machine is
# slow); how fast the pools reconnect is a figure for bench/, printed below.
RECOVERY_S = 30.0


class PrivateCluster:
    """A throwaway PostgreSQL 15 cluster with an ``elysium`` superuser (trust, loopback)."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="ely-pg-", dir="/tmp"))
        shutil.chown(self.dir, "postgres", "postgres")
        self.port = free_port()
        self.log = self.dir / "postgres.log"
        self.url = f"postgresql://elysium@127.0.0.1:{self.port}/elysium"

    def _as_postgres(self, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True, timeout=60
        )

    def create(self) -> None:
        data = str(self.dir / "data")
        self._as_postgres(str(PG_BIN / "initdb"), "-D", data, "-U", "elysium", "--auth=trust")
        self.start()
        admin = f"postgresql://elysium@127.0.0.1:{self.port}/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("CREATE DATABASE elysium")
        migrate(self.url)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
        self._as_postgres(
            str(PG_BIN / "pg_ctl"), "-D", str(self.dir / "data"), "-l", str(self.log),
            "-o", options, "-w", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._as_postgres(
            str(PG_BIN / "pg_ctl"), "-D", str(self.dir / "data"), "-m", mode, "-w", "stop"
        )

    def remove(self, keep_log: Path) -> None:
        if (self.dir / "data" / "postmaster.pid").exists():
            self.stop("immediate")
        if self.log.exists():
            shutil.copy(self.log, keep_log)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def private_cluster(tmp_path: Path, secret_ledger: SecretLedger) -> Iterator[PrivateCluster]:
    cluster = PrivateCluster()
    secret_ledger.logs.add(tmp_path / "postgres.log")
    try:
        cluster.create()
        yield cluster
    finally:
        cluster.remove(keep_log=tmp_path / "postgres.log")


def test_postgres_down_makes_readyz_503_and_everything_recovers_without_a_restart(
    private_cluster: PrivateCluster, make_stack: Callable[..., FaultStack]
) -> None:  # the cluster first: it must outlive the stack, whose teardown dumps it
    stack = make_stack(
        database_url=private_cluster.url,
        janitor_interval_s=0.5,
        job_requeue_after_s=2.0,
        beat_lease_s=2.0,
    )
    stack.start_api()
    stack.start_hub()
    stack.start_control()
    stack.declare_interface()
    token = stack.enrollment_token(uses=40)
    before = stack.enroll(3, token)
    assert stack.wait_jobs(list(before.values()), 30) == {"succeeded": 3}
    anonymous = stack.client()
    # Jobs whose messages reach the hub worker while the database is away.
    assert stack.hub_worker is not None
    os.kill(stack.hub_worker.pid, signal.SIGSTOP)
    try:
        in_flight = stack.enroll(20, token)
        private_cluster.stop()
    finally:
        os.kill(stack.hub_worker.pid, signal.SIGCONT)
    stopped = time.monotonic()
    r = anonymous.get("/readyz")
    readyz_s = time.monotonic() - stopped
    assert r.status_code == 503, r.text
    assert r.json()["down"] == ["postgresql"]
    refused = anonymous.post(
        "/v1/enroll", json={"token": token, "name": "while-down", "public_key": "x" * 43 + "="}
    )
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "database_unavailable"
    refused_s = time.monotonic() - stopped - readyz_s
    time.sleep(8)  # heartbeats, beat's lease and the pools all meet the outage
    private_cluster.start()
    down_s = time.monotonic() - stopped

    # Right away, 8 connections (both gunicorn workers) enroll: every pool reconnects at once.
    after = stack.enroll(8, token, threads=8)
    recovered_s = time.monotonic() - stopped - down_s
    assert recovered_s < RECOVERY_S
    assert anonymous.get("/readyz").status_code == 200
    assert stack.wait_jobs(list(after.values()), 30) == {"succeeded": 8}
    assert stack.wait_jobs(list(in_flight.values()), 60) == {"succeeded": 20}
    assert all(p.alive() for p in stack.processes), "a process died with the database"
    stack.assert_converged(set(before) | set(in_flight) | set(after))
    print(
        f"\npostgres down {down_s:.1f}s (/readyz 503 in {readyz_s:.1f}s, enroll 503 in"
        f" {refused_s:.1f}s); 8 enrollments accepted {recovered_s:.1f}s after the start"
    )

"""PostgreSQL stopped and started under a running stack: /readyz says so, everything recovers.

The database is a private cluster of this test (``initdb`` in a temp dir, run as the
``postgres`` OS user on a free loopback port), never the shared 15/main; removed afterwards.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.faults.conftest import FaultStack, SecretLedger
from tests.faults.postgres import PrivateCluster

pytestmark = pytest.mark.netns


# From PostgreSQL's start to every API worker serving again: generous (a busy machine is
# slow); how fast the pools reconnect is a figure for bench/, printed below.
RECOVERY_S = 30.0


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

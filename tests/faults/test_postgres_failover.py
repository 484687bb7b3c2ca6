"""The PostgreSQL primary stopped and its synchronous standby promoted during a burst.

Every process connects with one multi-host URL (``host=primary,standby``,
``target_session_attrs=read-write``): its pool and its LISTEN connection find the promoted
standby by themselves, nothing is restarted. Synchronous replication means a job the API
acknowledged was on the standby before the answer left: none is lost.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
import requests

from tests.faults.conftest import Burst, FaultStack, SecretLedger
from tests.faults.figures import HA_POOL_MAX, burst_size
from tests.faults.postgres import StandbyPair
from tests.faults.tunnel_ping import TunnelPing

pytestmark = pytest.mark.netns

BURST = burst_size(600)
UNAVAILABLE_MAX_S = 15.0  # the goal for a promotion


@pytest.fixture
def standby_pair(tmp_path: Path, secret_ledger: SecretLedger) -> Iterator[StandbyPair]:
    pair = StandbyPair()
    secret_ledger.logs.update(
        {tmp_path / "postgres-primary.log", tmp_path / "postgres-standby.log"}
    )
    try:
        pair.create()
        yield pair
    finally:
        pair.remove(keep_logs=tmp_path)


def test_a_burst_across_a_standby_promotion_ends_every_acknowledged_enrollment_once(
    standby_pair: StandbyPair, make_stack: Callable[..., FaultStack], tmp_path: Path
) -> None:  # the pair first: it must outlive the stack, whose teardown dumps it
    stack = make_stack(
        database_url=standby_pair.url,
        janitor_interval_s=0.5,
        job_requeue_after_s=2.0,
        beat_lease_s=2.0,
        db_pool_max=HA_POOL_MAX,
    )
    replicas = stack.start_api_replicas(2)
    stack.start_hub()
    stack.start_control()
    stack.declare_interface()
    token = stack.enrollment_token(uses=BURST + TunnelPing.PEERS)
    tunnel = TunnelPing(stack, token, tmp_path)
    try:
        tunnel.start()
        started = time.monotonic()
        burst = Burst(stack, token, BURST, threads=8, holds=(BURST // 3,), retry_s=40)
        try:
            stack.wait_enrolled(BURST // 12)
            assert burst.running(), "the burst ended before the failover: nothing was tested"
            standby_pair.primary.stop("immediate")  # as a crash: no shutdown checkpoint
            stopped = time.monotonic()
            burst.release()  # posts go on, refused until the standby takes writes
            standby_pair.standby.promote()
            promoted_s = time.monotonic() - stopped
        finally:
            submitted = burst.join()
        statuses = stack.wait_jobs(list(submitted.values()), timeout=90)
        ended_s = time.monotonic() - started
        pinged = tunnel.stop()
    finally:
        tunnel.close()

    unavailable_s = stack.judge(
        "postgres_primary",
        submitted,
        statuses,
        pinged,
        tunnel.public_keys,
        max_attempts=2,
        promote_s=promoted_s,
    )
    # The posts held at BURST // 3 were all made after the stop: they needed the new primary.
    with psycopg.connect(standby_pair.standby.url, autocommit=True) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
    assert unavailable_s <= UNAVAILABLE_MAX_S
    assert requests.get(f"{replicas.url}/readyz", verify=str(stack.pki.ca), timeout=5).ok
    assert all(p.alive() for p in stack.processes), "a process died with the primary"
    print(
        f"\npostgres primary stopped, standby promoted in {promoted_s:.1f}s:"
        f" {stack.writes.refused} attempts refused, writes refused at most {unavailable_s:.1f}s,"
        f" all {BURST} ended at {ended_s:.1f}s,"
        f" {pinged[1]} of {pinged[0]} pings through the hub lost"
    )

"""The Redis primary SIGKILLed during a burst: Sentinel promotes the replica, nothing is lost.

Every process finds the primary through three sentinels (ELYSIUM_REDIS_SENTINELS): Celery's
workers and beat through kombu's ``sentinel://`` transport, the API's publisher and /readyz
through redis-py's Sentinel. A message lost with the primary, or not sent while none was
known, is re-sent by the janitor: PostgreSQL holds every job.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import requests

from elysium.queue import redis_client
from tests.faults.conftest import Burst, FaultStack, SecretLedger
from tests.faults.figures import HA_POOL_MAX, burst_size
from tests.faults.sentinel import SentinelRedis
from tests.faults.tunnel_ping import TunnelPing
from tests.stack import wait_for

pytestmark = pytest.mark.netns

BURST = burst_size(600)
FAILOVER_MAX_S = 10.0


@pytest.fixture
def sentinel_redis(tmp_path: Path, secret_ledger: SecretLedger) -> Iterator[SentinelRedis]:
    work = tmp_path / "redis"
    work.mkdir()
    servers = SentinelRedis(work)
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()
        secret_ledger.logs.update(servers.logs)


def test_a_burst_across_a_redis_failover_ends_every_acknowledged_enrollment_once(
    sentinel_redis: SentinelRedis, make_stack: Callable[..., FaultStack], tmp_path: Path
) -> None:  # the servers first: they must outlive the stack's processes
    stack = make_stack(
        redis_url="redis://unused.invalid:1/0",  # only the sentinels may be asked
        redis_sentinels=sentinel_redis.sentinels,
        redis_master_name=sentinel_redis.master_name,
        janitor_interval_s=0.5,
        job_requeue_after_s=2.0,
        beat_lease_s=2.0,
        db_pool_max=HA_POOL_MAX,
    )
    stack.start_api_replicas(2)
    stack.start_hub()
    stack.start_control()
    stack.declare_interface()
    token = stack.enrollment_token(uses=BURST + TunnelPing.PEERS)
    first_primary = sentinel_redis.primary_port()
    tunnel = TunnelPing(stack, token, tmp_path)
    try:
        tunnel.start()
        started = time.monotonic()
        burst = Burst(stack, token, BURST, threads=8, holds=(BURST // 3,), retry_s=30)
        try:
            stack.wait_enrolled(BURST // 12)
            assert burst.running(), "the burst ended before the kill: nothing was tested"
            sentinel_redis.kill_primary()
            killed = time.monotonic()
            burst.release()  # the rest posts while no primary is known, and after
            wait_for(
                lambda: sentinel_redis.primary_port() != first_primary,
                30,
                "the sentinels to promote the replica",
                interval=0.05,
            )
            failover_s = time.monotonic() - killed
        finally:
            submitted = burst.join()
        statuses = stack.wait_jobs(list(submitted.values()), timeout=90)
        ended_s = time.monotonic() - started
        pinged = tunnel.stop()
    finally:
        tunnel.close()

    unavailable_s = stack.judge(
        "redis_primary",
        submitted,
        statuses,
        pinged,
        tunnel.public_keys,
        max_attempts=2,
        failover_s=failover_s,
    )
    assert failover_s <= FAILOVER_MAX_S
    assert unavailable_s <= FAILOVER_MAX_S
    # Everything talks to the new primary; nothing but the old one was restarted or died.
    client = redis_client(stack.settings)
    try:
        assert client.ping()
    finally:
        client.close()
    assert requests.get(f"{stack.url}/readyz", verify=str(stack.pki.ca), timeout=5).ok
    dead = [f"{' '.join(p.args[-3:])}: {p.log()[-300:]}" for p in stack.processes if not p.alive()]
    assert not dead, dead
    requeued = stack.query("SELECT count(*) AS n FROM audit WHERE action = 'job.requeue'")[0]["n"]
    new_primary = redis.Redis(port=sentinel_redis.primary_port())
    try:
        role = new_primary.info("replication")["role"]
    finally:
        new_primary.close()
    assert role == "master"
    print(
        f"\nredis primary killed: sentinels promoted the replica in {failover_s:.1f}s,"
        f" {requeued} jobs re-sent by the janitor, writes refused at most"
        f" {unavailable_s:.2f}s, all {BURST} ended at {ended_s:.1f}s,"
        f" {pinged[1]} of {pinged[0]} pings through the hub lost"
    )

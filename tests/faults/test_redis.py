"""Redis SIGKILLed and started again during a burst: the janitor re-sends what vanished.

The broker is a private ``redis-server`` of this test on a free loopback port (never the
shared one): killing it loses every message it held, as a crash would.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from elysium.queue import hub_queue
from tests.api.conftest import free_port
from tests.faults.conftest import HUB, Burst, FaultStack, SecretLedger
from tests.stack import Process, wait_for

pytestmark = pytest.mark.netns

BURST = 400
JANITOR_S = 0.5
REQUEUE_AFTER_S = 2.0


class PrivateRedis:
    """A ``redis-server`` on one loopback port, without persistence: a kill loses it all."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log = log
        self.process: Process | None = None

    def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no"]
        self.process = Process(args, {"PATH": "/usr/bin:/bin"}, self.log)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        try:
            wait_for(client.ping, 10, f"redis-server on port {self.port}")
        finally:
            client.close()

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.stop()  # closes its log


@pytest.fixture
def private_redis(tmp_path: Path, secret_ledger: SecretLedger) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis.log")
    secret_ledger.logs.add(server.log)
    server.start()
    try:
        yield server
    finally:
        if server.process is not None:
            server.process.stop()


def test_a_burst_across_a_redis_crash_loses_no_job_and_applies_none_twice(
    private_redis: PrivateRedis, make_stack: Callable[..., FaultStack]
) -> None:  # the broker first: it must outlive the stack's processes
    stack = make_stack(
        redis_url=private_redis.url,
        janitor_interval_s=JANITOR_S,
        job_requeue_after_s=REQUEUE_AFTER_S,
        beat_lease_s=2.0,
    )
    stack.start_api()
    stack.start_hub()
    stack.start_control()
    stack.declare_interface()
    token = stack.enrollment_token(uses=BURST)

    broker = redis.Redis.from_url(private_redis.url)
    hub_list = f"{stack.settings.redis_key_prefix}{hub_queue(HUB)}"
    started = time.monotonic()
    # The burst holds at post 100 and 200, so that it surely runs across the crash.
    burst = Burst(stack, token, BURST, threads=8, holds=(100, 200))
    try:
        stack.wait_enrolled(50)
        # Hold the hub worker so messages pile up in Redis, then lose them with it. It stays
        # held until the janitor has re-sent them: no later message of the burst can sweep the
        # lost jobs up first (a hub takes every open job of an interface in one burst).
        assert stack.hub_worker is not None
        os.kill(stack.hub_worker.pid, signal.SIGSTOP)
        try:
            burst.release()  # posts 100-199: their messages pile up in Redis
            wait_for(lambda: broker.llen(hub_list) >= 20, 30, "messages in Redis")
            lost = broker.llen(hub_list)
            assert burst.running(), "the burst ended before the crash: nothing was tested"
            private_redis.kill()
            killed_at = time.monotonic() - started
            burst.release()  # the rest of the burst posts while the broker is down
            time.sleep(1.5)  # posts go on meanwhile: recorded, not sent
            private_redis.start()
            back_at = time.monotonic() - started
            wait_for(
                lambda: stack.query("SELECT 1 FROM audit WHERE action = 'job.requeue'"),
                30,
                "the janitor to re-send the lost jobs",
            )
        finally:
            os.kill(stack.hub_worker.pid, signal.SIGCONT)
    finally:
        submitted = burst.join()
        broker.close()

    statuses = stack.wait_jobs(list(submitted.values()), timeout=90)
    ended_s = time.monotonic() - started

    assert statuses == {"succeeded": BURST}
    stack.assert_converged(set(submitted))
    stack.assert_applied_once(list(submitted.values()))
    requeued = stack.query("SELECT count(*) AS n FROM audit WHERE action = 'job.requeue'")[0]["n"]
    assert requeued > 0, "no job needed the janitor: the crash lost nothing"
    assert all(p.alive() for p in stack.processes), "a process died with the broker"
    print(
        f"\nredis crash: killed at {killed_at:.1f}s, back at {back_at:.1f}s,"
        f" {lost} messages lost with it, {requeued} jobs re-sent,"
        f" all {BURST} ended at {ended_s:.1f}s"
    )


def test_readyz_names_redis_while_it_is_down_and_recovers_on_the_same_api(
    private_redis: PrivateRedis, make_stack: Callable[..., FaultStack]
) -> None:  # /readyz pings through the publisher's pooled connection: it must reconnect
    stack = make_stack(redis_url=private_redis.url)
    stack.start_api()
    anonymous = stack.client()
    assert anonymous.get("/readyz").json() == {"status": "ok", "down": []}
    private_redis.kill()
    r = anonymous.get("/readyz")
    assert (r.status_code, r.json()) == (503, {"status": "unavailable", "down": ["redis"]})
    private_redis.start()
    wait_for(lambda: anonymous.get("/readyz").status_code == 200, 10, "readyz again")
    assert all(p.alive() for p in stack.processes)

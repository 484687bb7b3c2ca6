"""One of two API replicas behind HAProxy SIGKILLed during a burst: nothing lost, nothing twice.

The burst's clients retry a dropped connection with the same Idempotency-Key (as
elysium-client does): a post the dead replica had recorded but not answered gets its job back
from the other replica instead of a second one. A peer pings the hub through its tunnel all
along: the data plane does not notice.
"""

from __future__ import annotations

import dataclasses
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from elysium.keys import generate_private_key, public_key
from elysium.settings import Settings
from tests.api.conftest import Pki, free_port
from tests.api.ui.conftest import Browser
from tests.faults.balancer import group_rss_mb, start_replicas
from tests.faults.conftest import Burst, FaultStack
from tests.faults.figures import HA_POOL_MAX, burst_size
from tests.faults.tunnel_ping import TunnelPing

pytestmark = pytest.mark.netns

BURST = burst_size(1000)
RETRY_S = 30.0
UNAVAILABLE_MAX_S = 5.0  # the goal is 10 s; HAProxy's checks take a replica out in ~1 s


def test_a_burst_across_a_killed_api_replica_ends_every_acknowledged_enrollment_once(
    make_stack: Callable[..., FaultStack], tmp_path: Path
) -> None:
    stack = make_stack(
        janitor_interval_s=1.0, job_requeue_after_s=5.0, beat_lease_s=2.0, db_pool_max=HA_POOL_MAX
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
        # Held half-way until the kill: it surely lands while the burst runs.
        burst = Burst(stack, token, BURST, threads=8, holds=(BURST // 2,), retry_s=RETRY_S)
        try:
            stack.wait_enrolled(BURST // 10)
            assert burst.running(), "the burst ended before the kill: nothing was tested"
            # Frozen, then the held posts let go: those HAProxy hands the frozen replica sit
            # there unanswered (its kernel still accepts), so posts are surely in flight when
            # it dies (master and workers, as when its host goes). Killed while the burst was
            # held, it would drop nothing: a burst as small as `make test`'s is often
            # all sent by then.
            replicas.processes[0].signal_group(signal.SIGSTOP)
            burst.release()
            time.sleep(0.5)
            replicas.processes[0].kill_group()
            killed_at = time.monotonic() - started
        finally:
            submitted = burst.join()
        posted_s = time.monotonic() - started
        statuses = stack.wait_jobs(list(submitted.values()), timeout=120)
        pinged = tunnel.stop()
        survivor_rss_mb = group_rss_mb(replicas.processes[1].pid)
    finally:
        tunnel.close()

    unavailable_s = stack.judge(
        "api_replica",
        submitted,
        statuses,
        pinged,
        tunnel.public_keys,
        max_attempts=1,
        replica_rss_mb=survivor_rss_mb,
    )
    results = [job["result"] for job in stack.job_results(list(submitted.values()))]
    assert len({r["address"] for r in results}) == BURST
    assert stack.writes.refused > 0, "the kill dropped no connection: nothing was tested"
    assert unavailable_s <= UNAVAILABLE_MAX_S
    # The survivor serves on through the balancer; nothing else was restarted.
    assert requests.get(f"{replicas.url}/readyz", verify=str(stack.pki.ca), timeout=5).ok
    assert all(p.alive() for p in stack.processes if p is not replicas.processes[0])
    print(
        f"\napi replica killed at {killed_at:.1f}s: {stack.writes.refused} attempts refused,"
        f" longest refusal {unavailable_s:.2f}s, {BURST} posted in {posted_s:.1f}s,"
        f" {pinged[1]} of {pinged[0]} pings through the hub lost"
    )


def test_when_no_replica_is_ready_haproxy_still_sends_to_the_live_ones(
    settings: Settings, api_pki: Pki, tmp_path: Path
) -> None:
    """A dependency every replica shares is away (here Redis): all /readyz fail together, and
    HAProxy falls back to the live replicas instead of refusing every connection."""
    no_redis = dataclasses.replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    replicas = start_replicas(no_redis, api_pki, tmp_path, tmp_path / "state", 2, ready=False)
    try:
        ca = str(api_pki.ca)
        for address in replicas.addresses:
            r = requests.get(f"https://{address}/readyz", verify=ca, timeout=5)
            assert r.status_code == 503
        time.sleep(1.5)  # HAProxy's checks have taken both out of the ready backend
        for _ in range(6):
            r = requests.get(f"{replicas.url}/readyz", verify=ca, timeout=5)
            assert r.status_code == 503 and r.json()["down"] == ["redis"]
    finally:
        for proc in (replicas.balancer, *replicas.processes):
            proc.stop()


def test_a_session_and_a_job_wait_begun_on_one_replica_go_on_on_the_other(
    make_stack: Callable[..., FaultStack],
) -> None:
    """Replicas share nothing but the database: a dashboard session signed in on one is
    signed in on the other (its CSRF token too), and a job wait on one wakes when the job
    a post to the other made ends (PostgreSQL NOTIFY reaches every replica)."""
    stack = make_stack(db_pool_max=HA_POOL_MAX)
    replicas = stack.start_api_replicas(2)
    stack.start_hub()
    stack.declare_interface()
    one, other = (f"https://{address}" for address in replicas.addresses)

    browser = Browser(one, stack.pki.ca)
    browser.sign_in(stack.admin_token)
    browser.base = other
    page = browser.get("/ui/")
    assert page.status_code == 200 and page.url == f"{other}/ui/"  # not sent to sign in
    assert browser.post("/ui/logout").status_code == 200  # the CSRF token from the first
    assert browser.get("/ui/").url.startswith(f"{other}/ui/login")

    token = stack.enrollment_token(uses=1)
    assert stack.hub_worker is not None
    stack.hub_worker.signal_group(signal.SIGSTOP)  # the job stays queued until we say
    try:
        body = {"token": token, "name": "across", "public_key": public_key(generate_private_key())}
        r = requests.post(f"{one}/v1/enroll", json=body, verify=str(stack.pki.ca), timeout=10)
        assert r.status_code == 202, r.text
        waiting = ThreadPoolExecutor(1)
        wait = waiting.submit(
            requests.get,
            f"{other}/v1/jobs/{r.json()['job_id']}",
            params={"wait": 30},
            headers={"Authorization": f"Bearer {stack.admin_token}"},
            verify=str(stack.pki.ca),
            timeout=40,
        )
        time.sleep(1.0)
        assert not wait.done(), "the wait returned before the job could end"
    finally:
        stack.hub_worker.signal_group(signal.SIGCONT)
    resumed = time.monotonic()
    answer = wait.result(40)
    waiting.shutdown()
    assert answer.json()["status"] == "succeeded"
    assert time.monotonic() - resumed < 10  # woken, not timed out at 30 s

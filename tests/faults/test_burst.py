"""A 1,000-enrollment burst through the API survives a hub worker SIGKILLed part-way."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.faults.conftest import Burst, FaultStack

pytestmark = pytest.mark.netns

BURST = 1000


def test_a_burst_with_a_killed_hub_worker_ends_every_job_once_with_every_peer_once(
    make_stack: Callable[..., FaultStack],
) -> None:
    stack = make_stack()
    stack.start_api()
    stack.start_hub()
    stack.declare_interface()
    token = stack.enrollment_token(uses=BURST)

    started = time.monotonic()
    # The burst waits at post 300 until the worker is killed: surely still arriving then.
    burst = Burst(stack, token, BURST, threads=16, holds=(300,))
    try:
        # Kill the worker once it has finished some jobs, while the burst is still arriving.
        stack.wait_enrolled(100)
        assert burst.running(), "the burst ended before the kill: nothing was tested"
        assert stack.hub_worker is not None
        stack.hub_worker.kill()
        killed_at = time.monotonic() - started
        burst.release()
        stack.start_hub()
    finally:
        submitted = burst.join()
    posted_s = time.monotonic() - started

    statuses = stack.wait_jobs(list(submitted.values()), timeout=120)
    ended_s = time.monotonic() - started

    assert statuses == {"succeeded": BURST}
    stack.assert_converged(set(submitted))
    stack.assert_applied_once(list(submitted.values()), max_attempts=2)
    results = [job["result"] for job in stack.job_results(list(submitted.values()))]
    assert len({r["address"] for r in results}) == BURST  # each peer told its own address
    print(
        f"\nburst {BURST}: killed at {killed_at:.1f}s, posted in {posted_s:.1f}s,"
        f" all ended at {ended_s:.1f}s"
    )

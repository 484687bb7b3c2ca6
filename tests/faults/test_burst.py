"""A 1,000-enrollment burst through the API survives a hub worker SIGKILLed part-way."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from tests.faults.conftest import FaultStack
from tests.stack import wait_for

BURST = 1000


def test_a_burst_with_a_killed_hub_worker_ends_every_job_once_with_every_peer_once(
    make_stack: Callable[..., FaultStack],
) -> None:
    stack = make_stack()
    stack.start_api()
    stack.start_hub()
    stack.declare_interface()
    token = stack.enrollment_token(uses=BURST)

    submitted: dict[str, str] = {}
    errors: list[BaseException] = []

    def submit() -> None:
        try:
            submitted.update(stack.enroll(BURST, token))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    started = time.monotonic()
    poster = threading.Thread(target=submit, name="burst")
    poster.start()
    try:
        # Kill the worker once it has finished some jobs, while the burst is still arriving.
        wait_for(
            lambda: stack.count_jobs("succeeded") >= 100,
            60,
            "the hub worker to finish 100 jobs",
            interval=0.02,
        )
        assert poster.is_alive(), "the burst ended before the kill: nothing was tested"
        assert stack.hub_worker is not None
        stack.hub_worker.kill()
        killed_at = time.monotonic() - started
        stack.start_hub()
    finally:
        poster.join(120)
    assert not errors, errors[0]
    posted_s = time.monotonic() - started

    statuses = stack.wait_jobs(list(submitted.values()), timeout=120)
    ended_s = time.monotonic() - started

    assert statuses == {"succeeded": BURST}
    stack.assert_converged(set(submitted))
    stack.assert_applied_once(list(submitted.values()), max_attempts=2)
    print(
        f"\nburst {BURST}: killed at {killed_at:.1f}s, posted in {posted_s:.1f}s,"
        f" all ended at {ended_s:.1f}s"
    )

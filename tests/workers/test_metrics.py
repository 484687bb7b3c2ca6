"""What a worker counts: tasks by name and outcome with their run time (on an in-process
worker and the real Redis broker), and dataplane transaction time."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import REGISTRY

from elysium.queue import CONTROL_JANITOR
from tests.stack import wait_for
from workers.metrics import count_tasks, dataplane_transaction


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_tasks_are_counted_by_name_and_outcome_and_timed(
    clean_db: str, celery_app: Any, celery_worker: Any
) -> None:
    count_tasks()
    count_tasks()  # idempotent: a task is still counted once
    task = {"task": CONTROL_JANITOR}
    before = sample("elysium_worker_tasks_total", **task, outcome="succeeded")
    timed = sample("elysium_worker_task_seconds_count", **task)
    celery_app.send_task(CONTROL_JANITOR)
    wait_for(
        lambda: sample("elysium_worker_tasks_total", **task, outcome="succeeded") == before + 1,
        10,
        "the janitor to be counted",
    )
    assert sample("elysium_worker_tasks_total", **task, outcome="started") >= before + 1
    assert sample("elysium_worker_task_seconds_count", **task) == timed + 1


def test_a_dataplane_transaction_is_timed_even_when_it_fails() -> None:
    labels = {"operation": "apply_peers"}
    count = sample("elysium_dataplane_transaction_seconds_count", **labels)
    total = sample("elysium_dataplane_transaction_seconds_sum", **labels)
    with dataplane_transaction("apply_peers"):
        time.sleep(0.02)
    try:
        with dataplane_transaction("apply_peers"):
            raise RuntimeError("the device refused")
    except RuntimeError:
        pass
    assert sample("elysium_dataplane_transaction_seconds_count", **labels) == count + 2
    assert sample("elysium_dataplane_transaction_seconds_sum", **labels) >= total + 0.02

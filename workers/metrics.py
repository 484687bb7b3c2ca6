"""What a worker counts: tasks by name and outcome, their durations (the periodic sweeps among
them), and the time of each dataplane transaction on a hub. Served by ``elysium.metrics``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery import signals
from prometheus_client import Counter, Gauge, Histogram

TASKS = Counter(
    "elysium_worker_tasks_total",
    "Tasks by name and outcome (started, succeeded, failed, retried)",
    ["task", "outcome"],
)
TASK_SECONDS = Histogram(
    "elysium_worker_task_seconds",
    "Task run time by name; the control.* sweeps are the periodic workflows",
    ["task"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
DATAPLANE_SECONDS = Histogram(
    "elysium_dataplane_transaction_seconds",
    "One WireGuard transaction on a hub (a peer batch or a whole-interface converge)",
    ["operation"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
MESH_HANDSHAKE = Gauge(
    "elysium_mesh_link_last_handshake_timestamp_seconds",
    "When this hub's link to another hub last completed a handshake (0: never)",
    ["peer_hub"],
)
MESH_BYTES = Gauge(
    "elysium_mesh_link_bytes",
    "Bytes over this hub's link to another hub, by direction",
    ["peer_hub", "direction"],
)
_started: dict[str, float] = {}


@contextmanager
def dataplane_transaction(operation: str) -> Iterator[None]:
    """Time one dataplane transaction (``apply_peers``, ``converge``)."""
    began = time.perf_counter()
    try:
        yield
    finally:
        DATAPLANE_SECONDS.labels(operation).observe(time.perf_counter() - began)


def mesh_links(links: dict[str, tuple[float, int, int]]) -> None:
    """What the mesh device holds now: per linked hub, (last handshake, rx, tx); links that
    are gone drop out of the scrape."""
    MESH_HANDSHAKE.clear()
    MESH_BYTES.clear()
    for hub, (handshake, rx, tx) in links.items():
        MESH_HANDSHAKE.labels(hub).set(handshake)
        MESH_BYTES.labels(hub, "rx").set(rx)
        MESH_BYTES.labels(hub, "tx").set(tx)


def _prerun(task_id: str = "", task: Any = None, **_: Any) -> None:
    TASKS.labels(task.name, "started").inc()
    _started[task_id] = time.perf_counter()


def _postrun(task_id: str = "", task: Any = None, state: str | None = None, **_: Any) -> None:
    outcome = {"SUCCESS": "succeeded", "RETRY": "retried"}.get(state or "", "failed")
    TASKS.labels(task.name, outcome).inc()
    began = _started.pop(task_id, None)
    if began is not None:
        TASK_SECONDS.labels(task.name).observe(time.perf_counter() - began)


def count_tasks() -> None:
    """Count every task this process runs (idempotent: Celery keeps one receiver per id)."""
    signals.task_prerun.connect(_prerun, weak=False, dispatch_uid="elysium.metrics.prerun")
    signals.task_postrun.connect(_postrun, weak=False, dispatch_uid="elysium.metrics.postrun")

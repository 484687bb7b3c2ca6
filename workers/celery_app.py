"""The one Celery app of the workers; configuration and routing come from ``elysium.queue``."""

from __future__ import annotations

from typing import Any

from celery import Celery, signals

from elysium.queue import celery_config
from workers.runtime import runtime, settings

app = Celery("elysium", include=["workers.hub", "workers.control"])
app.conf.update(celery_config(settings()))


@signals.worker_ready.connect
def _recover_hub(sender: Any = None, **_: Any) -> None:
    """A hub worker converges its hub from the database before it takes messages."""
    if settings().hub:
        runtime().hub.start()


@signals.worker_shutdown.connect
def _stop_hub(sender: Any = None, **_: Any) -> None:
    if settings().hub:
        runtime().hub.stop()

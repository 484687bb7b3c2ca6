"""``make_celery(settings)``: the workers' Celery app, built when a process asks for it.

Configuration and routing come from ``elysium.queue``; the tasks are registered from
``workers.tasks.hub`` and ``workers.tasks.control``. For the plain ``celery`` command, use
``celery -A workers.celery_main ...`` (an entry module that builds the app from the
environment).
"""

from __future__ import annotations

from typing import Any

from celery import Celery, signals

from elysium.metrics import serve_metrics
from elysium.queue import celery_config
from elysium.settings import Settings
from workers import kombu_compat
from workers.metrics import count_tasks
from workers.runtime import SETTINGS_KEY, runtime

TASK_MODULES = ["workers.tasks.hub", "workers.tasks.control"]


def make_celery(settings: Settings) -> Celery:
    """A Celery app for these settings; a hub worker's converges its hub when it is ready."""
    kombu_compat.install()
    app = Celery("elysium", include=TASK_MODULES, set_as_current=False)
    app.conf.update(celery_config(settings))
    app.conf[SETTINGS_KEY] = settings

    def recover_hub(sender: Any = None, **_: Any) -> None:
        # A hub worker converges its hub from the database before it takes messages.
        if settings.hub and getattr(sender, "app", None) is app:
            runtime(app).hub.start()

    def serve(sender: Any = None, **_: Any) -> None:
        # Queue depths come from control workers (hub workers may run on other hosts).
        if getattr(sender, "app", None) is app:
            serve_metrics(settings, queue_depth=not settings.hub)

    def stop_hub(sender: Any = None, **_: Any) -> None:
        if settings.hub and getattr(sender, "app", None) is app:
            runtime(app).hub.stop()

    # weak=False: the handlers live as long as the app, not as long as this call.
    count_tasks()
    signals.worker_ready.connect(recover_hub, weak=False)
    signals.worker_ready.connect(serve, weak=False)
    signals.worker_shutdown.connect(stop_hub, weak=False)
    return app

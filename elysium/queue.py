"""How jobs travel: queue names, task names, Celery settings, and the producer that sends them.

Both sides share this: the API and beat send messages by task name without importing the
workers; the workers' Celery app takes the same configuration.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any

from celery import Celery

from elysium.settings import Settings

log = logging.getLogger(__name__)

CONTROL_QUEUE = "control"
HUB_QUEUE_PREFIX = "hub."

# Task names (the one place they are spelled out).
HUB_RUN_JOB = "elysium.hub.run_job"
HUB_RECONCILE = "elysium.hub.reconcile"
HUB_REPORT_LIVENESS = "elysium.hub.report_liveness"
CONTROL_LIVENESS_SWEEP = "elysium.control.liveness_sweep"
CONTROL_RUN_JOB = "elysium.control.run_job"
CONTROL_EXPIRE = "elysium.control.expire"
CONTROL_RECONCILE_ALL = "elysium.control.reconcile_all"
CONTROL_JANITOR = "elysium.control.janitor"


def hub_queue(hub: str) -> str:
    return f"{HUB_QUEUE_PREFIX}{hub}"


def route_task(
    name: str, args: Any, kwargs: dict[str, Any], options: Any, task: Any = None, **_: Any
) -> dict[str, str]:
    """Hub tasks go to their hub's queue (named by the ``hub`` argument); the rest to control."""
    if name.startswith("elysium.hub."):
        hub = kwargs.get("hub") if kwargs else None
        if not hub:
            raise ValueError(f"{name} needs a hub= argument to be routed")
        return {"queue": hub_queue(hub)}
    return {"queue": CONTROL_QUEUE}


def celery_config(settings: Settings) -> dict[str, Any]:
    """Reliable delivery: late ack, redelivery when a worker dies, one message at a time."""
    return {
        "broker_url": settings.redis_url,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {
            # An unacknowledged message returns to its queue after this long (worker died).
            "visibility_timeout": max(60, int(settings.job_time_limit_s) * 2),
            **(
                {"global_keyprefix": settings.redis_key_prefix} if settings.redis_key_prefix else {}
            ),
        },
        "task_routes": (route_task,),
        "task_default_queue": CONTROL_QUEUE,
        # A broker outage must not hold an API request for long: the janitor re-sends later.
        "task_publish_retry_policy": {
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.5,
        },
        "broker_connection_timeout": 2,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "task_ignore_result": True,
        "result_backend": None,
        "worker_prefetch_multiplier": 1,
        "worker_hijack_root_logger": False,
        "task_serializer": "json",
        "accept_content": ["json"],
        "timezone": "UTC",
        "enable_utc": True,
        "worker_send_task_events": False,
        "broker_heartbeat": 0,
    }


class JobQueue:
    """Sends job messages (task id = job id) to the broker."""

    def __init__(self, settings: Settings, app: Celery | None = None) -> None:
        if app is None:
            app = Celery("elysium-producer", set_as_current=False)
            app.conf.update(celery_config(settings))
        self.app = app

    def offer_hub_job(self, job_id: uuid.UUID | str, hub: str) -> bool:
        """Send a recorded job's message to its hub; False when the broker is down.

        The job row is already durable, so a failed send is no error for the caller: the
        job janitor sends it again once it has waited ``job_requeue_after_s``.
        """
        return self._offer(
            job_id, HUB_RUN_JOB, {"job_id": str(job_id), "hub": hub}, task_id=str(job_id)
        )

    def offer_control_job(self, job_id: uuid.UUID | str) -> bool:
        """Send a recorded job to the control side first (its hub message follows from there)."""
        return self._offer(job_id, CONTROL_RUN_JOB, {"job_id": str(job_id)})

    def _offer(
        self, job_id: uuid.UUID | str, task: str, kwargs: dict[str, str], **opts: Any
    ) -> bool:
        try:
            # argsrepr/kwargsrepr given: Celery skips its safe-repr pass over the arguments.
            self.app.send_task(task, kwargs=kwargs, argsrepr="()", kwargsrepr=repr(kwargs), **opts)
        except Exception as exc:  # kombu raises many kinds for an unreachable broker
            log.warning("job %s recorded but not sent (%s); the janitor will send it", job_id, exc)
            return False
        return True

    def send_to_hubs(self, task: str, hubs: Sequence[str], expires_s: float) -> None:
        """Send a periodic hub task to each hub's queue.

        A run a hub did not pick up before the next period is dropped, so a slow hub never
        works through a backlog of sweeps.
        """
        for hub in hubs:
            self.app.send_task(task, kwargs={"hub": hub}, expires=max(5.0, expires_s))

    def close(self) -> None:
        self.app.close()

"""How jobs travel: queue names, task names, Celery settings, and the producer that sends them.

Both sides share this: the API and beat send messages by task name without importing the
workers; the workers' Celery app takes the same configuration.
"""

from __future__ import annotations

import atexit
import base64
import json
import logging
import os
import queue as queues
import socket
import threading
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import redis
from celery import Celery
from redis.sentinel import Sentinel

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


def redis_db(settings: Settings) -> int:
    """The database number of ``redis_url`` (``/0`` when it names none)."""
    path = urlsplit(settings.redis_url).path.strip("/")
    return int(path) if path.isdigit() else 0


def broker_url(settings: Settings) -> str:
    """Celery's broker: ``redis_url``, or kombu's ``sentinel://a;sentinel://b`` form."""
    if not settings.redis_sentinels:
        return settings.redis_url
    db = redis_db(settings)
    return ";".join(f"sentinel://{s}/{db}" for s in settings.redis_sentinels)


def redis_client(settings: Settings, timeout_s: float = 2.0) -> redis.Redis:
    """A client of the Redis primary: at ``redis_url``, or the one the sentinels name now.

    Through Sentinel, a connection that fails after a failover is made again to the primary
    the sentinels name then; what a command sent meanwhile fails with is a ``RedisError``.
    """
    timeouts = {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s}
    if not settings.redis_sentinels:
        return redis.Redis.from_url(settings.redis_url, **timeouts)
    sentinel = Sentinel(settings.sentinel_addresses, sentinel_kwargs=timeouts, **timeouts)
    return sentinel.master_for(settings.redis_master_name, db=redis_db(settings), **timeouts)


def celery_config(settings: Settings) -> dict[str, Any]:
    """Reliable delivery: late ack, redelivery when a worker dies, one message at a time."""
    return {
        "broker_url": broker_url(settings),
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {
            # An unacknowledged message returns to its queue after this long (worker died).
            "visibility_timeout": max(60, int(settings.job_time_limit_s) * 2),
            **(
                {"global_keyprefix": settings.redis_key_prefix} if settings.redis_key_prefix else {}
            ),
            **(
                {
                    "master_name": settings.redis_master_name,
                    "sentinel_kwargs": {"socket_timeout": 2, "socket_connect_timeout": 2},
                }
                if settings.redis_sentinels
                else {}
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


class Publisher:
    """Job messages straight onto the broker: one Celery (protocol 2) task message, one
    ``LPUSH`` on the queue's Redis list — what kombu's Redis transport does for a message
    without priority, minus its per-send declarations, retries and routing lookups, which
    cost an enrollment more CPU than its SQL did. Workers consume it as any Celery message.
    """

    EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}

    def __init__(self, settings: Settings) -> None:
        self.prefix = settings.redis_key_prefix or ""
        self.redis = redis_client(settings)
        self.origin = f"{os.getpid()}@{socket.gethostname()}"

    def message(self, task: str, queue: str, kwargs: dict[str, str], task_id: str) -> bytes:
        body = json.dumps([[], kwargs, self.EMBED]).encode()
        headers: dict[str, Any] = {
            "lang": "py",
            "task": task,
            "id": task_id,
            "shadow": None,
            "eta": None,
            "expires": None,
            "group": None,
            "group_index": None,
            "retries": 0,
            "timelimit": [None, None],
            "root_id": task_id,
            "parent_id": None,
            "argsrepr": "()",
            "kwargsrepr": repr(kwargs),
            "origin": self.origin,
            "ignore_result": None,
            "replaced_task_nesting": 0,
            "stamped_headers": None,
            "stamps": {},
        }
        return json.dumps(
            {
                "body": base64.b64encode(body).decode(),
                "content-encoding": "utf-8",
                "content-type": "application/json",
                "headers": headers,
                "properties": {
                    "correlation_id": task_id,
                    "reply_to": "",
                    "delivery_mode": 2,
                    "delivery_info": {"exchange": "", "routing_key": queue},
                    "priority": 0,
                    "body_encoding": "base64",
                    "delivery_tag": str(uuid.uuid4()),
                },
            }
        ).encode()

    def publish(self, task: str, queue: str, kwargs: dict[str, str], task_id: str) -> None:
        self.redis.lpush(self.prefix + queue, self.message(task, queue, kwargs, task_id))

    def close(self) -> None:
        self.redis.close()


class BackgroundSender:
    """Sends a publisher's messages from a thread of its own, all that wait in one round trip
    (one ``LPUSH`` per queue, oldest first, so workers take them in the order they came).

    For the API: a request whose job is committed answers at once instead of waiting on the
    broker, and a burst of them costs the broker one round trip per batch, not per job. A
    message is lost only with its process or the broker, as one that a request failed to
    send: the job row is the record, and the janitor sends it again.
    """

    BATCH_MAX = 500

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher
        # (queue, message) to send, or an event to set once what came before was tried
        self._waiting: queues.SimpleQueue[tuple[str, bytes] | threading.Event] = (
            queues.SimpleQueue()
        )
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def send(self, queue: str, message: bytes) -> None:
        with self._lock:  # started on first use: a process forked after this was made has
            if self._thread is None or not self._thread.is_alive():  # no thread of its own
                self._thread = threading.Thread(target=self._run, name="job-sender", daemon=True)
                self._thread.start()
                atexit.register(self.flush)
        self._waiting.put((queue, message))

    def flush(self, timeout_s: float = 2.0) -> None:
        """Wait (at most ``timeout_s``) until what was handed over so far has been tried."""
        if self._thread is None or not self._thread.is_alive():
            return
        done = threading.Event()
        self._waiting.put(done)
        done.wait(timeout_s)

    def _run(self) -> None:
        while True:
            batch = [self._waiting.get()]
            while len(batch) < self.BATCH_MAX:
                try:
                    batch.append(self._waiting.get_nowait())
                except queues.Empty:
                    break
            messages = [m for m in batch if isinstance(m, tuple)]
            if messages:
                self._send(messages)
            for waiting in batch:
                if isinstance(waiting, threading.Event):
                    waiting.set()

    def _send(self, messages: list[tuple[str, bytes]]) -> None:
        by_queue: dict[str, list[bytes]] = {}
        for queue, message in messages:
            by_queue.setdefault(queue, []).append(message)
        pipe = self.publisher.redis.pipeline(transaction=False)
        for queue, batch in by_queue.items():
            pipe.lpush(self.publisher.prefix + queue, *batch)
        try:
            pipe.execute()
        except redis.RedisError as exc:
            log.warning(
                "%d jobs recorded but not sent (%s); the janitor will send them",
                len(messages),
                exc,
            )


class JobQueue:
    """Sends job messages (task id = job id) to the broker; with ``background``, from a
    thread of its own (:class:`BackgroundSender`: the API's requests do not wait on it)."""

    def __init__(
        self, settings: Settings, app: Celery | None = None, *, background: bool = False
    ) -> None:
        if app is None:
            app = Celery("elysium-producer", set_as_current=False)
            app.conf.update(celery_config(settings))
        self.app = app
        self.publisher = Publisher(settings)
        self.sender = BackgroundSender(self.publisher) if background else None

    def offer_hub_job(self, job_id: uuid.UUID | str, hub: str) -> bool:
        """Send a recorded job's message to its hub; False when the broker is down.

        The job row is already durable, so a failed send is no error for the caller: the
        job janitor sends it again once it has waited ``job_requeue_after_s``.
        """
        kwargs = {"job_id": str(job_id), "hub": hub}
        return self._offer(job_id, HUB_RUN_JOB, hub_queue(hub), kwargs, str(job_id))

    def offer_control_job(self, job_id: uuid.UUID | str) -> bool:
        """Send a recorded job to the control side first (its hub message follows from there)."""
        kwargs = {"job_id": str(job_id)}
        return self._offer(job_id, CONTROL_RUN_JOB, CONTROL_QUEUE, kwargs, str(uuid.uuid4()))

    def answers(self) -> bool:
        """Whether the broker answers a ``PING`` on the connections jobs are sent on (a pooled
        one: a probe costs no connection of its own, nor a new sentinel query)."""
        try:
            return bool(self.publisher.redis.ping())
        except redis.RedisError:
            return False

    def _offer(
        self, job_id: uuid.UUID | str, task: str, queue: str, kwargs: dict[str, str], task_id: str
    ) -> bool:
        if self.sender is not None:
            self.sender.send(queue, self.publisher.message(task, queue, kwargs, task_id))
            return True
        try:
            self.publisher.publish(task, queue, kwargs, task_id)
        except redis.RedisError as exc:
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
        if self.sender is not None:
            self.sender.flush()
        self.publisher.close()
        self.app.close()

"""A guard around one kombu Redis-transport race, installed by ``make_celery``.

When the broker connection drops while a task finishes, Celery acks the task's message
(``task_acks_late``) on a channel whose connection kombu has already torn down; kombu then
builds a Redis client from ``connection.client``, which is ``None``, and the worker dies with
``AttributeError: 'NoneType' object has no attribute 'hostname'`` ("Unrecoverable error")
instead of reconnecting (kombu 5.7, celery 5.7; seen in tests/faults/test_redis.py). Such
an ack cannot reach the broker anyway: the message stays unacked and comes back after the
visibility timeout or when the channel restores its unacked messages, and every Elysium job
is idempotent (a job that has ended is left alone). So the ack is skipped, and logged. The
same torn-down channel, closed by Celery while it reconnects (a Sentinel failover), runs
``QoS.restore_unacked`` and dies the same way; the messages then stay in the unacked hash,
where the next consumer's visibility-timeout restore finds them, so that is skipped too.
tests/workers/test_kombu_compat.py fails when the kombu pinned in requirements.lock changes
what this wraps, or no longer has the race (then this module can go).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from kombu.transport import redis as kombu_redis

log = logging.getLogger(__name__)
_INSTALLED = "_elysium_closed_connection_guard"


def _connection_gone(qos: Any) -> bool:
    connection = getattr(qos.channel, "connection", None)
    return connection is None or getattr(connection, "client", None) is None


def _guard(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def guarded(self: Any, delivery_tag: Any, *args: Any, **kwargs: Any) -> Any:
        if _connection_gone(self):
            log.warning("broker connection gone: message %s stays unacked", delivery_tag)
            return None
        return method(self, delivery_tag, *args, **kwargs)

    return guarded


def _guard_restore(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def guarded(self: Any, *args: Any, **kwargs: Any) -> Any:
        if _connection_gone(self):
            log.warning("broker connection gone: unacked messages wait for the next consumer")
            return None
        return method(self, *args, **kwargs)

    return guarded


def install() -> None:
    """Guard ``ack``, ``reject`` and ``restore_unacked`` of kombu's Redis QoS (once per
    process)."""
    qos = kombu_redis.QoS
    if getattr(qos, _INSTALLED, False):
        return
    qos.ack = _guard(qos.ack)  # type: ignore[method-assign]
    qos.reject = _guard(qos.reject)  # type: ignore[method-assign]
    qos.restore_unacked = _guard_restore(qos.restore_unacked)  # type: ignore[method-assign]
    setattr(qos, _INSTALLED, True)

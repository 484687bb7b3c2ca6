"""``workers.kombu_compat`` against the kombu that requirements.lock pins, on the real Redis.

The guard patches kombu internals, so these tests fail when a new kombu (``make lock``) changes
what it patches: the source of ``QoS.ack``/``QoS.reject``, the attributes the guard reads, or
the race itself. If kombu ships a fix (the unguarded ack no longer raises), the guard can go.
"""

from __future__ import annotations

import inspect
import os
import secrets
import textwrap
from collections.abc import Iterator
from typing import Any

import kombu
import pytest
import redis
from kombu.transport import redis as kombu_redis

from workers import kombu_compat

# The methods the guard wraps, as kombu 5.7.0 (pinned in requirements.lock) writes them.
KOMBU_QOS_ACK = """\
def ack(self, delivery_tag):
    self._remove_from_indices(delivery_tag).execute()
    super().ack(delivery_tag)
"""
KOMBU_QOS_REJECT = """\
def reject(self, delivery_tag, requeue=False):
    if requeue:
        self.restore_by_tag(delivery_tag, leftmost=True)
    else:
        self._remove_from_indices(delivery_tag).execute()
    super().ack(delivery_tag)
"""
REDIS_URL = os.environ.get("ELYSIUM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _unguarded(method: Any) -> Any:
    return getattr(method, "__wrapped__", method)


def test_the_guarded_kombu_methods_are_the_ones_the_guard_was_written_for() -> None:
    kombu_compat.install()
    for method, expected in (
        (kombu_redis.QoS.ack, KOMBU_QOS_ACK),
        (kombu_redis.QoS.reject, KOMBU_QOS_REJECT),
    ):
        assert textwrap.dedent(inspect.getsource(_unguarded(method))) == expected, (
            f"kombu {kombu.__version__} changed QoS.{method.__name__}: "
            "check workers/kombu_compat.py still fits (or is still needed)"
        )
    assert getattr(kombu_redis.QoS, "_elysium_closed_connection_guard", False)


@pytest.fixture
def unacked_message() -> Iterator[tuple[kombu.Connection, Any]]:
    """A real message delivered and left unacked on a real kombu Redis channel."""
    prefix = f"elytest{secrets.token_hex(4)}:"
    connection = kombu.Connection(REDIS_URL, transport_options={"global_keyprefix": prefix})
    channel = connection.channel()
    queue = kombu.Queue(f"kombu-compat-{secrets.token_hex(4)}")
    with connection.Producer(channel) as producer:
        producer.publish({"job": 1}, routing_key=queue.name, declare=[queue])
    delivered: list[Any] = []
    consumer = kombu.Consumer(channel, [queue], callbacks=[lambda _b, m: delivered.append(m)])
    consumer.consume()
    connection.drain_events(timeout=10)
    try:
        yield connection, delivered[0]
    finally:
        connection.release()
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)
        client.close()


def _tear_down_as_a_lost_broker_does(connection: kombu.Connection, message: Any) -> None:
    # What kombu does when the broker connection drops under a late ack: the channel drops its
    # pools and the connection detaches its transport (Connection._do_close_transport).
    message.channel._disconnect_pools()
    connection.transport.client = None


def test_the_race_is_still_in_the_pinned_kombu(unacked_message: Any) -> None:
    connection, message = unacked_message
    _tear_down_as_a_lost_broker_does(connection, message)
    unguarded_ack = _unguarded(kombu_redis.QoS.ack)
    with pytest.raises(AttributeError, match="hostname"):
        unguarded_ack(message.channel.qos, message.delivery_tag)
    unguarded_restore = _unguarded(kombu_redis.QoS.restore_unacked)
    with pytest.raises(AttributeError, match="hostname"):  # Celery closing the channel
        unguarded_restore(message.channel.qos)


def test_the_guard_skips_the_ack_and_the_message_stays_unacked(unacked_message: Any) -> None:
    kombu_compat.install()
    connection, message = unacked_message
    tag = message.delivery_tag
    _tear_down_as_a_lost_broker_does(connection, message)

    assert message.channel.qos.ack(tag) is None
    assert message.channel.qos.reject(tag, requeue=False) is None
    assert message.channel.qos.restore_unacked() is None

    client = redis.Redis.from_url(REDIS_URL)
    try:
        prefix = connection.transport_options["global_keyprefix"]
        assert client.hexists(f"{prefix}unacked", tag), "the skipped ack must leave it unacked"
    finally:
        client.close()

"""A worker's or beat's own metrics endpoint, and the Redis queue depths, on the real Redis."""

from __future__ import annotations

import dataclasses
import secrets
import socket
from collections.abc import Iterator

import pytest
import redis
import requests
from prometheus_client import CollectorRegistry

from elysium.metrics import QueueDepthCollector, serve_metrics
from elysium.settings import Settings


@pytest.fixture
def private(settings: Settings) -> Iterator[Settings]:
    """Settings with broker keys of their own (removed at the end) and a free metrics port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    mine = dataclasses.replace(
        settings,
        redis_key_prefix=f"{settings.redis_key_prefix}{secrets.token_hex(3)}:",
        metrics_port=port,
    )
    yield mine
    client = redis.Redis.from_url(mine.redis_url)
    keys = list(client.scan_iter(f"{mine.redis_key_prefix}*"))
    if keys:
        client.delete(*keys)


def test_queue_depth_counts_the_messages_waiting_in_each_queue(private: Settings) -> None:
    client = redis.Redis.from_url(private.redis_url)
    client.rpush(f"{private.redis_key_prefix}hub.hub-a", "m1", "m2", "m3")
    client.rpush(f"{private.redis_key_prefix}control", "m1")
    client.set(f"{private.redis_key_prefix}hub.not-a-queue", "x")  # not a list: left out
    assert QueueDepthCollector(private).depths() == {"control": 1, "hub.hub-a": 3}


def test_an_empty_control_queue_is_reported_as_zero(private: Settings) -> None:
    assert QueueDepthCollector(private).depths() == {"control": 0}


def test_a_process_serves_its_metrics_on_its_own_port_once(private: Settings) -> None:
    redis.Redis.from_url(private.redis_url).rpush(f"{private.redis_key_prefix}hub.hub-b", "m")
    server = serve_metrics(private, queue_depth=True, registry=CollectorRegistry())
    assert server is not None
    try:
        text = requests.get(f"http://127.0.0.1:{private.metrics_port}/metrics", timeout=5).text
        assert 'elysium_queue_depth{queue="hub.hub-b"} 1.0' in text
        assert serve_metrics(private) is None  # this port is served already
    finally:
        server.shutdown()
        server.server_close()


def test_no_port_no_server(settings: Settings) -> None:
    assert serve_metrics(dataclasses.replace(settings, metrics_port=0)) is None

"""Where the broker is (one Redis URL, or the sentinels that name its primary), and the API's
background sending of job messages (a real Redis)."""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
import socket
import uuid
from collections.abc import Iterator

import pytest
import redis

from elysium.errors import ConfigError
from elysium.queue import JobQueue, broker_url, celery_config
from elysium.settings import Settings


def test_without_sentinels_the_broker_is_the_redis_url() -> None:
    settings = Settings.from_env({"ELYSIUM_REDIS_URL": "redis://10.0.0.5:6379/3"})

    assert broker_url(settings) == "redis://10.0.0.5:6379/3"
    assert "master_name" not in celery_config(settings)["broker_transport_options"]


def test_sentinels_make_a_kombu_sentinel_url_with_the_master_name_and_database() -> None:
    settings = Settings.from_env(
        {
            "ELYSIUM_REDIS_URL": "redis://ignored:6379/3",
            "ELYSIUM_REDIS_SENTINELS": "10.0.0.1:26379, 10.0.0.2:26379,10.0.0.3:26380",
            "ELYSIUM_REDIS_MASTER_NAME": "ely",
        }
    )

    assert broker_url(settings) == (
        "sentinel://10.0.0.1:26379/3;sentinel://10.0.0.2:26379/3;sentinel://10.0.0.3:26380/3"
    )
    assert celery_config(settings)["broker_transport_options"]["master_name"] == "ely"
    assert settings.sentinel_addresses[2] == ("10.0.0.3", 26380)


@pytest.mark.parametrize("bad", ["10.0.0.1", "10.0.0.1:x", ":26379"])
def test_a_sentinel_without_host_and_port_is_refused_naming_the_setting(bad: str) -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_env({"ELYSIUM_REDIS_SENTINELS": bad})
    assert "ELYSIUM_REDIS_SENTINELS" in str(err.value)


@pytest.fixture
def own_keys(settings: Settings) -> Iterator[Settings]:
    """Settings with broker keys of their own, removed at the end."""
    mine = dataclasses.replace(
        settings, redis_key_prefix=f"{settings.redis_key_prefix}{secrets.token_hex(3)}:"
    )
    yield mine
    client = redis.Redis.from_url(mine.redis_url)
    keys = list(client.scan_iter(f"{mine.redis_key_prefix}*"))
    if keys:
        client.delete(*keys)


def test_jobs_sent_in_the_background_reach_their_queues_in_the_order_they_came(
    own_keys: Settings,
) -> None:
    queue = JobQueue(own_keys, background=True)
    jobs = [str(uuid.uuid4()) for _ in range(300)]
    try:
        for i, job in enumerate(jobs):
            assert queue.offer_hub_job(job, "gw1" if i % 3 else "gw2")  # handed over
        assert queue.sender is not None
        queue.sender.flush()
        broker = redis.Redis.from_url(own_keys.redis_url)
        # LPUSH puts the newest first; a worker takes from the other end (oldest first).
        taken = [
            json.loads(m)["headers"]["id"]
            for m in reversed(broker.lrange(f"{own_keys.redis_key_prefix}hub.gw1", 0, -1))
        ]
        assert taken == [j for i, j in enumerate(jobs) if i % 3]
        assert broker.llen(f"{own_keys.redis_key_prefix}hub.gw2") == 100
    finally:
        queue.close()


def test_a_background_send_to_a_broker_that_is_down_is_logged_and_left_to_the_janitor(
    own_keys: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])  # nothing listens there once closed
    down = dataclasses.replace(own_keys, redis_url=f"redis://127.0.0.1:{port}/0")
    queue = JobQueue(down, background=True)
    try:
        with caplog.at_level(logging.WARNING, logger="elysium.queue"):
            assert queue.offer_control_job(uuid.uuid4())  # handed over: no wait, no error
            assert queue.sender is not None
            queue.sender.flush(10)
        assert "1 jobs recorded but not sent" in caplog.text
    finally:
        queue.close()

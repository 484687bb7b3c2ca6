"""Fixtures for beat: settings with short periods, a private broker prefix, beat processes."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import redis

from elysium.settings import Settings
from tests.stack import Process, elysium_command, settings_env

PERIOD_S = 0.5
LEASE_S = 2.0


@pytest.fixture
def beat_settings(settings: Settings, clean_db: str) -> Settings:
    """Every workflow each PERIOD_S, a LEASE_S lease, broker keys private to this test."""
    return replace(
        settings,
        redis_key_prefix=f"{settings.redis_key_prefix}{secrets.token_hex(3)}:",
        liveness_interval_s=PERIOD_S,
        expiry_interval_s=PERIOD_S,
        reconcile_interval_s=PERIOD_S,
        janitor_interval_s=PERIOD_S,
        beat_lease_s=LEASE_S,
    )


@dataclass
class Sent:
    """One message waiting on a queue: its task and the process that sent it."""

    task: str
    pid: int


@dataclass
class Broker:
    """The test's view of Redis: messages waiting on a queue under its key prefix."""

    client: redis.Redis
    prefix: str

    def waiting(self, queue: str) -> list[Sent]:
        """Messages on ``queue``, oldest first (origin is ``gen<pid>@<host>``)."""
        raw = reversed(self.client.lrange(f"{self.prefix}{queue}", 0, -1))
        out = []
        for m in raw:
            headers = json.loads(m)["headers"]
            out.append(Sent(headers["task"], int(headers["origin"].split("@")[0][3:])))
        return out

    def clear(self, queue: str) -> None:
        self.client.delete(f"{self.prefix}{queue}")


@pytest.fixture
def broker(beat_settings: Settings) -> Iterator[Broker]:
    client = redis.Redis.from_url(beat_settings.redis_url)
    prefix = beat_settings.redis_key_prefix
    try:
        yield Broker(client, prefix)
    finally:
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)
        client.close()


@pytest.fixture
def start_beat(beat_settings: Settings, tmp_path: Path) -> Iterator[Callable[[str], Process]]:
    """Start ``elysium beat`` processes (named for their log files); all stopped at the end."""
    started: list[Process] = []

    def start(name: str) -> Process:
        proc = Process(
            elysium_command("beat", "--loglevel", "INFO"),
            settings_env(beat_settings),
            tmp_path / f"beat-{name}.log",
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()

"""What a worker process holds once: its settings, a database pool, a job queue, its hub."""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

from psycopg import Connection
from psycopg.rows import DictRow
from psycopg_pool import ConnectionPool

from db.pool import open_pool
from elysium.queue import JobQueue
from elysium.settings import Settings

if TYPE_CHECKING:
    from workers.hub import HubWorker

_lock = threading.Lock()
_settings: Settings | None = None
_state: dict[int, Runtime] = {}


def configure(settings: Settings) -> None:
    """Set this process's settings (before the Celery app is imported)."""
    global _settings
    _settings = settings


def settings() -> Settings:
    global _settings
    if _settings is None:
        _settings = Settings.from_env()
    return _settings


class Runtime:
    """Per-process resources, made lazily (after a prefork worker has forked)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._pool: ConnectionPool[Connection[DictRow]] | None = None
        self._hub: HubWorker | None = None

    @property
    def pool(self) -> ConnectionPool[Connection[DictRow]]:
        if self._pool is None:
            self._pool = open_pool(self.settings, min_size=1, max_size=4, name="worker")
        return self._pool

    @property
    def queue(self) -> JobQueue:
        from workers.celery_app import app

        return JobQueue(self.settings, app)

    @property
    def hub(self) -> HubWorker:
        if self._hub is None:
            from workers.hub import HubWorker

            if not self.settings.hub:
                raise RuntimeError("this worker has no hub (set ELYSIUM_HUB or --hub)")
            self._hub = HubWorker(self.settings, self.pool)
        return self._hub


def runtime() -> Runtime:
    pid = os.getpid()
    with _lock:
        if pid not in _state:
            _state.clear()
            _state[pid] = Runtime(settings())
        return _state[pid]

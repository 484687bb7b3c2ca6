"""What a worker process holds once per Celery app: settings, a database pool, a job queue,
its hub worker, and (on the control side) the CA that signs enrollment certificates.

Tasks reach it through their app (``runtime(task.app)``); nothing here builds a Celery app.
"""

from __future__ import annotations

import os
import threading

from celery import Celery
from cryptography import x509
from psycopg import Connection
from psycopg.rows import DictRow
from psycopg_pool import ConnectionPool

from db.pool import open_pool
from elysium import pki
from elysium.errors import Unavailable
from elysium.queue import JobQueue
from elysium.settings import Settings
from services.jobs import send
from workers.hub import HubWorker

SETTINGS_KEY = "elysium_settings"  # where make_celery leaves the settings in app.conf

_lock = threading.Lock()
_runtimes: dict[tuple[int, int], Runtime] = {}


class Runtime:
    """Per-process resources, made lazily (after a prefork worker has forked)."""

    def __init__(self, settings: Settings, app: Celery) -> None:
        self.settings = settings
        self.app = app
        self._lock = threading.Lock()
        self._pool: ConnectionPool[Connection[DictRow]] | None = None
        self._hub: HubWorker | None = None
        self._queue: JobQueue | None = None
        self._ca: tuple[x509.Certificate, pki.CertificateKey] | None = None

    @property
    def pool(self) -> ConnectionPool[Connection[DictRow]]:
        with self._lock:
            if self._pool is None:
                self._pool = open_pool(self.settings, min_size=1, max_size=4, name="worker")
            return self._pool

    @property
    def queue(self) -> JobQueue:
        with self._lock:
            if self._queue is None:
                self._queue = JobQueue(self.settings, self.app)
            return self._queue

    @property
    def hub(self) -> HubWorker:
        if self._hub is None:
            if not self.settings.hub:
                raise RuntimeError("this worker has no hub (set ELYSIUM_HUB or --hub)")
            queue = self.queue
            self._hub = HubWorker(self.settings, self.pool, send=lambda job: send(queue, job))
        return self._hub

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None
            if self._queue is not None:
                self._queue.publisher.close()  # the app is the worker's own: left open
                self._queue = None

    def load_ca(self) -> tuple[x509.Certificate, pki.CertificateKey]:
        """The CA certificate and key that sign peer certificates (read on first use)."""
        with self._lock:
            if self._ca is None:
                if self.settings.tls_ca is None or self.settings.ca_key is None:
                    raise Unavailable(
                        "this control worker cannot sign certificates"
                        " (set ELYSIUM_TLS_CA and ELYSIUM_CA_KEY)",
                        code="pki_not_configured",
                    )
                self._ca = (
                    pki.load_certificate(self.settings.tls_ca),
                    pki.load_private_key(self.settings.ca_key),
                )
            return self._ca


def close_runtimes() -> None:
    """Close every runtime of this process (their pools' threads and connections): for a
    process that makes and drops Celery apps, such as a test run."""
    with _lock:
        runtimes = list(_runtimes.values())
        _runtimes.clear()
    for rt in runtimes:
        rt.close()


def runtime(app: Celery) -> Runtime:
    """This process's resources for ``app`` (whose settings ``make_celery`` stored)."""
    key = (id(app), os.getpid())
    with _lock:
        rt = _runtimes.get(key)
        if rt is None:
            settings = app.conf.get(SETTINGS_KEY) or Settings.from_env()
            rt = _runtimes[key] = Runtime(settings, app)
        return rt

"""Per-process resources of the API: settings, the database pool, the job queue, the CA cert.

They are opened lazily on first use, so each gunicorn worker opens its own after the fork.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from cryptography import x509
from flask import current_app, request
from psycopg import Connection
from psycopg.rows import DictRow
from psycopg_pool import ConnectionPool

from db import config_notify, job_notify
from db.notify import Notifications, Parking
from db.pool import open_pool
from elysium import pki
from elysium.errors import NotFound, Unavailable
from elysium.oidc import Provider
from elysium.queue import JobQueue
from elysium.settings import Settings
from services.config_views import ConfigViews

EXTENSION = "elysium"
# Set by the API's gunicorn worker for every request (api/gunicorn_worker.py): what lets a
# config follow or a job wait wait without a thread (``db.notify.Parking``); absent elsewhere.
PARKING_ENVIRON = "elysium.parking"


@dataclass
class ApiState:
    settings: Settings
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _pid: int = 0
    _pool: ConnectionPool[Connection[DictRow]] | None = None
    _queue: JobQueue | None = None
    _notifications: Notifications | None = None
    _config_views: ConfigViews | None = None
    # Only the CA certificate, to check client certificates: the API never reads the CA key
    # (the control worker signs enrollment CSRs).
    _ca_cert: x509.Certificate | None = None
    _oidc: Provider | None = None

    def _fresh(self) -> None:
        # A forked child must not reuse its parent's sockets.
        if self._pid != os.getpid():
            self._pid, self._pool, self._queue = os.getpid(), None, None
            self._notifications = None
            self._config_views = None

    @property
    def pool(self) -> ConnectionPool[Connection[DictRow]]:
        with self._lock:
            self._fresh()
            if self._pool is None:
                self._pool = open_pool(self.settings, name=f"api-{os.getpid()}")
            return self._pool

    @property
    def queue(self) -> JobQueue:
        with self._lock:
            self._fresh()
            if self._queue is None:
                # Sent from a thread of the queue's own: a request does not wait on Redis.
                self._queue = JobQueue(self.settings, background=True)
            return self._queue

    @property
    def notifications(self) -> Notifications:
        """This process's one listener: peer config changes and job ends (every ``?wait``)."""
        with self._lock:
            self._fresh()
            if self._notifications is None:
                # Waits that hold a thread (no parking: not the API's gunicorn worker) leave
                # a few threads free for every other request.
                self._notifications = Notifications(
                    self.settings.database_url,
                    (config_notify.CHANNEL, job_notify.CHANNEL),
                    max(1, self.settings.api_threads - 32),
                )
            return self._notifications

    @property
    def config_views(self) -> ConfigViews:
        """What followers of one interface share when a change wakes them (per process)."""
        with self._lock:
            self._fresh()
            if self._config_views is None:
                self._config_views = ConfigViews()
            return self._config_views

    @contextmanager
    def connection(self) -> Iterator[Connection[DictRow]]:
        """A pooled autocommit connection for one request's work."""
        pool = self.pool
        try:
            conn = pool.getconn(timeout=10)
        except Exception as exc:  # pool timeout or database down: not the caller's fault
            raise Unavailable("the database is not reachable", code="database_unavailable") from exc
        try:
            yield conn
        finally:
            pool.putconn(conn)

    @property
    def ca_cert(self) -> x509.Certificate:
        """The Elysium CA certificate, which peer client certificates must come from."""
        with self._lock:
            if self._ca_cert is None:
                if self.settings.tls_ca is None:
                    raise Unavailable("this API has no CA configured", code="pki_not_configured")
                self._ca_cert = pki.load_certificate(self.settings.tls_ca)
            return self._ca_cert

    @property
    def oidc(self) -> Provider:
        """The OpenID provider of single sign-on (its discovery and keys cached per process);
        404 ``sso_disabled`` when none is configured."""
        if not self.settings.sso:
            raise NotFound("single sign-on is not configured here", code="sso_disabled")
        with self._lock:
            if self._oidc is None:
                self._oidc = Provider(self.settings.oidc_issuer)
            return self._oidc

    def close(self) -> None:
        with self._lock:
            if self._pool is not None and self._pid == os.getpid():
                self._pool.close()
            if self._queue is not None and self._pid == os.getpid():
                self._queue.close()
            if self._notifications is not None and self._pid == os.getpid():
                self._notifications.close()
            self._pool = self._queue = None
            self._notifications = None


def state() -> ApiState:
    return current_app.extensions[EXTENSION]


def settings() -> Settings:
    return state().settings


def queue() -> JobQueue:
    return state().queue


def notifications() -> Notifications:
    return state().notifications


def config_views() -> ConfigViews:
    return state().config_views


def parking() -> Parking | None:
    """This request's way to wait without its thread, when the server gives one."""
    return request.environ.get(PARKING_ENVIRON)


@contextmanager
def connection() -> Iterator[Connection[DictRow]]:
    """A pooled autocommit connection for one request's work."""
    with state().connection() as conn:
        yield conn

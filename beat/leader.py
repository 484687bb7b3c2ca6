"""Exactly one beat sends the schedule: the holder of the ``beat`` lease in PostgreSQL.

Every beat process ticks; only the one whose lease is current sends anything. The leader
renews its lease every third of ``beat_lease_s``; when it dies, another beat takes the lease
once it lapses. A leader that cannot renew (database away) stops sending when its lease
would have ended by its own clock, which is never later than the database's expiry.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from typing import Any

from celery import Celery
from celery.beat import Scheduler
from prometheus_client import Gauge
from psycopg import Connection
from psycopg.rows import DictRow
from psycopg_pool import ConnectionPool

from beat.schedule import beat_schedule
from db.leases import acquire_lease, release_lease
from db.pool import open_pool
from elysium.metrics import serve_metrics
from elysium.settings import Settings

log = logging.getLogger(__name__)

LEASE_NAME = "beat"
LEADER = Gauge("elysium_beat_leader", "1 while this beat holds the lease and sends the schedule")
# Which process holds the lease; one value per process, however many schedulers Celery makes.
PROCESS_HOLDER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class BeatLease:
    """This process's claim on the beat lease, renewed as a side effect of asking about it."""

    def __init__(
        self,
        settings: Settings,
        name: str = LEASE_NAME,
        holder: str = PROCESS_HOLDER,
    ) -> None:
        self.settings = settings
        self.name = name
        self.lease_s = settings.beat_lease_s
        self.renew_every_s = settings.beat_lease_s / 3
        self.holder = holder
        self._clock = time.monotonic
        self._pool: ConnectionPool[Connection[DictRow]] | None = None
        self._valid_until = 0.0  # by our clock; 0: not held
        self._next_try = 0.0

    @property
    def pool(self) -> ConnectionPool[Connection[DictRow]]:
        if self._pool is None:
            self._pool = open_pool(self.settings, min_size=1, max_size=1, name="beat")
        return self._pool

    def held(self) -> bool:
        """Whether this process may send now; takes or renews the lease when that is due."""
        now = self._clock()
        if now >= self._next_try:
            self._try(now)
        leading = self._clock() < self._valid_until
        LEADER.set(1 if leading else 0)
        return leading

    def _try(self, started: float) -> None:
        was_leader = started < self._valid_until
        try:
            with self.pool.connection(timeout=self.renew_every_s) as conn:
                expires = acquire_lease(conn, self.name, self.holder, self.lease_s)
        except Exception as exc:  # database away: keep what we have until it runs out
            log.warning("beat lease %s: cannot reach the database (%s)", self.name, exc)
            self._next_try = self._clock() + min(1.0, self.renew_every_s)
            return
        self._next_try = started + self.renew_every_s
        if expires is None:
            self._valid_until = 0.0
            if was_leader:
                log.warning("beat lease %s: lost it; no longer sending", self.name)
            return
        # Measured from before the query: never later than the database's own expiry.
        self._valid_until = started + self.lease_s
        if not was_leader:
            log.info("beat lease %s: taken by %s; sending the schedule", self.name, self.holder)

    def wait_s(self) -> float:
        """How long the beat may sleep before the lease needs attention again."""
        return max(0.0, self._next_try - self._clock())

    def release(self) -> None:
        """Give the lease up (clean shutdown), so another beat takes over without waiting."""
        if self._pool is None:
            return
        try:
            if self._clock() < self._valid_until:
                with self._pool.connection(timeout=2) as conn:
                    release_lease(conn, self.name, self.holder)
        except Exception as exc:  # it lapses on its own
            log.warning("beat lease %s: not released (%s)", self.name, exc)
        finally:
            self._valid_until = 0.0
            self._pool.close()
            self._pool = None


class LeaderScheduler(Scheduler):
    """Celery beat scheduler holding Elysium's schedule; sends only while it holds the lease.

    Use ``celery -A workers.celery_main beat -S beat.leader:LeaderScheduler`` or
    ``elysium beat``. The schedule is kept in memory: a new leader starts its periods afresh.
    """

    max_interval: float

    def __init__(
        self, app: Celery, *args: Any, settings: Settings | None = None, **kwargs: Any
    ) -> None:
        self.settings = settings if settings is not None else Settings.from_env()
        self.lease = BeatLease(self.settings)
        serve_metrics(self.settings)
        super().__init__(app, *args, **kwargs)
        self.max_interval = min(float(self.max_interval or 300), self.lease.renew_every_s)

    def setup_schedule(self) -> None:
        """Celery's own entries and ``beat_schedule`` configuration, then Elysium's."""
        self.install_default_entries(self.data)
        self.merge_inplace({**self.app.conf.beat_schedule, **beat_schedule(self.settings)})

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """Send the next due entry if this process leads; return how long to sleep."""
        if not self.lease.held():
            return self.lease.wait_s()
        return float(min(super().tick(*args, **kwargs), self.lease.wait_s()))

    def close(self) -> None:
        """Release the lease on a clean stop, then close the publisher."""
        self.lease.release()
        super().close()

    @property
    def info(self) -> str:
        return f"lease {self.lease.name!r} as {self.lease.holder} ({self.lease.lease_s:g}s)"

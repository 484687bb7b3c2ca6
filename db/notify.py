"""Waiting on PostgreSQL notifications without a connection per waiter: ONE listening
connection per process, on every channel the process waits on (the API: ``peer_config`` for
config follow, ``job_done`` for ``GET /v1/jobs/{id}?wait``).

A thousand waiting requests share it: its thread wakes the waiters a notification names (its
channel and payload, see ``key``), so a waiter costs an ``Event``, not a database connection.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, NoReturn, Protocol

import psycopg
from psycopg import Connection
from psycopg.rows import DictRow

from elysium.errors import Unavailable

READY_TIMEOUT_S = 5.0
RETRY_MAX_S = 5.0
POLL_S = 5.0  # how often the listening thread looks up from its socket to see if it must stop
MAX_SEEN = 100_000  # keys remembered for ``unchanged`` before they are forgotten

log = logging.getLogger(__name__)


# (listener epoch, notifications so far): see ``Notifications.mark``.
Mark = tuple[int, int]

# A pooled connection for a waiter's reads (the listening one never serves a query).
Connect = Callable[[], AbstractContextManager[Connection[DictRow]]]


class Waiter(Protocol):
    """What a notification wakes: a thread's ``threading.Event``, or a request waiting
    without a thread (its ``set`` hands it back to a thread)."""

    def set(self) -> None: ...


class Parking(Protocol):
    """A request that can wait without holding a thread (api/gunicorn_worker.py): the state
    kept across the calls that serve it. A call that must wait subscribes the request, reads
    once more, and parks it (``park`` does not return); a notification or the deadline then
    serves the request again (``resumed``), on whichever thread is free. ``memo`` stays with
    the connection from one request to the next (a follow's ``services.peer_self.FollowMemo``)."""

    started: float  # when the request came (time.monotonic)
    resumed: bool  # this call serves the request again after it was parked
    base: dict[str, Any] | None  # what it was parked on (a follow: the config it was told)
    memo: Any
    caller: Any  # who it was authenticated as when it came (the API's)
    caller_mark: Any  # where the notifications were before that (the API's)

    def subscribe(self, notifications: Notifications, keys: Sequence[str]) -> None: ...

    def unsubscribe(self) -> None: ...

    def park(self, deadline: float, base: dict[str, Any]) -> NoReturn: ...


def key(channel: str, payload: str) -> str:
    """What a waiter subscribes to: one channel's one payload."""
    return f"{channel}:{payload}"


class Notifications:
    """The process's one listener on ``channels``, fanned out to waiting threads."""

    def __init__(self, database_url: str, channels: Sequence[str], max_waiters: int = 1000) -> None:
        self.database_url = database_url
        self.channels = tuple(channels)
        self.max_waiters = max_waiters
        self._lock = threading.Lock()
        self._waiters: dict[str, set[Waiter]] = {}
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._count = 0  # waiting threads (``subscribe``), at most ``max_waiters``
        self._parked = 0  # waiters without a thread (``add``)
        # What caches of state that waiters share compare (``mark``, ``unchanged``): the count
        # of notifications, the count at the last one naming each key, and how often the
        # listener (re)connected or dropped.
        self._seq = 0
        self._last: dict[str, int] = {}
        self._epoch = 0

    @contextmanager
    def subscribe(self, keys: Iterable[str]) -> Iterator[threading.Event]:
        """An event set when a notification names one of ``keys`` (or when notifications may
        have been missed). Read the state only after subscribing: nothing falls between."""
        self._start()
        if not self._ready.wait(READY_TIMEOUT_S):
            raise Unavailable("the database is not reachable", code="database_unavailable")
        event = threading.Event()
        keys = list(keys)
        with self._lock:
            if self._count >= self.max_waiters:
                raise Unavailable(
                    "too many requests are waiting here; try again", code="too_many_waiting"
                )
            self._count += 1
            for key in keys:
                self._waiters.setdefault(key, set()).add(event)
        try:
            yield event
        finally:
            with self._lock:
                self._count -= 1
                for key in keys:
                    waiting = self._waiters.get(key)
                    if waiting is not None:
                        waiting.discard(event)
                        if not waiting:
                            del self._waiters[key]

    def add(self, keys: Iterable[str], waiter: Waiter) -> None:
        """Wake ``waiter`` (its ``set()``, from the listening thread) when a notification names
        one of ``keys`` or notifications may have been missed, until ``remove``. For a request
        that waits without a thread (api/gunicorn_worker.py): no limit but its connection."""
        self._start()
        if not self._ready.wait(READY_TIMEOUT_S):
            raise Unavailable("the database is not reachable", code="database_unavailable")
        with self._lock:
            self._parked += 1
            for key in keys:
                self._waiters.setdefault(key, set()).add(waiter)

    def remove(self, keys: Iterable[str], waiter: Waiter) -> None:
        with self._lock:
            self._parked -= 1
            for key in keys:
                waiting = self._waiters.get(key)
                if waiting is not None:
                    waiting.discard(waiter)
                    if not waiting:
                        del self._waiters[key]

    def mark(self) -> Mark | None:
        """Where the notifications are now, to take before reading state that waiters share;
        None while not listening (nothing read then may be kept)."""
        if not self._ready.is_set():
            return None
        with self._lock:
            return (self._epoch, self._seq)

    def unchanged(self, keys: Iterable[str], since: Mark | None) -> bool:
        """Whether no notification named any of ``keys`` after ``since`` (and none may have
        been missed): state read after taking ``since`` is still as new as they say."""
        if since is None or not self._ready.is_set():
            return False
        with self._lock:
            return since[0] == self._epoch and all(self._last.get(k, 0) <= since[1] for k in keys)

    def waiting(self) -> int:
        """How many requests wait now (with a thread or without)."""
        with self._lock:
            return self._count + self._parked

    def close(self) -> None:
        """Stop listening (within ``POLL_S``); waiters still waiting are woken."""
        self._stopping = True

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="notification-listener", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        delay = 0.2
        while not self._stopping:
            try:
                with psycopg.connect(self.database_url, autocommit=True, connect_timeout=5) as conn:
                    for channel in self.channels:
                        conn.execute(f"LISTEN {channel}")
                    self._ready.set()
                    self._wake_all()  # anything sent while we were not listening
                    delay = 0.2
                    while not self._stopping:
                        for note in conn.notifies(timeout=POLL_S):
                            self._wake(key(note.channel, note.payload))
            except psycopg.Error as exc:
                if self._stopping:
                    break
                log.warning("notification listener: %s; reconnecting in %.1fs", exc, delay)
            finally:
                self._ready.clear()
                self._wake_all()  # waiters re-read (and see the database is down) now
            time.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)

    def _wake(self, key: str) -> None:
        with self._lock:
            self._seq += 1
            self._last[key] = self._seq
            if len(self._last) > MAX_SEEN:  # counted afresh: nothing marked before is kept
                self._last.clear()
                self._epoch += 1
            events = list(self._waiters.get(key, ()))
        for event in events:
            event.set()

    def _wake_all(self) -> None:
        with self._lock:
            self._epoch += 1
            events = set().union(*self._waiters.values()) if self._waiters else set()
        for event in events:
            event.set()

"""Calls that go together: while one batch of a key runs, the calls of that key that come
wait, and then run as the next batch, led by the first of them; the others only wait.

A batch costs about what one call costs when that cost is mostly per round trip (one
statement, one commit, one flush for many enrollments: ``services/enrollment.py``). A call
that finds its key idle runs at once, alone, unless within the last ``busy_s`` a call of that
key had to wait for a batch: calls of that key come at once, so it first waits ``linger_s``
for company, as PostgreSQL's ``commit_delay`` does for commits. Calls one after another (a
script enrolling peers in turn) never wait. No thread of its own: the leader of a batch is
one of its calls.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

MAX_BATCH = 64  # one statement stays small; the rest go in the next batch
KEPT_KEYS = 256  # when more keys were crowded, the stale ones are forgotten

# A batch's runner: the items, in the order they came -> one result for each, in that order.
Run = Callable[[list[T]], Sequence[R]]


class _Call(Generic[T, R]):
    __slots__ = ("batch", "done", "error", "item", "result")

    def __init__(self, item: T) -> None:
        self.item = item
        self.done = threading.Event()
        self.batch: list[_Call[T, R]] | None = None  # set when this call is to lead one
        self.result: R | None = None
        self.error: BaseException | None = None

    def outcome(self) -> R:
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]


class Combiner(Generic[T, R]):
    """``submit(key, item, run)`` -> ``run``'s result for ``item``, run alone or in a batch
    with other items of ``key`` (by the ``run`` of whichever call leads that batch)."""

    def __init__(
        self, max_batch: int = MAX_BATCH, linger_s: float = 0.0, busy_s: float = 0.0
    ) -> None:
        self._max = max_batch
        self._linger_s = linger_s
        self._busy_s = busy_s
        self._lock = threading.Lock()
        self._waiting: dict[Hashable, list[_Call[T, R]]] = {}  # absent: no batch of the key runs
        self._crowded: dict[Hashable, float] = {}  # when a call of the key last had to wait

    def submit(self, key: Hashable, item: T, run: Run[T, R]) -> R:
        call: _Call[T, R] = _Call(item)
        busy = False
        with self._lock:
            waiting = self._waiting.get(key)
            now = time.monotonic()
            if waiting is None:
                self._waiting[key] = []
                call.batch = [call]
                crowded = self._crowded.get(key)
                busy = crowded is not None and now - crowded < self._busy_s
            else:
                waiting.append(call)
                self._crowded[key] = now
                if len(self._crowded) > KEPT_KEYS:
                    self._crowded = {
                        k: t for k, t in self._crowded.items() if now - t < self._busy_s
                    }
        if call.batch is None:
            call.done.wait()
            if call.batch is None:  # another call's batch ran it
                return call.outcome()
        elif busy and self._linger_s > 0:
            time.sleep(self._linger_s)
            with self._lock:
                waiting = self._waiting[key]
                call.batch += waiting[: self._max - 1]
                self._waiting[key] = waiting[self._max - 1 :]
        self._lead(key, call.batch, run)
        return call.outcome()

    def _lead(self, key: Hashable, batch: list[_Call[T, R]], run: Run[T, R]) -> None:
        try:
            results = run([c.item for c in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"{len(results)} results for a batch of {len(batch)}")
            for c, result in zip(batch, results, strict=True):
                c.result = result
        except BaseException as exc:  # each call of the batch raises it
            for c in batch:
                c.error = exc
        finally:
            self._hand_on(key)
            for c in batch[1:]:
                c.done.set()

    def _hand_on(self, key: Hashable) -> None:
        """The calls that came meanwhile go next, led by the first of them."""
        with self._lock:
            waiting = self._waiting[key]
            if not waiting:
                del self._waiting[key]
                return
            nxt, self._waiting[key] = waiting[: self._max], waiting[self._max :]
        nxt[0].batch = nxt
        nxt[0].done.set()

"""Calls that go together: while one batch of a key runs, the calls of that key that come
wait, and then run as the next batch, led by the first of them; the others only wait.

A batch costs about what one call costs when that cost is mostly per round trip (one
statement, one commit, one flush for many enrollments: ``services/enrollment.py``). Before a
leader runs its batch it waits, at most ``linger_s``, for company it has reason to expect:
- calls announced on their way (``on_the_way``: a request being read whose key is not known
  yet), until each has come or said it will not;
- when it found its key idle although within the last ``busy_s`` a call of that key had to
  wait for a batch (calls of that key come at once), ``linger_s`` for whoever comes, as
  PostgreSQL's ``commit_delay`` does for commits.
Calls one after another (a script enrolling peers in turn) never wait. No thread of its own:
the leader of a batch is one of its calls.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

MAX_BATCH = 64  # one statement stays small; the rest go in the next batch
KEPT_KEYS = 256  # when more keys were crowded, the stale ones are forgotten

# A batch's runner: the items, in the order they came -> one result for each, in that order.
Run = Callable[[list[T]], Sequence[R]]


class _Call(Generic[T, R]):
    __slots__ = ("_done", "batch", "error", "item", "result")

    def __init__(self, item: T) -> None:
        self.item = item
        # held until the call's turn: a lock, not an Event (whose Condition costs a call
        # several times the lock operations; one is all it needs, woken once)
        self._done = threading.Lock()
        self._done.acquire()
        self.batch: list[_Call[T, R]] | None = None  # set when this call is to lead one
        self.result: R | None = None
        self.error: BaseException | None = None

    def wait(self) -> None:
        """Until ``wake``: its result is in, or its batch is this call's to lead."""
        self._done.acquire()

    def wake(self) -> None:
        self._done.release()

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
        self._came = threading.Condition(self._lock)  # a call on its way came, or will not
        self._on_the_way = 0  # calls announced (on_the_way) that have not come yet
        self._announced = threading.local()  # whether this thread's call is one of them
        self._gathering = 0  # leaders waiting for company
        self._waiting: dict[Hashable, list[_Call[T, R]]] = {}  # absent: no batch of the key runs
        self._crowded: dict[Hashable, float] = {}  # when a call of the key last had to wait

    @contextlib.contextmanager
    def on_the_way(self) -> Iterator[None]:
        """Within this block, this thread's call is on its way (its key not known yet) until
        it submits or says it will not (``not_coming``): leaders wait for it meanwhile. A
        block within another of the same thread counts nothing more."""
        with self._lock:
            outer = not getattr(self._announced, "on", False)
            if outer:
                self._on_the_way += 1
                self._announced.on = True
        try:
            yield
        finally:
            if outer:
                self.not_coming()

    def not_coming(self) -> None:
        """This thread's call, if on its way, will not come: leaders need not wait for it."""
        with self._lock:
            self._arrive()

    def _arrive(self) -> None:  # holding the lock
        if getattr(self._announced, "on", False):
            self._announced.on = False
            self._on_the_way -= 1
            if self._gathering:
                self._came.notify_all()

    def submit(self, key: Hashable, item: T, run: Run[T, R]) -> R:
        call: _Call[T, R] = _Call(item)
        busy = False
        with self._lock:
            self._arrive()
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
            call.wait()
            if call.batch is None:  # another call's batch ran it
                return call.outcome()
        if self._linger_s > 0:
            self._gather(key, call.batch, busy)
        self._lead(key, call.batch, run)
        return call.outcome()

    def _gather(self, key: Hashable, batch: list[_Call[T, R]], busy: bool) -> None:
        """Before ``batch`` runs: the company it waited for joins it (see above)."""
        deadline = time.monotonic() + self._linger_s
        with self._lock:
            # none on the way, but the key crowds: whoever comes within linger_s
            blind = busy and not self._on_the_way
            self._gathering += 1
            try:
                while blind or self._on_the_way:
                    left = deadline - time.monotonic()
                    if left <= 0 or len(batch) + len(self._waiting[key]) >= self._max:
                        break
                    self._came.wait(left)
            finally:
                self._gathering -= 1
            waiting = self._waiting[key]
            take = self._max - len(batch)
            batch += waiting[:take]
            self._waiting[key] = waiting[take:]

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
                c.wake()

    def _hand_on(self, key: Hashable) -> None:
        """The calls that came meanwhile go next, led by the first of them."""
        with self._lock:
            waiting = self._waiting[key]
            if not waiting:
                del self._waiting[key]
                return
            nxt, self._waiting[key] = waiting[: self._max], waiting[self._max :]
        nxt[0].batch = nxt
        nxt[0].wake()

"""Calls of one key that come while a batch of it runs go together in the next."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from elysium.combining import Combiner
from tests.stack import wait_for


class Recorder:
    """A batch runner that records its batches and holds the first until released."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.first_running = threading.Event()
        self.release = threading.Event()

    def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(items)
        if len(self.batches) == 1:
            self.first_running.set()
            assert self.release.wait(10)
        if 13 in items:
            raise ValueError("unlucky")
        return [i * 10 for i in items]


def test_a_call_alone_runs_at_once_as_a_batch_of_one() -> None:
    run = Recorder()
    run.release.set()
    assert Combiner[int, int]().submit("k", 4, run) == 40
    assert run.batches == [[4]]


def test_calls_that_come_while_a_batch_runs_go_together_in_the_next() -> None:
    combiner: Combiner[int, int] = Combiner(max_batch=3)
    run = Recorder()
    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(combiner.submit, "k", 1, run)
        assert run.first_running.wait(10)
        others = [pool.submit(combiner.submit, "k", i, run) for i in range(2, 7)]
        other_key = pool.submit(combiner.submit, "other", 9, run)  # not held by "k"
        assert other_key.result(10) == 90
        deadline = time.monotonic() + 10
        while len(combiner._waiting["k"]) < 5:  # all five wait behind the first batch
            assert time.monotonic() < deadline
            time.sleep(0.01)
        run.release.set()
        assert first.result(10) == 10
        assert [f.result(10) for f in others] == [20, 30, 40, 50, 60]  # each its own result
    # in the order they came, at most 3 together
    assert run.batches == [[1], [9], [2, 3, 4], [5, 6]]
    assert combiner._waiting == {}


def test_an_error_is_raised_in_every_call_of_its_batch_and_the_next_batch_runs() -> None:
    combiner: Combiner[int, int] = Combiner()
    run = Recorder()
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(combiner.submit, "k", 1, run)
        assert run.first_running.wait(10)
        unlucky = [pool.submit(combiner.submit, "k", i, run) for i in (12, 13)]
        while len(combiner._waiting["k"]) < 2:
            time.sleep(0.01)
        run.release.set()
        assert first.result(10) == 10
        for f in unlucky:
            with pytest.raises(ValueError, match="unlucky"):
                f.result(10)
    assert combiner.submit("k", 2, run) == 20  # the key is free again
    assert run.batches == [[1], [12, 13], [2]]


def test_while_calls_crowd_a_call_that_finds_none_running_waits_for_company() -> None:
    combiner: Combiner[int, int] = Combiner(linger_s=0.5, busy_s=30)
    run = Recorder()
    started = time.monotonic()
    run.release.set()
    for i in range(3):  # one after another: never crowded, never waiting
        assert combiner.submit("k", i, run) == i * 10
    assert time.monotonic() - started < 0.5
    held = Recorder()
    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(combiner.submit, "k", 1, held)
        assert held.first_running.wait(10)
        crowded = pool.submit(combiner.submit, "k", 2, held)  # has to wait: crowded
        while not combiner._waiting["k"]:
            time.sleep(0.01)
        held.release.set()
        assert (first.result(10), crowded.result(10)) == (10, 20)
        lingering = pool.submit(combiner.submit, "k", 3, held)  # finds none running: waits
        time.sleep(0.05)
        company = pool.submit(combiner.submit, "k", 4, held)
        assert (lingering.result(10), company.result(10)) == (30, 40)
    assert run.batches == [[0], [1], [2]]
    assert held.batches == [[1], [2], [3, 4]]


def test_a_leader_waits_for_a_call_on_its_way_and_takes_it_along() -> None:
    combiner: Combiner[int, int] = Combiner(linger_s=30)  # the wait ends when it comes
    run = Recorder()
    run.release.set()
    announced, go = threading.Event(), threading.Event()

    def coming() -> int:
        with combiner.on_the_way():  # being read: its key not known yet
            announced.set()
            assert go.wait(10)
            return combiner.submit("k", 2, run)

    started = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        second = pool.submit(coming)
        assert announced.wait(10)
        first = pool.submit(combiner.submit, "k", 1, run)  # finds "k" idle: it leads
        wait_for(lambda: combiner._waiting.get("k") == [], 10, "the first call to lead", 0.01)
        go.set()
        assert (first.result(10), second.result(10)) == (10, 20)
    assert run.batches == [[1, 2]]
    assert time.monotonic() - started < 10  # not the 30 s of linger_s


def test_a_call_on_its_way_that_will_not_come_frees_the_leader_at_once() -> None:
    combiner: Combiner[int, int] = Combiner(linger_s=30)
    run = Recorder()
    run.release.set()
    announced, go, done = threading.Event(), threading.Event(), threading.Event()

    def passing() -> None:
        with combiner.on_the_way():
            announced.set()
            assert go.wait(10)
            combiner.not_coming()  # e.g. an enrollment that cannot go together
            assert done.wait(10)  # still in the block: not_coming is what freed the leader

    started = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        passer = pool.submit(passing)
        assert announced.wait(10)
        first = pool.submit(combiner.submit, "k", 1, run)
        wait_for(lambda: combiner._waiting.get("k") == [], 10, "the first call to lead", 0.01)
        go.set()
        assert first.result(10) == 10
        done.set()
        passer.result(10)
    assert run.batches == [[1]]
    assert time.monotonic() - started < 10
    assert combiner._on_the_way == 0


def test_a_block_on_the_way_within_another_counts_the_call_once() -> None:
    combiner: Combiner[int, int] = Combiner(linger_s=30)
    with combiner.on_the_way():
        with combiner.on_the_way():
            assert combiner._on_the_way == 1
        assert combiner._on_the_way == 1  # the outer block still announces it
    assert combiner._on_the_way == 0

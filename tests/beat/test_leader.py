"""Exactly one beat sends the schedule, however many run; another takes over when it dies.

No worker consumes the control queue here: the messages beat sent are read back from Redis,
each carrying the pid of the process that sent it.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace

from prometheus_client import REGISTRY

from beat.leader import BeatLease
from elysium.queue import (
    CONTROL_EXPIRE,
    CONTROL_JANITOR,
    CONTROL_LIVENESS_SWEEP,
    CONTROL_QUEUE,
    CONTROL_RECONCILE_ALL,
)
from elysium.settings import Settings
from tests.beat.conftest import LEASE_S, PERIOD_S, Broker
from tests.stack import Process, wait_for

WORKFLOWS = (CONTROL_LIVENESS_SWEEP, CONTROL_EXPIRE, CONTROL_RECONCILE_ALL, CONTROL_JANITOR)


def leader_pid(broker: Broker, beats: list[Process]) -> int:
    """The pid of the beat that is sending (waits for its first message)."""
    sent = wait_for(lambda: broker.waiting(CONTROL_QUEUE), 20, "beat to send its first run")
    pids = {m.pid for m in sent}  # type: ignore[attr-defined]
    assert len(pids) == 1 and pids <= {b.pid for b in beats}, pids
    return pids.pop()


def test_two_beats_send_each_run_once(start_beat: Callable[[str], Process], broker: Broker) -> None:
    beats = [start_beat("a"), start_beat("b")]
    leader = leader_pid(broker, beats)
    broker.clear(CONTROL_QUEUE)

    window_s = 4.0
    time.sleep(window_s)
    sent = broker.waiting(CONTROL_QUEUE)

    assert {m.pid for m in sent} == {leader}
    runs = Counter(m.task for m in sent)
    expected = window_s / PERIOD_S
    for task in WORKFLOWS:
        # Once per period: two senders would double it.
        assert 0.6 * expected <= runs[task] <= expected + 1, runs


def test_when_the_leader_is_killed_another_beat_takes_over_within_the_lease(
    start_beat: Callable[[str], Process], broker: Broker
) -> None:
    beats = [start_beat("a"), start_beat("b")]
    leader = leader_pid(broker, beats)
    (dead,) = [b for b in beats if b.pid == leader]
    (other,) = [b for b in beats if b.pid != leader]

    dead.kill()
    killed_at = time.monotonic()
    broker.clear(CONTROL_QUEUE)
    wait_for(lambda: broker.waiting(CONTROL_QUEUE), LEASE_S * 3, "the other beat to take over")
    took_over_s = time.monotonic() - killed_at

    assert {m.pid for m in broker.waiting(CONTROL_QUEUE)} == {other.pid}
    # The lease lapses LEASE_S after its last renewal; the follower looks every LEASE_S / 3.
    assert took_over_s <= LEASE_S + LEASE_S / 3 + 1.0, took_over_s
    assert other.alive(), other.log()


def test_a_leader_that_stops_cleanly_hands_over_without_waiting_for_the_lease(
    start_beat: Callable[[str], Process], broker: Broker
) -> None:
    beats = [start_beat("a"), start_beat("b")]
    leader = leader_pid(broker, beats)
    (stopping,) = [b for b in beats if b.pid == leader]
    (other,) = [b for b in beats if b.pid != leader]

    stopping.stop()
    stopped_at = time.monotonic()
    broker.clear(CONTROL_QUEUE)
    wait_for(lambda: broker.waiting(CONTROL_QUEUE), LEASE_S * 3, "the other beat to take over")

    assert {m.pid for m in broker.waiting(CONTROL_QUEUE)} == {other.pid}
    assert time.monotonic() - stopped_at < LEASE_S, "the lease was not released"


def test_of_two_leases_in_contention_only_one_is_held_and_the_other_follows_it(
    beat_settings: Settings,
) -> None:
    settings = replace(beat_settings, beat_lease_s=1.0)
    a = BeatLease(settings, holder="a")
    b = BeatLease(settings, holder="b")
    try:
        assert a.held()
        assert not b.held()
        a.release()
        time.sleep(b.wait_s())
        assert b.held()
    finally:
        a.release()
        b.release()


def test_a_holder_that_stops_renewing_loses_the_lease_to_the_other(beat_settings: Settings) -> None:
    settings = replace(beat_settings, beat_lease_s=1.0)
    a = BeatLease(settings, holder="a")
    b = BeatLease(settings, holder="b")
    try:
        assert a.held()
        deadline = time.monotonic() + 3
        while not b.held() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert b.held()
        assert not a.held()  # a asks again, finds b holding it
    finally:
        a.release()
        b.release()


def test_the_leader_gauge_says_whether_this_process_sends(beat_settings: Settings) -> None:
    a = BeatLease(beat_settings, holder="a")
    b = BeatLease(beat_settings, holder="b")
    try:
        assert a.held() and REGISTRY.get_sample_value("elysium_beat_leader") == 1
        assert not b.held() and REGISTRY.get_sample_value("elysium_beat_leader") == 0
    finally:
        a.release()
        b.release()

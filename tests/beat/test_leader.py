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
from psycopg import Connection
from psycopg.rows import DictRow

from beat.leader import LEASE_NAME, BeatLease
from db.leases import get_lease
from elysium.queue import (
    CONTROL_EXPIRE,
    CONTROL_JANITOR,
    CONTROL_LIVENESS_SWEEP,
    CONTROL_QUEUE,
    CONTROL_RECONCILE_ALL,
)
from elysium.settings import Settings
from tests.beat.conftest import LEASE_S, PERIOD_S, Broker, Sent
from tests.stack import Process, wait_for

WORKFLOWS = (CONTROL_LIVENESS_SWEEP, CONTROL_EXPIRE, CONTROL_RECONCILE_ALL, CONTROL_JANITOR)


def leader_pid(broker: Broker, beats: list[Process]) -> int:
    """The pid of the beat that is sending (waits for its first message)."""
    sent = wait_for(lambda: broker.waiting(CONTROL_QUEUE), 20, "beat to send its first run")
    pids = {m.pid for m in sent}  # type: ignore[attr-defined]
    assert len(pids) == 1 and pids <= {b.pid for b in beats}, pids
    return pids.pop()


def sent_runs(broker: Broker, runs: int) -> list[Sent]:
    """The messages waiting on the control queue once each workflow has ``runs`` (else none)."""
    sent = broker.waiting(CONTROL_QUEUE)
    counts = Counter(m.task for m in sent)
    return sent if all(counts[task] >= runs for task in WORKFLOWS) else []


def test_two_beats_send_each_run_once(start_beat: Callable[[str], Process], broker: Broker) -> None:
    beats = [start_beat("a"), start_beat("b")]
    leader = leader_pid(broker, beats)
    started = time.monotonic()
    broker.clear(CONTROL_QUEUE)

    # Runs spanning more than a lease: the follower asked for the lease several times.
    enough = int(LEASE_S / PERIOD_S) + 1
    sent = wait_for(lambda: sent_runs(broker, enough), 60, f"{enough} runs of every workflow")
    window_s = time.monotonic() - started

    assert {m.pid for m in sent} == {leader}  # type: ignore[attr-defined]
    runs = Counter(m.task for m in sent)  # type: ignore[attr-defined]
    for task in WORKFLOWS:
        # At most once per period however slow the machine: two senders would double it.
        assert runs[task] <= window_s / PERIOD_S + 2, (runs, window_s)


def test_when_the_leader_is_killed_another_beat_takes_over_once_the_lease_lapses(
    start_beat: Callable[[str], Process], broker: Broker
) -> None:
    beats = [start_beat("a"), start_beat("b")]
    leader = leader_pid(broker, beats)
    (dead,) = [b for b in beats if b.pid == leader]
    (other,) = [b for b in beats if b.pid != leader]

    dead.kill()
    broker.clear(CONTROL_QUEUE)
    # A generous bound: how soon it takes over (LEASE_S and a look) is a figure for bench/.
    wait_for(lambda: broker.waiting(CONTROL_QUEUE), 30, "the other beat to take over")

    assert {m.pid for m in broker.waiting(CONTROL_QUEUE)} == {other.pid}
    assert other.alive(), other.log()


def test_a_leader_that_stops_cleanly_releases_the_lease_and_the_other_takes_over(
    start_beat: Callable[[str], Process], broker: Broker, conn: Connection[DictRow]
) -> None:
    beats = [start_beat("a"), start_beat("b")]
    leader = leader_pid(broker, beats)
    (stopping,) = [b for b in beats if b.pid == leader]
    (other,) = [b for b in beats if b.pid != leader]

    stopping.stop()
    # Released, not left to lapse: gone, or already the other beat's (never the stopped one's).
    lease = get_lease(conn, LEASE_NAME)
    broker.clear(CONTROL_QUEUE)
    wait_for(lambda: broker.waiting(CONTROL_QUEUE), 30, "the other beat to take over")

    assert lease is None or f":{stopping.pid}:" not in lease["holder"], lease
    assert {m.pid for m in broker.waiting(CONTROL_QUEUE)} == {other.pid}


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
        wait_for(b.held, 30, "b to take the released lease")
    finally:
        a.release()
        b.release()


def test_a_holder_that_stops_renewing_loses_the_lease_to_the_other(beat_settings: Settings) -> None:
    settings = replace(beat_settings, beat_lease_s=1.0)
    a = BeatLease(settings, holder="a")
    b = BeatLease(settings, holder="b")
    try:
        assert a.held()
        wait_for(b.held, 30, "b to take the lapsed lease", interval=0.05)
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

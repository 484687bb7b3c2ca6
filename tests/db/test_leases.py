"""Leases: one holder at a time, renewed by its holder, taken over once it lapses."""

from __future__ import annotations

from psycopg import Connection
from psycopg.rows import DictRow

from db.leases import acquire_lease, get_lease, release_lease
from tests.stack import wait_for


def test_the_first_holder_takes_a_free_lease(conn: Connection[DictRow]) -> None:
    assert acquire_lease(conn, "beat", "a", 5) is not None
    lease = get_lease(conn, "beat")
    assert lease is not None and lease["holder"] == "a" and lease["live"]


def test_another_holder_cannot_take_a_running_lease(conn: Connection[DictRow]) -> None:
    acquire_lease(conn, "beat", "a", 5)
    assert acquire_lease(conn, "beat", "b", 5) is None
    assert get_lease(conn, "beat")["holder"] == "a"  # type: ignore[index]


def test_the_holder_renews_its_lease_further(conn: Connection[DictRow]) -> None:
    first = acquire_lease(conn, "beat", "a", 5)
    renewed = acquire_lease(conn, "beat", "a", 10)
    assert first is not None and renewed is not None and renewed > first


def test_a_lapsed_lease_goes_to_the_next_holder(conn: Connection[DictRow]) -> None:
    acquire_lease(conn, "beat", "a", 0.2)
    wait_for(lambda: not get_lease(conn, "beat")["live"], 30, "the lease to lapse")  # type: ignore[index]
    assert acquire_lease(conn, "beat", "b", 5) is not None
    assert get_lease(conn, "beat")["holder"] == "b"  # type: ignore[index]
    assert acquire_lease(conn, "beat", "a", 5) is None


def test_a_released_lease_is_free_at_once_but_only_its_holder_releases_it(
    conn: Connection[DictRow],
) -> None:
    acquire_lease(conn, "beat", "a", 60)
    assert not release_lease(conn, "beat", "b")
    assert release_lease(conn, "beat", "a")
    assert acquire_lease(conn, "beat", "b", 60) is not None


def test_leases_of_different_names_are_independent(conn: Connection[DictRow]) -> None:
    assert acquire_lease(conn, "beat", "a", 60) is not None
    assert acquire_lease(conn, "other", "b", 60) is not None

"""Which writes announce a new peer config on ``peer_config`` (migration 0007), and the one
listener per process that wakes the requests waiting for them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg import Connection
from psycopg.rows import DictRow

from db.config_notify import CHANNEL, interface_key, peer_key
from db.notify import Notifications
from db.peer_liveness import record_liveness
from elysium.errors import Unavailable
from tests.db.test_peer_liveness import iface, peer

__all__ = ["iface"]  # the fixture, shared


def notes(conn: Connection[DictRow], database_url: str, action: str, *params: Any) -> set[str]:
    """The payloads ``peer_config`` carries while ``action`` runs."""
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute("LISTEN peer_config")
        conn.execute(action, params)  # type: ignore[arg-type]
        return {n.payload for n in listener.notifies(timeout=0.5)}


def test_interface_hub_and_routing_changes_notify_and_liveness_does_not(
    conn: Connection[DictRow], clean_db: str, iface: dict[str, Any]
) -> None:
    i = f"i{iface['id']}"
    p = peer(conn, iface)
    own = f"p{p['id']}"
    assert notes(conn, clean_db, "UPDATE interfaces SET dns = '{10.30.0.53}'") == {i}
    assert notes(conn, clean_db, "UPDATE interfaces SET dns = dns") == set()
    assert notes(conn, clean_db, "UPDATE interfaces SET status = 'ready'") == set()
    assert notes(conn, clean_db, "UPDATE hubs SET endpoint = 'hub-b.example'") == {i}
    assert notes(conn, clean_db, "UPDATE hubs SET last_heartbeat_at = now()") == set()
    assert notes(conn, clean_db, "UPDATE peers SET subnets = '{192.168.7.0/24}'") == {i, own}
    assert notes(conn, clean_db, "UPDATE peers SET enabled = false") == {i, own}
    assert notes(conn, clean_db, "UPDATE peers SET rx_bytes = 5, online = true") == set()
    with psycopg.connect(clean_db, autocommit=True) as listener:
        listener.execute("LISTEN peer_config")
        record_liveness(
            conn,
            iface["id"],
            [p["public_key"]],
            [datetime.now(UTC)],
            [1],
            [2],
            ["198.18.0.5:4000"],
            180,
        )
        assert list(listener.notifies(timeout=0.3)) == []
    assert notes(conn, clean_db, "DELETE FROM peers") == {i}


def test_one_listener_wakes_only_the_waiters_a_change_names(
    conn: Connection[DictRow], clean_db: str, iface: dict[str, Any]
) -> None:
    p, other = peer(conn, iface), peer(conn, iface)
    listener = Notifications(clean_db, [CHANNEL])
    try:
        with (
            listener.subscribe([interface_key(iface["id"]), peer_key(p["id"])]) as mine,
            listener.subscribe([peer_key(other["id"])]) as theirs,
        ):
            assert listener.waiting() == 2
            conn.execute(
                "UPDATE peers SET public_key = %s WHERE id = %s",
                ("Eo+zXx7tYr4uJ5fXOWbVgVEqLQJP1GnrqZ5H6PwyZ0I=", p["id"]),
            )
            assert mine.wait(2)
            assert not theirs.wait(0.3)
        assert listener.waiting() == 0
    finally:
        listener.close()


def test_a_full_listener_refuses_more_waiters(clean_db: str) -> None:
    listener = Notifications(clean_db, [CHANNEL], max_waiters=1)
    try:
        with listener.subscribe(["i1"]):
            with pytest.raises(Unavailable) as refused, listener.subscribe(["i2"]):
                pass
            assert refused.value.code == "too_many_waiting"
    finally:
        listener.close()


def test_waiters_are_woken_when_the_listening_connection_is_lost(clean_db: str) -> None:
    listener = Notifications(clean_db, [CHANNEL])
    try:
        with listener.subscribe(["i1"]) as event:
            with psycopg.connect(clean_db, autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE query = 'LISTEN peer_config' AND datname = current_database()"
                )
            assert event.wait(3)
        with listener.subscribe(["i1"]):  # listening again (subscribe waits for it)
            pass
    finally:
        listener.close()


def test_what_is_read_after_a_mark_stays_new_until_a_notification_names_it(
    conn: Connection[DictRow], clean_db: str, iface: dict[str, Any]
) -> None:
    key, other = interface_key(iface["id"]), interface_key(iface["id"] + 1)
    listener = Notifications(clean_db, [CHANNEL])
    try:
        assert listener.mark() is None  # not listening: nothing may be kept
        with listener.subscribe([key]) as moved:
            mark = listener.mark()
            assert mark is not None and listener.unchanged([key, other], mark)
            conn.execute("UPDATE interfaces SET dns = '{10.30.0.54}'")
            assert moved.wait(2)
            assert not listener.unchanged([key], mark) and listener.unchanged([other], mark)
            later = listener.mark()
            assert listener.unchanged([key], later)
            moved.clear()
            with psycopg.connect(clean_db, autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE query = 'LISTEN peer_config' AND datname = current_database()"
                )
            assert moved.wait(3)
            assert not listener.unchanged([other], later)  # notifications may have been missed
    finally:
        listener.close()

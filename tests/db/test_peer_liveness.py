"""What the control side writes from a hub's dump, and which peers the expiry sweep takes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from psycopg import Connection
from psycopg.rows import DictRow

from db.hubs import create_hub
from db.interfaces import create_interface
from db.peer_liveness import mark_offline_peers, record_liveness
from db.peers import create_peer, expire_due_peers, get_peer
from elysium.keys import generate_private_key, public_key


@pytest.fixture
def iface(conn: Connection[DictRow]) -> dict[str, Any]:
    hub = create_hub(conn, "hub-a", "hub-a.example")
    return create_interface(conn, hub["id"], "wg0", "10.30.0.0/24", None, 51820, None, [], None)


def peer(
    conn: Connection[DictRow], iface: dict[str, Any], expires_at: datetime | None = None
) -> dict[str, Any]:
    with conn.transaction():
        return create_peer(
            conn, iface["id"], "p", public_key(generate_private_key()), (), expires_at, "tests"
        )


def test_a_repeated_handshake_does_not_undo_the_sweeps_offline(
    conn: Connection[DictRow], iface: dict[str, Any]
) -> None:
    p = peer(conn, iface)
    seen = datetime.now(UTC) - timedelta(seconds=10)

    def report(handshake: datetime) -> None:  # a hub judging by 180 s
        key = [p["public_key"]]
        record_liveness(conn, iface["id"], key, [handshake], [1], [1], [None], online_after_s=180)

    report(seen)
    assert get_peer(conn, p["id"])["online"] is True
    assert mark_offline_peers(conn, online_after_s=4) == 1  # the sweep judges by 4 s
    report(seen)  # the same handshake again: no news
    assert get_peer(conn, p["id"])["online"] is False
    report(datetime.now(UTC))  # a new handshake: online again
    assert get_peer(conn, p["id"])["online"] is True


def test_a_dump_is_written_and_recent_handshakes_are_online(
    conn: Connection[DictRow], iface: dict[str, Any]
) -> None:
    fresh, old, silent = peer(conn, iface), peer(conn, iface), peer(conn, iface)
    now = datetime.now(UTC)

    written = record_liveness(
        conn,
        iface["id"],
        [fresh["public_key"], old["public_key"], silent["public_key"]],
        [now - timedelta(seconds=5), now - timedelta(seconds=500), None],
        [100, 200, 0],
        [10, 20, 0],
        ["198.18.0.11:51821", None, None],
        online_after_s=180,
    )

    assert written == 2  # the silent peer's row already said so
    got = get_peer(conn, fresh["id"])
    assert (got["online"], got["rx_bytes"], got["tx_bytes"]) == (True, 100, 10)
    assert got["endpoint"] == "198.18.0.11:51821"
    assert get_peer(conn, old["id"])["online"] is False
    assert get_peer(conn, silent["id"])["last_handshake_at"] is None


def test_the_same_dump_twice_rewrites_nothing_and_unknown_keys_are_ignored(
    conn: Connection[DictRow], iface: dict[str, Any]
) -> None:
    p = peer(conn, iface)
    args = (
        [p["public_key"], public_key(generate_private_key())],
        [datetime.now(UTC), datetime.now(UTC)],
        [1, 1],
        [1, 1],
        [None, None],
    )
    assert record_liveness(conn, iface["id"], *args, online_after_s=180) == 1
    assert record_liveness(conn, iface["id"], *args, online_after_s=180) == 0


def test_peers_whose_handshake_grew_old_go_offline(
    conn: Connection[DictRow], iface: dict[str, Any]
) -> None:
    p = peer(conn, iface)
    record_liveness(
        conn,
        iface["id"],
        [p["public_key"]],
        [datetime.now(UTC) - timedelta(seconds=2)],
        [1],
        [1],
        [None],
        180,
    )
    assert mark_offline_peers(conn, online_after_s=180) == 0
    assert mark_offline_peers(conn, online_after_s=1) == 1
    assert get_peer(conn, p["id"])["online"] is False


def test_the_expiry_sweep_takes_each_peer_past_its_time_once(
    conn: Connection[DictRow], iface: dict[str, Any]
) -> None:
    past = peer(conn, iface, datetime.now(UTC) + timedelta(milliseconds=10))
    future = peer(conn, iface, datetime.now(UTC) + timedelta(hours=1))
    peer(conn, iface)  # no expiry
    conn.execute("SELECT pg_sleep(0.05)")

    with conn.transaction():
        expired = expire_due_peers(conn)

    assert [(e["id"], e["hub"], e["public_key"]) for e in expired] == [
        (past["id"], "hub-a", past["public_key"])
    ]
    assert get_peer(conn, past["id"])["status"] == "expired"
    assert get_peer(conn, future["id"])["status"] == "pending"
    assert expire_due_peers(conn) == []

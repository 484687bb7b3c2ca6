"""Followers woken together share one read of their interface (``services.config_views``):
kept by the listener's generation of the interface's key, read again when it moves, and the
config each follower gets from it is the one it would read alone."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import Connection
from psycopg.rows import DictRow

from db.config_notify import CHANNEL, interface_key
from db.notify import Notifications
from services.config_views import ConfigViews
from services.peer_self import current_config
from tests.db.test_peer_liveness import iface, peer

__all__ = ["iface"]  # the fixture, shared


def test_one_read_per_generation_and_the_same_config_as_read_alone(
    conn: Connection[DictRow], clean_db: str, iface: dict[str, Any]
) -> None:
    first, second = peer(conn, iface), peer(conn, iface)
    conn.execute("UPDATE peers SET subnets = '{192.168.40.0/24}' WHERE id = %s", (first["id"],))
    conn.execute("UPDATE interfaces SET direct = true")
    listener, views = Notifications(clean_db, [CHANNEL]), ConfigViews(size=1)
    key = interface_key(iface["id"])
    try:
        with listener.subscribe([key]) as moved:
            token = listener.generation(key)
            shared = views.view(conn, iface["id"], token)
            assert views.view(conn, iface["id"], token) is shared  # kept: not read again
            for p in (first, second):
                assert current_config(conn, p["id"], shared) == current_config(conn, p["id"])

            conn.execute("UPDATE interfaces SET dns = '{10.30.0.53}'")
            assert moved.wait(2)
            fresh = views.view(conn, iface["id"], listener.generation(key))
            assert fresh is not shared and fresh.iface["dns"] == ["10.30.0.53"]
            assert (
                current_config(conn, second["id"], fresh)["allowed_ips"]
                == current_config(conn, second["id"])["allowed_ips"]
            )
            assert "192.168.40.0/24" in current_config(conn, second["id"], fresh)["allowed_ips"]
            # Not listening: read, never kept.
            assert views.view(conn, iface["id"], None) is not fresh
    finally:
        listener.close()


def test_a_view_of_another_interface_is_not_used(
    conn: Connection[DictRow], clean_db: str, iface: dict[str, Any]
) -> None:
    p = peer(conn, iface)
    with psycopg.connect(clean_db, autocommit=True, row_factory=psycopg.rows.dict_row) as other:
        other.execute(
            "INSERT INTO interfaces (hub_id, name, network, listen_port)"
            " SELECT hub_id, 'wg1', '10.31.0.0/24', 51821 FROM interfaces WHERE id = %s",
            (iface["id"],),
        )
        wg1 = other.execute("SELECT id FROM interfaces WHERE name = 'wg1'").fetchone()
    assert wg1 is not None
    elsewhere = ConfigViews().view(conn, wg1["id"], None)
    assert current_config(conn, p["id"], elsewhere) == current_config(conn, p["id"])

"""Followers woken together share one read of their interface (``services.config_views``):
kept while no notification names the interface, read again when one does (or when it is
old), and the config each follower gets from it is the one it would read alone; a peer named
by a notification since gets its own row read afresh."""

from __future__ import annotations

import time
from typing import Any

from psycopg import Connection
from psycopg.rows import DictRow

from db.config_notify import CHANNEL, interface_key, peer_key
from db.notify import Notifications
from services.config_views import ConfigViews
from services.peer_self import current_config, woken_config
from tests.db.test_peer_liveness import iface, peer

__all__ = ["iface"]  # the fixture, shared


def test_one_read_per_state_and_the_same_config_as_read_alone(
    conn: Connection[DictRow], clean_db: str, iface: dict[str, Any]
) -> None:
    first, second = peer(conn, iface), peer(conn, iface)
    conn.execute("UPDATE peers SET subnets = '{192.168.40.0/24}' WHERE id = %s", (first["id"],))
    conn.execute("UPDATE interfaces SET direct = true")
    notes, views = Notifications(clean_db, [CHANNEL]), ConfigViews(size=1)
    keys = [interface_key(iface["id"]), peer_key(second["id"])]
    try:
        with notes.subscribe(keys) as moved:
            shared = views.view(conn, iface["id"], notes)
            assert views.view(conn, iface["id"], notes) is shared  # kept: not read again
            for p in (first, second):
                alone = current_config(conn, p["id"])
                assert woken_config(conn, p["id"], iface["id"], views, notes) == alone
                assert current_config(conn, p["id"], views, notes) == alone

            conn.execute("UPDATE interfaces SET dns = '{10.30.0.53}'")
            assert moved.wait(2)
            moved.clear()
            fresh = views.view(conn, iface["id"], notes)
            assert fresh is not shared and fresh.iface["dns"] == ["10.30.0.53"]
            now = woken_config(conn, second["id"], iface["id"], views, notes)
            assert now == current_config(conn, second["id"])
            assert "192.168.40.0/24" in now["allowed_ips"] and now["dns"] == ["10.30.0.53"]

            # The peer's own row moves (no interface notification): read afresh for it.
            conn.execute("UPDATE peers SET enabled = false WHERE id = %s", (first["id"],))
            conn.execute(
                "UPDATE peers SET public_key = %s WHERE id = %s",
                ("Eo+zXx7tYr4uJ5fXOWbVgVEqLQJP1GnrqZ5H6PwyZ0I=", second["id"]),
            )
            assert moved.wait(2)
            got = woken_config(conn, second["id"], iface["id"], views, notes)
            assert got["public_key"] == "Eo+zXx7tYr4uJ5fXOWbVgVEqLQJP1GnrqZ5H6PwyZ0I="
            assert got == current_config(conn, second["id"])
            assert views.view(conn, iface["id"], None) is not fresh  # no listener: not kept
    finally:
        notes.close()


def test_an_old_view_is_read_again(
    conn: Connection[DictRow], clean_db: str, iface: dict[str, Any]
) -> None:
    notes, views = Notifications(clean_db, [CHANNEL]), ConfigViews(max_age_s=0.3)
    try:
        with notes.subscribe([interface_key(iface["id"])]):
            kept = views.view(conn, iface["id"], notes)
            assert views.view(conn, iface["id"], notes) is kept
            time.sleep(0.4)  # what no notification announces (peers across the mesh)
            assert views.view(conn, iface["id"], notes) is not kept
    finally:
        notes.close()


def test_a_first_read_newer_than_the_kept_view_reads_it_again(
    conn: Connection[DictRow], clean_db: str, iface: dict[str, Any]
) -> None:
    p = peer(conn, iface)
    notes, views = Notifications(clean_db, [CHANNEL]), ConfigViews()
    try:
        with notes.subscribe([interface_key(iface["id"])]):
            kept = views.view(conn, iface["id"], notes)
            # The peer's own row moves: no interface notification, so the view is still kept.
            conn.execute(
                "UPDATE peers SET public_key = %s WHERE id = %s",
                ("Eo+zXx7tYr4uJ5fXOWbVgVEqLQJP1GnrqZ5H6PwyZ0I=", p["id"]),
            )
            assert views.view(conn, iface["id"], notes) is kept

            got = current_config(conn, p["id"], views, notes)

            assert got == current_config(conn, p["id"])
            assert got["public_key"] == "Eo+zXx7tYr4uJ5fXOWbVgVEqLQJP1GnrqZ5H6PwyZ0I="
            assert views.view(conn, iface["id"], notes) is not kept  # read again, and kept
    finally:
        notes.close()

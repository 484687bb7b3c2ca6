"""What a peer asks about itself: its config, followed live by version."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from psycopg import Connection
from psycopg.rows import DictRow

from db.config_notify import ConfigNotifications, interface_key, peer_key
from db.peers import get_peer, peer_config
from elysium.errors import Forbidden
from elysium.states import is_live_peer

Connect = Callable[[], AbstractContextManager[Connection[DictRow]]]


def current_config(conn: Connection[DictRow], peer_id: int) -> dict[str, Any]:
    """The peer's config with its version; a peer no longer live gets a 403 ``peer_not_live``."""
    peer = get_peer(conn, peer_id)
    if not is_live_peer(peer["status"]):
        raise Forbidden(f"peer {peer_id} is {peer['status']}", code="peer_not_live")
    return peer_config(conn, peer_id)


def follow_config(
    connect: Connect,
    notifications: ConfigNotifications,
    peer_id: int,
    version: str | None,
    wait_s: float,
) -> dict[str, Any]:
    """The peer's config at once when its version is not ``version``; else when it moves,
    or as it is after ``wait_s``. Waiting holds no database connection: the process's one
    listener wakes it when a notification names the peer or its interface."""
    deadline = time.monotonic() + wait_s
    with connect() as conn:
        config = current_config(conn, peer_id)
    if version is None or wait_s <= 0 or config["version"] != version:
        return config
    keys = (interface_key(config["interface_id"]), peer_key(peer_id))
    with notifications.subscribe(keys) as moved:
        with connect() as conn:  # again, now that no change can slip past unnoticed
            config = current_config(conn, peer_id)
        while config["version"] == version:
            left = deadline - time.monotonic()
            if left <= 0 or not moved.wait(left):
                break
            moved.clear()
            with connect() as conn:
                config = current_config(conn, peer_id)
    return config

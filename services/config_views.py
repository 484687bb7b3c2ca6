"""What every follower of one interface shares when a change wakes them together: the
interface's row, the subnets its peers route, and on a direct interface its
``services.direct.Snapshot`` (peer rows, compiled policy, who gets whom per class of peers,
the inbound rules). Read once per state of the interface in each API process, so each woken
follower only reads its own row and picks its slice: a fan-out to 1,000 followers reads the
interface's 1,000 peer rows once, not 1,000 times.

A state is named by ``db.notify.Notifications.generation`` of the interface's key, taken
before reading: it changes with every notification naming the interface (and whenever the
listener may have missed one), so a kept view is never older than the last notification.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from psycopg import Connection
from psycopg.rows import DictRow

from db.interfaces import get_interface
from db.peers import interface_subnets
from db.rows import InterfaceRow
from services.direct import Snapshot, snapshot

# Views kept per process, the most recently used first out last. A wake-up touches the one
# interface a notification names (a hub's endpoint: each of its interfaces), so a few would
# do; 32 leaves room for many interfaces waking at once while bounding memory (a view of a
# 1,000-peer direct interface holds its rows and entries, about 2 MB).
MAX_VIEWS = 32


@dataclass(frozen=True)
class InterfaceView:
    """One interface as all of its peers' configs share it at one state."""

    iface: InterfaceRow
    subnets: list[tuple[int, str]]  # (peer id, subnet): ``db.peers.interface_subnets``
    snap: Snapshot | None  # on a direct interface


def read_view(conn: Connection[DictRow], interface_id: int) -> InterfaceView:
    """The interface's :class:`InterfaceView` as the database has it now."""
    iface = get_interface(conn, interface_id)
    snap = snapshot(conn, iface) if iface["direct"] else None
    return InterfaceView(iface, interface_subnets(conn, interface_id), snap)


class ConfigViews:
    """A process's views by interface, the latest state of each only (a waiter always wants
    the newest), at most ``size`` interfaces."""

    def __init__(self, size: int = MAX_VIEWS) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._views: OrderedDict[int, tuple[Any, InterfaceView]] = OrderedDict()
        self._making: dict[int, threading.Lock] = {}

    def view(self, conn: Connection[DictRow], interface_id: int, token: Any) -> InterfaceView:
        """The view for state ``token`` (taken before this call); read once for all who ask
        with the same token, the others waiting for it. ``None``: read, not kept."""
        if token is None:
            return read_view(conn, interface_id)
        kept = self._kept(interface_id, token)
        if kept is not None:
            return kept
        with self._lock:
            making = self._making.setdefault(interface_id, threading.Lock())
        with making:
            kept = self._kept(interface_id, token)
            if kept is not None:
                return kept
            made = read_view(conn, interface_id)
            with self._lock:
                self._views[interface_id] = (token, made)
                self._views.move_to_end(interface_id)
                while len(self._views) > self.size:
                    gone, _ = self._views.popitem(last=False)
                    self._making.pop(gone, None)
            return made

    def _kept(self, interface_id: int, token: Any) -> InterfaceView | None:
        with self._lock:
            kept = self._views.get(interface_id)
            if kept is None or kept[0] != token:
                return None
            self._views.move_to_end(interface_id)
            return kept[1]

"""What every follower of one interface shares when a change wakes them together: the
interface's row, the subnets its peers route, and on a direct interface its
``services.direct.Snapshot`` (peer rows, compiled policy, who gets whom per class of peers,
the inbound rules). Read once per state of the interface in each API process, so each woken
follower only reads its own row and picks its slice: a fan-out to 1,000 followers reads the
interface's 1,000 peer rows once, not 1,000 times.

A view is kept while no notification named its interface since the ``Notifications.mark``
taken before reading it (and the listener missed none), so it is never older than the last
notification. It also holds every peer's own row (``db.peer_config.config_rows``): a woken
follower takes its row from there unless a notification named the peer itself since, so a
fan-out reads nothing per follower.
What no notification announces (peers of other hubs of the mesh, named by tags) is read
again once a view is ``MAX_AGE_S`` old.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from psycopg import Connection
from psycopg.rows import DictRow

from db.config_notify import interface_key
from db.interfaces import get_interface
from db.notify import Mark, Notifications
from db.peer_config import ConfigRows, config_rows
from db.peers import interface_subnets
from db.rows import InterfaceRow
from services.direct import Snapshot, snapshot

# Views kept per process, the most recently used first out last. A wake-up touches the one
# interface a notification names (a hub's endpoint: each of its interfaces), so a few would
# do; 32 leaves room for many interfaces waking at once while bounding memory (a view of a
# 1,000-peer direct interface holds its rows and entries, about 2 MB).
MAX_VIEWS = 32
MAX_AGE_S = 10.0


@dataclass(frozen=True)
class InterfaceView:
    """One interface as all of its peers' configs share it at one state."""

    iface: InterfaceRow
    subnets: list[tuple[int, str]]  # (peer id, subnet): ``db.peers.interface_subnets``
    snap: Snapshot | None  # on a direct interface
    rows: ConfigRows  # each peer's ``db.peer_config.config_row``
    mark: Mark | None = None  # the notifications it is as new as


def read_view(
    conn: Connection[DictRow], interface_id: int, mark: Mark | None = None
) -> InterfaceView:
    """The interface's :class:`InterfaceView` as the database has it now (``mark``: taken
    before this read)."""
    iface = get_interface(conn, interface_id)
    snap = snapshot(conn, iface) if iface["direct"] else None
    subnets = interface_subnets(conn, interface_id)
    return InterfaceView(iface, subnets, snap, config_rows(conn, interface_id), mark)


class ConfigViews:
    """A process's views by interface, the latest state of each only (a waiter always wants
    the newest), at most ``size`` interfaces."""

    def __init__(self, size: int = MAX_VIEWS, max_age_s: float = MAX_AGE_S) -> None:
        self.size, self.max_age_s = size, max_age_s
        self._lock = threading.Lock()
        self._views: OrderedDict[int, tuple[float, InterfaceView]] = OrderedDict()
        self._making: dict[int, threading.Lock] = {}

    def view(
        self,
        conn: Connection[DictRow],
        interface_id: int,
        notes: Notifications | None,
        fresh: bool = False,
    ) -> InterfaceView:
        """The interface's view, as new as every notification ``notes`` brought: read once
        for all who ask meanwhile, the others waiting for it. No ``notes`` (or not
        listening): read, not kept. ``fresh``: read again now (the caller read newer)."""
        mark = notes.mark() if notes is not None else None  # before reading
        if notes is None or mark is None:
            return read_view(conn, interface_id)
        key = interface_key(interface_id)
        kept = None if fresh else self._kept(interface_id, notes, key)
        if kept is not None:
            return kept
        with self._lock:
            making = self._making.setdefault(interface_id, threading.Lock())
        with making:
            kept = None if fresh else self._kept(interface_id, notes, key)
            if kept is not None:
                return kept
            mark = notes.mark()
            made = read_view(conn, interface_id, mark)
            with self._lock:
                self._views[interface_id] = (time.monotonic(), made)
                self._views.move_to_end(interface_id)
                while len(self._views) > self.size:
                    gone, _ = self._views.popitem(last=False)
                    self._making.pop(gone, None)
            return made

    def _kept(self, interface_id: int, notes: Notifications, key: str) -> InterfaceView | None:
        with self._lock:
            kept = self._views.get(interface_id)
        if kept is None or time.monotonic() - kept[0] > self.max_age_s:
            return None
        if not notes.unchanged([key], kept[1].mark):
            return None
        with self._lock:
            if interface_id in self._views:
                self._views.move_to_end(interface_id)
        return kept[1]

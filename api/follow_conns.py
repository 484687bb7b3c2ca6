"""Follower connections held by the API's gunicorn worker between a follow's answer and its
next wait (api/gunicorn_worker.py).

A follower asks again the moment it is answered, on the same keep-alive connection. Through
gunicorn that next request costs a hand-off to the main thread, a poller registration, a
thread-pool job, gunicorn's request parser and its WSGI environ, and one more hand-off to park
it: most of what a fan-out costs per follower once the answer is shared
(``services.config_views``). Here one thread per worker process waits on those connections
(epoll, one-shot) and reads the next request head itself. A plain follow
(:func:`follow_head`) goes straight to the fast path's park; anything else is given back to
gunicorn with the bytes already read, and gunicorn serves it as it would have.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import re
import select
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gunicorn import SERVER
from gunicorn.util import http_date

from api.peer_self.fast import JSON_ACCEPTED, PATH

HEAD_MAX = 8192  # a follow's head is a few hundred bytes; anything longer goes to gunicorn
READ_CHUNK = 65536
POLL_S = 1.0
IDLE_MAX_S = 30.0  # as gunicorn's keepalive (api/gunicorn_conf.py)
STOPPING_IDLE_MAX_S = 2.0  # as gunicorn's STOP_KEEPALIVE_LINGER, once the worker stops
END = b"\r\n\r\n"

log = logging.getLogger(__name__)
TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Headers that make a request anything but a plain follow: gunicorn reads those (and any
# Connection header but the keep-alive that HTTP/1.1 implies anyway).
UNUSUAL = {b"content-length", b"transfer-encoding", b"expect", b"upgrade"}


@dataclass(frozen=True)
class FollowHead:
    """A follow's request as read: what the fast path needs, and the bytes to give back."""

    raw: bytes
    query: str
    accept: str | None

    def environ(self) -> dict[str, Any]:
        """The few WSGI keys ``api.peer_self.fast.FollowFastPath.answer`` reads."""
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": PATH, "QUERY_STRING": self.query}
        if self.accept is not None:
            environ["HTTP_ACCEPT"] = self.accept
        return environ


def follow_head(raw: bytes) -> FollowHead | None:
    """``raw`` (one whole head, ending in a blank line, nothing after it) as a plain
    ``GET /v1/peer/config?...`` over HTTP/1.1 with no body and at most one JSON ``Accept``;
    None for anything else."""
    lines = raw[: -len(END)].split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[0] != b"GET" or parts[2] != b"HTTP/1.1":
        return None
    path, _, query = parts[1].partition(b"?")
    if path != PATH.encode():
        return None
    accept: str | None = None
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not TOKEN.fullmatch(name):
            return None
        name = name.lower()
        if name in UNUSUAL:
            return None
        if name == b"connection" and value.strip().lower() != b"keep-alive":
            return None
        if name == b"accept":
            if accept is not None:
                return None
            accept = value.strip().decode("latin-1")
            if accept not in JSON_ACCEPTED:
                return None
    try:
        return FollowHead(raw, query.decode("ascii"), accept)
    except UnicodeDecodeError:
        return None


def ok_response(body: bytes) -> bytes:
    """A 200 with a JSON body, headed as gunicorn heads the fast path's answers."""
    head = (
        f"HTTP/1.1 200 OK\r\nServer: {SERVER}\r\nDate: {http_date()}\r\n"
        "Connection: keep-alive\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


class _Held:
    """One connection waiting here for its next request."""

    __slots__ = ("conn", "data", "since")

    def __init__(self, conn: Any) -> None:
        self.conn, self.data, self.since = conn, b"", time.monotonic()


class FollowerConnections:
    """The worker's connections between a follow's answer and the follower's next request.

    ``on_head(conn, head)``: a whole plain follow came (on this class's thread: park it, or
    give it back); ``give_back(conn, data)``: anything else, with the bytes read so far (the
    worker unreads them into gunicorn's parser); ``drop(conn)``: the follower closed the
    connection or stayed silent for ``IDLE_MAX_S`` (``STOPPING_IDLE_MAX_S`` once ``alive()``
    is false; the worker closes and uncounts it)."""

    def __init__(
        self,
        on_head: Callable[[Any, FollowHead], None],
        give_back: Callable[[Any, bytes], None],
        drop: Callable[[Any], None],
        alive: Callable[[], bool],
    ) -> None:
        self._on_head, self._give_back, self._drop = on_head, give_back, drop
        self._alive = alive
        self._epoll = select.epoll()
        self._lock = threading.Lock()
        self._held: dict[int, _Held] = {}  # by file descriptor, registered in the epoll
        self._idle: collections.deque[_Held] = collections.deque()  # oldest first
        self._thread = threading.Thread(target=self._run, name="follower-conns", daemon=True)
        self._thread.start()

    def watch(self, conn: Any) -> None:
        """Wait here for ``conn``'s next request (from any thread; ``conn`` is unused
        elsewhere until a callback hands it on)."""
        conn.sock.setblocking(False)
        held = _Held(conn)
        fd = conn.sock.fileno()
        with self._lock:
            known = fd in self._held
            self._held[fd] = held
            self._idle.append(held)
        flags = select.EPOLLIN | select.EPOLLONESHOT
        if known:
            self._epoll.modify(fd, flags)
        else:
            self._epoll.register(fd, flags)

    def _release(self, fd: int) -> None:
        """Forget ``fd`` before its connection is handed on (it may be closed and its number
        reused)."""
        with self._lock:
            self._held.pop(fd, None)
        with contextlib.suppress(OSError, ValueError):
            self._epoll.unregister(fd)

    def _run(self) -> None:
        while True:
            for fd, _ in self._epoll.poll(POLL_S):
                with self._lock:
                    held = self._held.get(fd)
                if held is None:
                    continue
                try:
                    self._readable(fd, held)
                except Exception:  # this thread must go on for the others: close this one
                    log.exception("reading a follower's request failed")
                    self._release(fd)
                    self._drop(held.conn)
            self._expire()

    def _readable(self, fd: int, held: _Held) -> None:
        sock = held.conn.sock
        closed = False
        try:
            while len(held.data) <= HEAD_MAX:
                chunk = sock.recv(READ_CHUNK)
                if not chunk:
                    closed = True
                    break
                held.data += chunk
        except (ssl.SSLWantReadError, BlockingIOError):
            pass
        except (OSError, ssl.SSLError):
            closed = True
        if closed:
            self._release(fd)
            self._drop(held.conn)
            return
        data = held.data
        if END not in data and len(data) <= HEAD_MAX:  # a head in pieces: wait for the rest
            self._epoll.modify(fd, select.EPOLLIN | select.EPOLLONESHOT)
            return
        self._release(fd)
        head = follow_head(data) if data.endswith(END) and data.count(END) == 1 else None
        if head is None:
            self._give_back(held.conn, data)
        else:
            self._on_head(held.conn, head)

    def _expire(self) -> None:
        """Drop connections silent for ``IDLE_MAX_S`` since they came here."""
        cutoff = time.monotonic() - (IDLE_MAX_S if self._alive() else STOPPING_IDLE_MAX_S)
        while True:
            with self._lock:
                if not self._idle or self._idle[0].since > cutoff:
                    return
                held = self._idle.popleft()
                fd = held.conn.sock.fileno()
                if self._held.get(fd) is not held:
                    continue  # it asked since (or went elsewhere)
            self._release(fd)
            self._drop(held.conn)

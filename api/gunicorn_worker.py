"""The API's gunicorn worker: gthread that hands the verified client certificate to the app and
lets a config follow (``GET /v1/peer/config?version=V&wait=N``) wait without a thread.

Client certificate: gunicorn verifies client certificates (``ca_certs``, ``cert_reqs``) but
does not pass them to WSGI. This worker reads the peer certificate from the TLS socket of
each request and puts its DER bytes in ``environ["elysium.client_cert_der"]`` (None when there
is none). The key is always overwritten, and request headers become ``HTTP_*`` keys, so a
client can never supply it.

Waiting without a thread: each request also gets ``environ["elysium.parking"]``, a
:class:`ParkedRequest` (``db.notify.Parking``). A view that must wait (a config follow, a job
wait) subscribes it to the process's notifications and raises :class:`Parked` out of the
app; the connection is then held by that subscription alone (no thread, no poller entry)
until a notification or the wait's deadline calls its ``set``, which serves the same request
again on one of a few resume threads. A thousand waiters cost a thousand sockets and small
objects, not a thousand threads; a change wakes them in the order they are resumed,
``RESUME_THREADS`` at a time (the database pool bounds what would run at once anyway). So
the worker's threads (``ELYSIUM_API_THREADS``) only bound the requests being worked on.

A plain enrollment (``POST /v1/enroll``) skips the app too when nothing about it is unusual
(``api/enroll/fast.py``).

A follower's two hot calls, its next wait and its answer when woken, skip the app when nothing
about them is unusual (``api/peer_self/fast.py``), and skip gunicorn too: between the two, the
follower's connection waits on this worker's own thread (``api/follow_conns.py``), which reads
its next request and parks it; a woken follower's answer is written from the resume thread
that made it, and its connection goes straight back to that thread.
"""

from __future__ import annotations

import heapq
import itertools
import queue
import ssl
import threading
import time
from collections.abc import Sequence
from concurrent import futures
from typing import Any, NoReturn

from gunicorn.workers.gthread import ThreadWorker

from api.auth import CLIENT_CERT_ENVIRON
from api.enroll.fast import EnrollFastPath
from api.follow_conns import FollowerConnections, FollowHead, ok_response
from api.peer_self.fast import PATH, FollowFastPath
from api.state import EXTENSION, PARKING_ENVIRON, ApiState
from db.notify import Mark, Notifications
from services.peer_self import FollowMemo

# Threads per worker process that serve parked requests again (a wake-up reads one row and
# writes one answer: a few keep both cores busy; more would only queue on the database pool).
RESUME_THREADS = 8
MEMO_ATTRIBUTE = "elysium_memo"  # on gunicorn's connection object
CALLER_ATTRIBUTE = "elysium_caller"  # on it too: (api.auth.Caller, the mark taken before)


class Parked(BaseException):  # not Exception: Flask must not turn it into a 500
    """Raised by a view (``ParkedRequest.park``) to leave its request waiting."""


class ParkedRequest:
    """One request's state across the calls that serve it (``db.notify.Parking``)
    and what a notification wakes (``db.notify.Waiter``)."""

    def __init__(
        self, worker: ClientCertWorker, conn: Any, req: Any, head: FollowHead | None = None
    ) -> None:
        # ``req``: gunicorn's request; or ``head``: a follow read by api/follow_conns.py
        self.worker, self.conn, self.req, self.head = worker, conn, req, head
        self.started = time.monotonic()
        self.resumed = False
        self.base: dict[str, Any] | None = None
        # What the view remembers of this connection's last answer (services.peer_self), and
        # who its last request was authenticated as with the notifications' mark taken before.
        self.memo: Any = getattr(conn, MEMO_ATTRIBUTE, None)
        self.kept: tuple[Any, Mark | None] | None = getattr(conn, CALLER_ATTRIBUTE, None)
        self.caller: Any = None  # api.auth: who it was authenticated as when it came
        self.caller_mark: Mark | None = None  # Notifications.mark taken before that
        self.deadline = 0.0
        self._lock = threading.Lock()
        self._parked = False  # held by its subscription only
        self._woken = False  # a wake-up came while a thread still served it
        self._subscribed: tuple[Notifications, tuple[str, ...]] | None = None

    def subscribe(self, notifications: Notifications, keys: Sequence[str]) -> None:
        with self._lock:
            self._woken = False  # only what comes from now on counts
        self._subscribed = (notifications, tuple(keys))
        notifications.add(self._subscribed[1], self)

    def remember(self) -> None:
        """Keep what this answer's view remembered (``memo``, the caller) on its connection
        for the connection's next request."""
        setattr(self.conn, MEMO_ATTRIBUTE, self.memo)
        setattr(self.conn, CALLER_ATTRIBUTE, (self.caller, self.caller_mark))

    def unsubscribe(self) -> None:
        if self._subscribed is not None:
            notifications, keys = self._subscribed
            self._subscribed = None
            notifications.remove(keys, self)

    def park(self, deadline: float, base: dict[str, Any]) -> NoReturn:
        self.deadline, self.base = deadline, base
        raise Parked()

    def set(self) -> None:
        """Serve it again (a notification named it, or its deadline came)."""
        with self._lock:
            if not self._parked:
                self._woken = True
                return
            self._parked = False
        self.worker.resume(self)

    def hold(self) -> bool:
        """Leave it parked (True), or False when a wake-up came meanwhile: serve it again."""
        with self._lock:
            if self._woken:
                self._woken = False
                return False
            self._parked = True
            return True


class ClientCertWorker(ThreadWorker):
    """gthread worker (keep-alive, threads) that exposes the TLS client certificate and can
    park a request (see the module's docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._current = threading.local()
        self._resumes: queue.SimpleQueue[ParkedRequest] = queue.SimpleQueue()
        self._follows: FollowerConnections | None = None
        self._deadlines: list[tuple[float, int, ParkedRequest]] = []
        self._deadlines_changed = threading.Condition()
        self._order = itertools.count()
        self._fast: FollowFastPath | None = None
        self._enroll: EnrollFastPath | None = None

    def init_process(self) -> None:
        for i in range(RESUME_THREADS):
            threading.Thread(target=self._resume_loop, name=f"resume-{i}", daemon=True).start()
        threading.Thread(target=self._expire, name="parked-deadlines", daemon=True).start()
        self._follows = FollowerConnections(
            self._follow_came, self._give_back, self._drop, lambda: self.alive
        )
        super().init_process()

    def load_wsgi(self) -> None:
        super().load_wsgi()
        app: Any = getattr(self, "wsgi")  # noqa: B009 - gunicorn sets it untyped
        extensions = getattr(app, "extensions", {})
        api = extensions.get(EXTENSION) if isinstance(extensions, dict) else None
        self._fast = FollowFastPath(api) if isinstance(api, ApiState) else None
        self._enroll = EnrollFastPath(api) if isinstance(api, ApiState) else None

        def with_certificate(environ: dict[str, Any], start_response: Any) -> Any:
            environ[CLIENT_CERT_ENVIRON] = getattr(self._current, "der", None)
            slot = environ[PARKING_ENVIRON] = getattr(self._current, "slot", None)
            answered: tuple[str, bytes] | None = None
            if slot is not None and slot.resumed and self._fast is not None:
                body = self._fast.answer(environ, slot)  # may park it again
                answered = None if body is None else ("200 OK", body)
            if answered is None and self._enroll is not None:
                answered = self._enroll.answer(environ)
            if answered is None:
                return app(environ, start_response)
            status, body = answered
            headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
            start_response(status, headers)
            return [body]

        self.wsgi = with_certificate

    def handle(self, conn: Any) -> Any:
        self._current.resuming = None
        self._current.parked = None
        result = super().handle(conn)
        parked, self._current.parked = self._current.parked, None
        return parked if parked is not None else result

    def handle_request(self, req: Any, conn: Any) -> Any:
        sock = conn.sock
        der = None
        if isinstance(sock, ssl.SSLSocket):
            try:
                der = sock.getpeercert(binary_form=True)
            except (ValueError, ssl.SSLError):
                der = None
        self._current.der = der
        slot = getattr(self._current, "resuming", None) or ParkedRequest(self, conn, req)
        self._current.slot = slot
        try:
            if not slot.resumed and der is not None and self._fast is not None:
                self._fast.park(slot, req.method, req.path, req.query, der, slot.kept)
            answered = super().handle_request(req, conn)
            slot.unsubscribe()  # answered: it waits no more, whatever the view did
            slot.remember()
            return answered
        except Parked:
            self._current.parked = slot
            return True
        finally:
            self._current.der = None
            self._current.slot = None

    def finish_request(self, conn: Any, fs: Any) -> None:
        """On the main thread: a parked request stays out of the poller (its subscription
        holds it), a follower's connection waits for its next request in ``_follows``;
        anything else as gthread does."""
        if not fs.cancelled() and fs.exception() is None:
            result = fs.result()
            if isinstance(result, ParkedRequest):
                if not self.alive:  # stopping: the follower connects again elsewhere
                    result.unsubscribe()
                    self._close(conn)
                else:
                    self._hold(result)
                return
            if result is True and self._follower(conn):
                self._watch(conn)
                return
        super().finish_request(conn, fs)

    def _watch(self, conn: Any) -> None:
        """Wait for a follower's next request in ``_follows`` (any thread)."""
        assert self._follows is not None
        try:
            self._follows.watch(conn)
        except (OSError, ValueError) as exc:  # closed meanwhile
            self.log.debug("a follower's connection ended: %r", exc)
            self._drop(conn)

    def _follower(self, conn: Any) -> bool:
        """Whether ``conn``, just answered and kept alive, is a follower's (its next request
        is most likely its next wait) with nothing of that request read yet."""
        return (
            self.alive
            and self._fast is not None
            and isinstance(conn.sock, ssl.SSLSocket)
            and isinstance(getattr(conn, MEMO_ATTRIBUTE, None), FollowMemo)
            and not conn.parser.unreader.buf.getvalue()
        )

    def _hold(self, parked: ParkedRequest) -> None:
        """Leave ``parked`` to its subscription and its deadline, or serve it again at once
        when a wake-up came meanwhile (any thread)."""
        if not parked.hold():
            self.resume(parked)
            return
        with self._deadlines_changed:
            # The deadlines' thread sleeps until the earliest: wake it only for an earlier
            # one (a fan-out parks thousands, each later than those before).
            earlier = not self._deadlines or parked.deadline < self._deadlines[0][0]
            heapq.heappush(self._deadlines, (parked.deadline, next(self._order), parked))
            if earlier:
                self._deadlines_changed.notify()

    def resume(self, parked: ParkedRequest) -> None:
        """Serve a parked request again on a resume thread (from any thread)."""
        self._resumes.put(parked)

    def _resume_loop(self) -> None:
        while True:
            parked = self._resumes.get()
            try:
                if parked.head is not None:
                    self._answer_follow(parked, parked.head)
                    continue
                self._finish(parked.conn, self._serve_again(parked))
            except Exception:  # the thread serves the next one; this connection is closed
                self.log.exception("serving a parked request again failed")
                self._drop(parked.conn)

    def _serve_again(self, parked: ParkedRequest) -> Any:
        self._current.resuming = parked
        self._current.parked = None
        parked.resumed = True
        try:
            keep = self.handle_request(parked.req, parked.conn)
            again, self._current.parked = self._current.parked, None
            if again is not None:
                return again
            return self._keepalive_after(parked.conn, keep)
        except Exception as exc:  # the follower went away, or answering failed
            self.log.debug("a parked request ended: %r", exc)
            return False
        finally:
            self._current.resuming = None

    # A follow read by api/follow_conns.py: parked, answered and written here, not by gunicorn.

    def _follow_came(self, conn: Any, head: FollowHead) -> None:
        """A follower's next request (on the follower connections' thread): park it as
        ``FollowFastPath.park`` would, or give it to gunicorn."""
        assert self._fast is not None
        if not self.alive:  # stopping: gunicorn answers it "Connection: close"
            self._give_back(conn, head.raw)
            return
        parked = ParkedRequest(self, conn, None, head)
        try:
            der = conn.sock.getpeercert(binary_form=True)
            self._fast.park(parked, "GET", PATH, head.query, der, parked.kept)
        except Parked:
            self._hold(parked)
            return
        except Exception as exc:  # the app reads it again and says what is wrong
            self.log.debug("a follow goes to the app: %r", exc)
            parked.unsubscribe()
        self._give_back(conn, head.raw)

    def _answer_follow(self, parked: ParkedRequest, head: FollowHead) -> None:
        """Serve a follow that ``_follow_came`` parked (on a resume thread): its answer, or
        park it again, or give it to gunicorn (anything the fast path leaves to the app)."""
        assert self._fast is not None
        conn = parked.conn
        parked.resumed = True
        try:
            body = self._fast.answer(head.environ(), parked)
        except Parked:
            self._hold(parked)
            return
        except Exception as exc:
            self.log.debug("a woken follow goes to the app: %r", exc)
            body = None
        parked.unsubscribe()
        if body is None:
            self._give_back(conn, head.raw)
            return
        parked.remember()
        try:
            conn.sock.setblocking(True)
            conn.sock.sendall(ok_response(body))
        except OSError as exc:  # ssl.SSLError too: the follower went away
            self.log.debug("a woken follow's answer was not written: %r", exc)
            self._drop(conn)
            return
        if self._follower(conn):
            self._watch(conn)
        else:  # e.g. stopping: gunicorn's keep-alive answers the next "Connection: close"
            self._finish(conn, True)

    def _finish(self, conn: Any, result: Any) -> None:
        """``finish_request`` on the main thread for a request served on another thread (a
        resume thread's: gunicorn's thread pool does this through its futures)."""
        done: futures.Future[Any] = futures.Future()
        done.set_result(result)
        self.method_queue.defer(self.finish_request, conn, done)

    def _give_back(self, conn: Any, data: bytes) -> None:
        """Let gunicorn serve ``conn``'s request, ``data`` being what was read of it."""
        conn.parser.unreader.unread(data)
        try:
            self.enqueue_req(conn)
        except RuntimeError:  # the thread pool is shut down: stopping
            self._drop(conn)

    def _drop(self, conn: Any) -> None:
        """Close a follower's connection (from any thread)."""
        self.method_queue.defer(self._close, conn)

    def _close(self, conn: Any) -> None:
        self.nr_conns -= 1
        conn.close()

    def _expire(self) -> None:
        """Wake each parked request at its deadline (it then answers as the config is)."""
        while True:
            with self._deadlines_changed:
                while not self._deadlines:
                    self._deadlines_changed.wait()
                at, _, parked = self._deadlines[0]
                left = at - time.monotonic()
                if left > 0:
                    self._deadlines_changed.wait(left)
                    continue
                heapq.heappop(self._deadlines)
            if parked.deadline <= time.monotonic():  # not parked again since, for later
                parked.set()

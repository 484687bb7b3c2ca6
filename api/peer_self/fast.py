"""A config follower's two hot calls, served by the API's gunicorn worker without the app
(api/gunicorn_worker.py) when nothing about them is unusual; anything else goes to the app,
which reads it again and says what is wrong.

- **Its next wait** (:meth:`FollowFastPath.park`): a follower asks again the moment it is
  answered, on the same connection (so with the same certificate). While no notification
  named its interface or itself since the config it was just told was read, and none named
  itself since it was authenticated (a renewal, a revocation or a removal names the peer:
  migrations 0007 and 0012), that wait parks at once: nothing would be read
  (``services.peer_self.park_unchanged``).
- **Its answer when woken** (:meth:`FollowFastPath.answer`): a parked follow that a change
  or its deadline serves again runs ``services.peer_self.follow_config`` directly and writes
  the JSON the app would (``PeerConfigSchema``, or a delta as it is), counted in the same
  metrics. A text/plain follower, or any error, goes through the app.

Both are what a fan-out costs per follower: with them, one interface-wide change to 2,000
followers takes about half the API's CPU it took through Flask (``bench/ha.py``).
"""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import parse_qs

import marshmallow as ma
from cryptography import x509

from api.auth import Caller, certificate_peer
from api.metrics import observe
from api.peer_self.schemas import VERSION_MAX_LEN, WAIT_MAX_S, PeerConfigSchema
from api.schemas import json_bytes
from api.state import ApiState
from db.config_notify import peer_key
from db.notify import Mark, Notifications, Parking
from elysium.errors import ElysiumError
from services.config_views import ConfigViews
from services.peer_self import FollowMemo, follow_config, park_unchanged

PATH = "/v1/peer/config"
ROUTE = PATH  # its metrics label (api/metrics.py: the route's pattern)
ARGS = {"version", "wait", "delta"}  # api.peer_self.schemas.PeerConfigArgs
WAIT = re.compile(r"[0-9]{1,4}(\.[0-9]{1,6})?")
JSON_ACCEPTED = {"*/*", "application/json"}


def follow_args(query: str) -> tuple[str, float, bool] | None:
    """``version``, ``wait`` and ``delta`` of a follow's query as ``PeerConfigArgs`` reads
    them, or None for anything else (the app then reads it)."""
    try:
        found = parse_qs(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        return None
    if not found.keys() <= ARGS or any(len(v) != 1 for v in found.values()):
        return None
    version, wait = found.get("version", [""])[0], found.get("wait", [""])[0]
    delta = found.get("delta", ["false"])[0]
    if not version or len(version) > VERSION_MAX_LEN or not WAIT.fullmatch(wait):
        return None
    if delta not in ma.fields.Boolean.truthy | ma.fields.Boolean.falsy:
        return None
    wait_s = float(wait)
    if wait_s > WAIT_MAX_S:
        return None
    return version, wait_s, delta in ma.fields.Boolean.truthy


class FollowFastPath:
    """The fast path of one worker process, over the app's :class:`ApiState`."""

    def __init__(self, api: ApiState) -> None:
        self.api = api
        self.schema = PeerConfigSchema()
        self._kept: tuple[Notifications, ConfigViews, x509.Certificate] | None = None

    def _parts(self) -> tuple[Notifications, ConfigViews, x509.Certificate]:
        """The process's listener, views and CA certificate, taken from the app's state once
        (each of its properties takes a lock every thread of the worker contends for)."""
        if self._kept is None:
            self._kept = (self.api.notifications, self.api.config_views, self.api.ca_cert)
        return self._kept

    def _capped(self, wait_s: float) -> float:
        """A follow's wait as the view caps it (``config_wait_max_s``)."""
        return min(wait_s, self.api.settings.config_wait_max_s)

    def park(
        self,
        parking: Parking,
        method: str,
        path: str,
        query: str,
        der: bytes,
        kept: tuple[Caller | None, Mark | None] | None,
    ) -> None:
        """Park a follower's next wait (does not return), or return: the app serves it.
        ``kept``: who the connection's last request was authenticated as, and the
        notifications' mark taken before."""
        memo = parking.memo
        if method != "GET" or path != PATH or not isinstance(memo, FollowMemo):
            return
        caller, caller_mark = kept if kept is not None else (None, None)
        if caller is None or caller.peer_id != memo.peer_id or caller.certificate_replaced:
            return
        notes, _, ca_cert = self._parts()
        if not notes.unchanged([peer_key(memo.peer_id)], caller_mark):
            return  # renewed, revoked or moved since it was authenticated: the app checks
        named = certificate_peer(ca_cert, der)  # kept per process; run out since?
        args = follow_args(query)
        if named is None or named[0] != memo.peer_id or args is None:
            return
        version, wait_s, _ = args
        parking.caller, parking.caller_mark = caller, caller_mark
        park_unchanged(notes, memo, memo.peer_id, version, self._capped(wait_s), parking)

    def answer(self, environ: dict[str, Any], parking: Parking) -> bytes | None:
        """The JSON body answering a parked follow served again, or None: the app serves
        it. May park it again (a wake-up that moved nothing of its own: does not return)."""
        caller = parking.caller
        if environ.get("REQUEST_METHOD") != "GET" or environ.get("PATH_INFO") != PATH:
            return None
        if not isinstance(caller, Caller) or caller.peer_id is None:
            return None
        if caller.certificate_replaced or environ.get("HTTP_ACCEPT", "*/*") not in JSON_ACCEPTED:
            return None
        args = follow_args(environ.get("QUERY_STRING", ""))
        if args is None:
            return None
        version, wait_s, delta = args
        started = time.perf_counter()
        notes, views, _ = self._parts()
        try:
            found = follow_config(
                self.api.connection,
                notes,
                caller.peer_id,
                version,
                self._capped(wait_s),
                delta,
                views,
                parking,
            )
        except ElysiumError:
            return None  # the app reads it again and answers the error
        body = found if "base" in found else self.schema.dump(found)
        observe("GET", ROUTE, 200, time.perf_counter() - started)
        return json_bytes(body)

"""What a peer asks about itself: its config, followed live by version, and a new client
certificate before its own runs out."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from psycopg import Connection
from psycopg.rows import DictRow

from db import jobs as jobs_db
from db.config_notify import interface_key, peer_key
from db.interfaces import get_interface
from db.notify import Connect, Notifications, Parking
from db.peer_config import config_from_row, config_row
from db.peers import get_peer, update_peer
from elysium import pki
from elysium.config_delta import config_delta
from elysium.errors import ElysiumError, Forbidden
from elysium.queue import JobQueue
from elysium.states import JobKind, JobStatus, is_live_peer
from services.config_views import ConfigViews, InterfaceView
from services.direct import direct_config
from services.jobs import Record, Submitted, submit_hub_job
from services.peers import peer_record


def current_config(
    conn: Connection[DictRow],
    peer_id: int,
    views: ConfigViews | None = None,
    notes: Notifications | None = None,
) -> dict[str, Any]:
    """The peer's config with its version; a peer no longer live gets a 403 ``peer_not_live``.
    ``views`` (with the process's ``notes``): what the followers of its interface share, so
    that only what is the peer's own is read here, and only when a notification named it
    since the view was read (``services.config_views``)."""
    row = config_row(conn, peer_id)
    if views is None or notes is None or notes.mark() is None:
        return _config(conn, row, None)  # not listening: nothing kept; this peer's reads only
    view = views.view(conn, row["interface_id"], notes)
    if view.rows.get(peer_id) != row:  # the view is older than what was just read: again
        view = views.view(conn, row["interface_id"], notes, fresh=True)
    return _config(conn, row, view)


def woken_config(
    conn: Connection[DictRow], peer_id: int, interface_id: int, views: ConfigViews,
    notes: Notifications,
) -> dict[str, Any]:  # fmt: skip
    """:func:`current_config` for a follower woken with its interface's other followers:
    from the shared view alone, unless a notification named the peer since it was read."""
    view = views.view(conn, interface_id, notes)
    row = view.rows.get(peer_id)
    if row is None or not notes.unchanged([peer_key(peer_id)], view.mark):
        row = config_row(conn, peer_id)
    return _config(conn, row, view)


def _config(
    conn: Connection[DictRow], row: dict[str, Any], view: InterfaceView | None
) -> dict[str, Any]:
    if not is_live_peer(row["status"]):
        raise Forbidden(f"peer {row['id']} is {row['status']}", code="peer_not_live")
    if view is None or view.iface["id"] != row["interface_id"]:
        return direct_config(conn, config_from_row(conn, row))
    config = config_from_row(conn, row, view.subnets)
    return direct_config(conn, config, view.iface, view.snap)


def follow_config(
    connect: Connect,
    notifications: Notifications,
    peer_id: int,
    version: str | None,
    wait_s: float,
    delta: bool = False,
    views: ConfigViews | None = None,
    parking: Parking | None = None,
) -> dict[str, Any]:
    """The peer's config at once when its version is not ``version``; else when it moves,
    or as it is after ``wait_s``. Waiting holds no database connection: the process's one
    listener wakes it when a notification names the peer or its interface. With ``delta``,
    a config that moved while waiting comes as ``elysium.config_delta.config_delta`` from
    the one the follower holds (a follower too far behind gets the whole config). ``views``:
    the process's shared views, so that followers woken together (or following one
    interface at all) read their interface once (``services.config_views``). ``parking``:
    the request may wait without its thread (see :class:`Parking`)."""
    if parking is not None:
        return _follow_parked(
            connect, notifications, peer_id, version, wait_s, delta, views, parking
        )
    deadline = time.monotonic() + wait_s
    with connect() as conn:
        config = current_config(conn, peer_id, views, notifications)
    if version is None or wait_s <= 0 or config["version"] != version:
        return config
    keys = (interface_key(config["interface_id"]), peer_key(peer_id))
    with notifications.subscribe(keys) as moved:
        with connect() as conn:  # again, now that no change can slip past unnoticed
            config = current_config(conn, peer_id, views, notifications)
        base = config
        while config["version"] == version:
            left = deadline - time.monotonic()
            if left <= 0 or not moved.wait(left):
                break
            moved.clear()
            with connect() as conn:
                if views is None:
                    config = current_config(conn, peer_id)
                else:
                    iface = config["interface_id"]
                    config = woken_config(conn, peer_id, iface, views, notifications)
    if delta and base["version"] == version and config["version"] != version:
        return config_delta(base, config)  # the follower holds ``base``: only what moved
    return config


@dataclass(frozen=True)
class FollowMemo:
    """The config last answered on a connection and where the notifications were before it
    was read (``Notifications.mark``): a follower asks again for that very version at once,
    and while no notification has named its interface or itself since, the config is still
    that one, so the request parks without reading anything (a wake-up reads as usual)."""

    peer_id: int
    config: dict[str, Any]
    mark: Any


def park_unchanged(
    notifications: Notifications,
    memo: FollowMemo,
    peer_id: int,
    version: str | None,
    wait_s: float,
    parking: Parking,
) -> None:
    """Park a follower that asks again for the version its connection was just told
    (``memo``) while no notification named its interface or itself since: nothing is read.
    Returns when that is not so (the caller reads as usual); else it does not return."""
    if memo.peer_id != peer_id or version != memo.config["version"] or wait_s <= 0:
        return
    deadline = parking.started + wait_s
    keys = (interface_key(memo.config["interface_id"]), peer_key(peer_id))
    if notifications.unchanged(keys, memo.mark) and time.monotonic() < deadline:
        parking.subscribe(notifications, keys)
        if notifications.unchanged(keys, memo.mark):  # nothing came in between
            parking.park(deadline, memo.config)
        parking.unsubscribe()


def _follow_parked(
    connect: Connect,
    notifications: Notifications,
    peer_id: int,
    version: str | None,
    wait_s: float,
    delta: bool,
    views: ConfigViews | None,
    parking: Parking,
) -> dict[str, Any]:
    """``follow_config`` for a request that waits without a thread: each call reads (a woken
    one through the view its interface's followers share) and answers or parks; a follower
    asking again for what it was just told parks without a read (:class:`FollowMemo`)."""
    deadline = parking.started + wait_s
    parking.unsubscribe()  # woken: from here on, this call decides anew
    if isinstance(parking.memo, FollowMemo) and not parking.resumed:
        park_unchanged(notifications, parking.memo, peer_id, version, wait_s, parking)

    def read(interface_id: int | None, woken: bool) -> dict[str, Any]:
        mark = notifications.mark()  # before reading: what the memo is as new as
        with connect() as conn:
            if views is not None and interface_id is not None and woken:
                # woken with the others of its interface: from the view they share
                config = woken_config(conn, peer_id, interface_id, views, notifications)
            else:
                config = current_config(conn, peer_id, views, notifications)
        parking.memo = FollowMemo(peer_id, config, mark) if mark is not None else None
        return config

    base = parking.base
    config = read(base["interface_id"] if base is not None else None, parking.resumed)
    if version is None or wait_s <= 0 or config["version"] != version:
        if delta and base is not None and base["version"] == version:
            return config_delta(base, config)  # the follower holds ``base``: what moved
        return config
    if time.monotonic() >= deadline:
        return config
    keys = (interface_key(config["interface_id"]), peer_key(peer_id))
    parking.subscribe(notifications, keys)
    try:
        config = read(config["interface_id"], False)  # again: no change slips past now
    except BaseException:
        parking.unsubscribe()
        raise
    if config["version"] == version:
        parking.park(deadline, base if base is not None else config)
    parking.unsubscribe()
    if delta and base is not None and base["version"] == version:
        return config_delta(base, config)
    return config


def renew_certificate(
    conn: Connection[DictRow],
    queue: JobQueue,
    actor: str,
    peer_id: int,
    csr: str,
    idempotency_key: str | None = None,
) -> Submitted:
    """Queue a new client certificate for a live peer from a fresh CSR (checked here); the
    control worker, the one process with the CA key, signs it into the job's result."""
    pki.check_csr(csr)

    def write(c: Connection[DictRow]) -> Record:
        peer = get_peer(c, peer_id)
        if not is_live_peer(peer["status"]):
            raise Forbidden(f"peer {peer_id} is {peer['status']}", code="peer_not_live")
        iface = get_interface(c, peer["interface_id"])
        rec = peer_record(iface, peer_id, {"csr": csr})
        rec.via_control = True
        return rec

    return submit_hub_job(
        conn,
        queue,
        kind=JobKind.RENEW_CERTIFICATE,
        submitter=actor,
        idempotency_key=idempotency_key,
        write=write,
        request={"peer_id": peer_id, "csr": csr},
    )


def sign_renewal(
    conn: Connection[DictRow],
    job_id: str,
    load_ca: Callable[[], tuple[x509.Certificate, pki.CertificateKey]],
    days: int,
    actor: str,
) -> bool:
    """Sign a queued certificate renewal and end its job (control side); False when the job
    is no renewal. A CSR that cannot be signed fails the job; the old certificate stays."""
    job = jobs_db.get_job(conn, job_id)
    if job["kind"] != JobKind.RENEW_CERTIFICATE:
        return False
    if job["status"] != JobStatus.QUEUED or job["peer_id"] is None:
        return True  # a redelivered message: already done
    try:
        ca_cert, ca_key = load_ca()
        cert = pki.sign_csr(ca_cert, ca_key, job["payload"]["csr"], job["peer_id"], days)
    except ElysiumError as exc:
        with conn.transaction():
            jobs_db.fail_job(conn, job_id, exc.code, exc.message, actor)
        return True
    pem = pki.certificate_pem(cert)
    with conn.transaction():
        update_peer(conn, job["peer_id"], {"certificate_serial": pki.serial_hex(cert)})
        jobs_db.succeed_job(
            conn,
            job_id,
            {"certificate": pem, "not_after": cert.not_valid_after_utc.isoformat()},
            actor,
        )
    return True

"""What a peer asks about itself: its config, followed live by version, and a new client
certificate before its own runs out."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from cryptography import x509
from psycopg import Connection
from psycopg.rows import DictRow

from db import jobs as jobs_db
from db.config_notify import interface_key, peer_key
from db.interfaces import get_interface
from db.notify import Connect, Notifications
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
    conn: Connection[DictRow], peer_id: int, view: InterfaceView | None = None
) -> dict[str, Any]:
    """The peer's config with its version; a peer no longer live gets a 403 ``peer_not_live``.
    ``view``: its interface as every follower shares it now (else read here for this peer)."""
    row = config_row(conn, peer_id)
    if not is_live_peer(row["status"]):
        raise Forbidden(f"peer {peer_id} is {row['status']}", code="peer_not_live")
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
) -> dict[str, Any]:
    """The peer's config at once when its version is not ``version``; else when it moves,
    or as it is after ``wait_s``. Waiting holds no database connection: the process's one
    listener wakes it when a notification names the peer or its interface. With ``delta``,
    a config that moved while waiting comes as ``elysium.config_delta.config_delta`` from
    the one the follower holds (a follower too far behind gets the whole config). ``views``:
    the process's shared views, so that followers woken together read their interface once
    (``services.config_views``)."""
    deadline = time.monotonic() + wait_s
    with connect() as conn:
        config = current_config(conn, peer_id)
    if version is None or wait_s <= 0 or config["version"] != version:
        return config
    iface_key = interface_key(config["interface_id"])
    keys = (iface_key, peer_key(peer_id))
    with notifications.subscribe(keys) as moved:
        with connect() as conn:  # again, now that no change can slip past unnoticed
            config = current_config(conn, peer_id)
        base = config
        while config["version"] == version:
            left = deadline - time.monotonic()
            if left <= 0 or not moved.wait(left):
                break
            moved.clear()
            token = notifications.generation(iface_key) if views is not None else None
            with connect() as conn:
                view = views.view(conn, config["interface_id"], token) if views else None
                config = current_config(conn, peer_id, view)
    if delta and base["version"] == version and config["version"] != version:
        return config_delta(base, config)  # the follower holds ``base``: only what moved
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

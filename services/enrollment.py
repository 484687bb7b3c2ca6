"""Enrollment: a peer redeems a token and joins the token's interface, in one transaction.

A peer that sends a CSR gets a client certificate. The API never holds the CA key: the job
is recorded on the control queue, where ``sign_enrollment`` (run by the control worker, the
one process that reads the key) signs the CSR and hands the job on to the peer's hub. The
signed certificate reaches the peer in the job's result, as the rest of its config does.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager

from cryptography import x509
from psycopg import Connection
from psycopg.rows import DictRow

from db import jobs as jobs_db
from db.enrollment import Enrollment, enroll_in_one_statement, ready
from db.enrollment_tokens import enrollment_grant, enrollment_token_use
from db.peers import finish_removal, update_peer
from db.rows import JobRow
from elysium import pki
from elysium.combining import Combiner
from elysium.errors import ElysiumError
from elysium.keys import normalize_key
from elysium.networks import check_subnets_allowed, parse_subnets
from elysium.queue import CONTROL_QUEUE, HUB_QUEUE_PREFIX, JobQueue, hub_queue
from elysium.states import JobKind, JobStatus, PeerStatus
from services.jobs import Record, Submitted, send, submit_hub_job
from services.peers import record_new_peer

# Enrollments with one token that come while one statement of it runs go in the next together:
# one statement, commit and flush for many (PostgreSQL's CPU for one of 8 together is a fifth
# of one alone's). Before a batch runs it waits, at most 2 ms, for the enrollments its process
# is still reading, and while they crowd (one had to wait in the last 10 ms) an enrollment that
# finds none running waits those 2 ms for company; one after another never wait. Together with
# the worker's own answer (api/enroll/fast.py) this took the API's enrollments on 2 cores from
# about 0.35 to 0.44-0.57 of its /healthz rate (bench/api.py; median 0.506 of 21 runs).
ENROLL_LINGER_S = 0.002
ENROLL_BUSY_S = 0.01
_together: Combiner[Enrollment, JobRow | None] = Combiner(
    linger_s=ENROLL_LINGER_S, busy_s=ENROLL_BUSY_S
)


def enrollment_on_its_way() -> AbstractContextManager[None]:
    """Within this block an enrollment is being read (its token not known yet): enrollments
    about to run together wait for it (at most ``ENROLL_LINGER_S``) rather than run without
    it. ``enroll_peer`` ends the wait as soon as it knows whether it joins them."""
    return _together.on_the_way()


def enroll_peer(
    conn: Connection[DictRow],
    queue: JobQueue,
    *,
    submitter: str,
    token: str,
    name: str,
    public_key: str,
    csr: str | None = None,
    subnets: Sequence[str] = (),
    idempotency_key: str | None = None,
) -> Submitted:
    """Redeem one use of ``token``, record the peer, queue ``enroll_peer``.

    All of it commits together or not at all: a refused subnet gives the use back. A CSR is
    checked here (a bad one is refused before the token is touched) and signed later.
    """
    key = normalize_key(public_key)
    nets = parse_subnets(list(subnets))
    if csr is not None:
        pki.check_csr(csr)
    if not nets and idempotency_key is None and ready(conn):
        # The common case, in one statement with the others of this token that come meanwhile;
        # None: it is not (nothing written), go step by step.
        enrollment = Enrollment(
            name,
            key,
            queue=None if csr is None else CONTROL_QUEUE,
            payload={} if csr is None else {"csr": csr},
        )

        def together(batch: list[Enrollment]) -> Sequence[JobRow | None]:
            jobs = enroll_in_one_statement(
                conn,
                batch,
                token=token,
                submitter=submitter,
                kind=JobKind.ENROLL_PEER,
                hub_prefix=HUB_QUEUE_PREFIX,
            )
            if jobs is None:
                return [None] * len(batch)
            for job in jobs:  # all at once: the sender takes them in one round trip
                send(queue, job)
            return jobs

        job = _together.submit((token, submitter), enrollment, together)
        if job is not None:
            return Submitted(job)
    else:
        _together.not_coming()

    def write(c: Connection[DictRow]) -> Record:
        # Checked now, redeemed last (with the address, in one statement): the token's row lock
        # is then held only until the commit, not through the whole enrollment (all peers of
        # one token queue on that row, as all of one interface on its address pool).
        grant, iface = enrollment_grant(c, token)
        check_subnets_allowed(nets, [ipaddress.ip_network(s) for s in grant["subnets"]])
        rec = record_new_peer(
            c,
            iface,
            name=name,
            public_key=key,
            subnets=[str(n) for n in nets],
            expires_at=None,
            actor=submitter,
            enrollment_token_id=grant["id"],
            tags=grant["tags"],
            redeem=enrollment_token_use(token),
        )
        rec.payload["enrollment_token_id"] = grant["id"]
        if csr is not None:
            rec.payload |= {"csr": csr, "hub": rec.hub}
            rec.via_control = True
        return rec

    request = {"name": name, "public_key": key, "csr": csr, "subnets": [str(n) for n in nets]}
    return submit_hub_job(
        conn,
        queue,
        kind=JobKind.ENROLL_PEER,
        submitter=submitter,
        idempotency_key=idempotency_key,
        write=write,
        request=request,
        final_commit=True,
    )


def sign_enrollment(
    conn: Connection[DictRow],
    queue: JobQueue,
    job_id: str,
    load_ca: Callable[[], tuple[x509.Certificate, pki.CertificateKey]],
    days: int,
    actor: str,
) -> JobRow | None:
    """Sign the CSR of a queued enrollment and hand the job on to its hub (control side).

    A job that has already moved on (a redelivered message) is left alone. A CSR that cannot
    be signed (or a worker without the CA key) fails the job; the peer gives its address back.
    """
    job = jobs_db.get_job(conn, job_id)
    peer_id = job["peer_id"]
    if job["status"] != JobStatus.QUEUED or job["queue"] != CONTROL_QUEUE or peer_id is None:
        return None
    try:
        ca_cert, ca_key = load_ca()
        cert = pki.sign_csr(ca_cert, ca_key, job["payload"]["csr"], peer_id, days)
    except ElysiumError as exc:
        with conn.transaction():
            jobs_db.fail_job(conn, job_id, exc.code, exc.message, actor)
            update_peer(conn, peer_id, {"status": PeerStatus.FAILED})
            finish_removal(conn, [peer_id])
        return None
    hub = job["payload"]["hub"]
    with conn.transaction():
        update_peer(conn, peer_id, {"certificate_serial": pki.serial_hex(cert)})
        moved = jobs_db.hand_on(
            conn, job_id, hub_queue(hub), {"certificate": pki.certificate_pem(cert)}
        )
    if moved is not None:
        send(queue, moved)
    return moved

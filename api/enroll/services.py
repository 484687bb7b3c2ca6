"""Enrollment: a peer redeems a token and joins the token's interface, in one transaction."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from psycopg import Connection
from psycopg.rows import DictRow

from api.jobs.services import Record, Submitted, submit_hub_job
from api.peers.services import record_new_peer
from db.peers import update_peer
from db.tokens import check_enrollment_token, redeem_enrollment_token
from elysium import pki
from elysium.keys import normalize_key
from elysium.networks import check_subnets_allowed, parse_subnets
from elysium.queue import JobQueue
from elysium.settings import Settings


def enroll_peer(
    conn: Connection[DictRow],
    queue: JobQueue,
    settings: Settings,
    *,
    submitter: str,
    token: str,
    name: str,
    public_key: str,
    ca: tuple[pki.x509.Certificate, pki.CertificateKey] | None,
    csr: str | None = None,
    subnets: Sequence[str] = (),
    idempotency_key: str | None = None,
) -> Submitted:
    """Redeem one use of ``token``, record the peer, sign its CSR, queue ``enroll_peer``.

    All of it commits together or not at all: a refused subnet or a bad CSR gives the use back.
    The signed certificate travels in the job payload; the hub worker copies it into the
    result, where the peer reads it. ``ca`` is needed only when a CSR is sent.
    """
    key = normalize_key(public_key)
    nets = parse_subnets(list(subnets))
    if csr is not None:
        pki.load_csr(csr)  # a malformed CSR is refused before the token is touched

    def write(c: Connection[DictRow]) -> Record:
        # Checked now, redeemed last: the token's row lock is then held only until the commit,
        # not through the whole enrollment (all peers of one token queue on that row).
        grant = check_enrollment_token(c, token)
        check_subnets_allowed(nets, [ipaddress.ip_network(s) for s in grant["subnets"]])
        rec = record_new_peer(
            c,
            grant["interface_id"],
            name=name,
            public_key=key,
            subnets=[str(n) for n in nets],
            expires_at=None,
            actor=submitter,
            enrollment_token_id=grant["id"],
        )
        if csr is not None and ca is not None and rec.peer_id is not None:
            cert = pki.sign_csr(ca[0], ca[1], csr, rec.peer_id, settings.peer_cert_days)
            update_peer(c, rec.peer_id, {"certificate_serial": pki.serial_hex(cert)})
            rec.payload["certificate"] = pki.certificate_pem(cert)
        rec.payload["enrollment_token_id"] = grant["id"]
        rec.before_commit = lambda c2: redeem_enrollment_token(c2, token)
        return rec

    return submit_hub_job(
        conn,
        queue,
        kind="enroll_peer",
        submitter=submitter,
        idempotency_key=idempotency_key,
        write=write,
    )

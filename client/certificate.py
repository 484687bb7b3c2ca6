"""Renewing the client certificate before it runs out: a fresh TLS key and CSR made here,
signed by the control worker through ``POST /v1/peer/certificate`` over the old one (mTLS).

A certificate is due at 2/3 of its life. The new key and certificate replace the old pair
only once the server has signed it (each 0600, by atomic replace).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from client.api import Api
from client.state import StateDir, write_secret
from elysium import pki

RENEW_AT = 2 / 3  # of the certificate's life
JOB_TIMEOUT_S = 60.0


def renewal_due(state: StateDir, now: datetime | None = None) -> bool:
    """Whether our certificate has lived 2/3 of its life (or cannot be read)."""
    try:
        cert = pki.load_certificate(state.tls_cert)
    except (OSError, ValueError):
        return False  # no certificate to renew with: enrollment's business
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    return (now or datetime.now(UTC)) >= start + (end - start) * RENEW_AT


def renew(state: StateDir, api: Api) -> datetime:
    """A new key and certificate in place of the old; returns when the new one runs out."""
    key = pki.new_private_key()
    answer = api.renew_certificate(pki.make_csr(key).decode())
    result = api.wait_job(str(answer["job_id"]), JOB_TIMEOUT_S)
    next_key = state.path / "tls.key.next"
    next_cert = state.path / "tls.pem.next"
    pki.write_private_key(next_key, key)
    write_secret(next_cert, str(result["certificate"]))
    os.replace(next_key, state.tls_key)
    os.replace(next_cert, state.tls_cert)
    api.session.close()  # connections made with the old certificate go
    api.use_certificate(state.tls_cert, state.tls_key)
    return pki.load_certificate(state.tls_cert).not_valid_after_utc

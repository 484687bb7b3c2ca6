"""Enrolling this machine as a peer: keys, CSR, the one-time token, the job, the stored result.

The WireGuard private key and the TLS key are made here and never leave the machine; the server
gets the public key and a CSR, and answers (through the enrollment job) with the address,
allowed IPs, the hub's key and endpoint, and our client certificate.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from client.api import Api
from client.errors import EXIT_STATE, ClientError
from client.state import DEFAULT_INTERFACE, Enrollment, StateDir, write_secret
from elysium import pki
from elysium.keys import load_or_create_private_key, public_key

JOB_TIMEOUT_S = 120.0
StatusCallback = Callable[[str], None]


def enroll(
    state: StateDir,
    *,
    server: str,
    token: str,
    name: str,
    ca: Path | None,
    subnets: list[str],
    netns: str | None,
    interface: str = DEFAULT_INTERFACE,
    timeout: float = JOB_TIMEOUT_S,
    on_status: StatusCallback = lambda status: None,
) -> Enrollment:
    """Enroll once; the state dir then holds keys, certificate, CA and config (0600)."""
    if state.enrolled():
        old = state.load()
        raise ClientError(
            f"{state.path} is already enrolled as {old.name!r} with {old.server};"
            " use another --state-dir",
            code="already_enrolled",
            exit_code=EXIT_STATE,
        )
    state.create()
    ca_path = _keep_ca(state, ca)
    wg_public = public_key(load_or_create_private_key(state.wg_key))
    tls_key = pki.new_private_key()
    pki.write_private_key(state.tls_key, tls_key)
    csr = pki.make_csr(tls_key).decode()

    api = Api(server, ca_path)
    on_status("submitting")
    answer = api.enroll(token, name, wg_public, csr, subnets)
    job_id, peer_id = str(answer["job_id"]), int(answer["peer_id"])
    on_status(str(answer.get("status") or "queued"))
    # Until it has a certificate, the peer reads its enrollment's job with the token as bearer.
    result = api.wait_job(job_id, timeout, on_status, headers={"Authorization": f"Bearer {token}"})
    if result.get("certificate"):
        _store_certificate(state, api, str(result.pop("certificate")))
    if not state.tls_cert.exists():
        raise ClientError("the server did not return a client certificate", code="no_certificate")
    enrollment = Enrollment(
        server=server,
        name=name,
        peer_id=peer_id,
        ca=str(ca_path) if ca_path else None,
        interface=interface,
        netns=netns,
        config=result,
    )
    state.save(enrollment)
    return enrollment


def _keep_ca(state: StateDir, ca: Path | None) -> Path | None:
    """Copy the CA into the state dir so later commands need no --ca."""
    if ca is None:
        return None
    try:
        pki.load_certificate(ca)
    except (OSError, ValueError) as exc:
        raise ClientError(
            f"--ca {ca}: not a readable PEM certificate ({exc})",
            code="bad_ca",
            exit_code=EXIT_STATE,
        ) from None
    if ca.resolve() != state.ca_file.resolve():
        shutil.copyfile(ca, state.ca_file)
    state.ca_file.chmod(0o644)
    return state.ca_file


def _store_certificate(state: StateDir, api: Api, pem: str) -> None:
    write_secret(state.tls_cert, pem)

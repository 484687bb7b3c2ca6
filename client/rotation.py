"""Key rotation: a new WireGuard key here, the hub told over mTLS, then the tunnel switched.

The new key waits in ``wg.key.next`` (0600) until the hub has it; only then does it replace
``wg.key``. A rotation interrupted after the server took the key is finished by running it
again: the pending key is reused and the server's ``same_key`` answer means "already done".
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from client import tunnel
from client.api import Api
from client.errors import ClientError
from client.state import Enrollment, StateDir, write_secret
from elysium.errors import ElysiumError
from elysium.keys import generate_private_key, normalize_key, public_key

JOB_TIMEOUT_S = 120.0


def api_for(state: StateDir, enrollment: Enrollment) -> Api:
    """The server of the enrollment, spoken to with our client certificate."""
    ca = Path(enrollment.ca) if enrollment.ca else None
    return Api(enrollment.server, ca, client_cert=(state.tls_cert, state.tls_key))


def rotate(
    state: StateDir,
    enrollment: Enrollment,
    options: tunnel.TunnelOptions,
    *,
    timeout: float = JOB_TIMEOUT_S,
    on_status: Callable[[str], None] = lambda status: None,
) -> str:
    """Rotate the peer's key; returns the new public key."""
    state.read_wg_key()  # enrolled with a key: fail before asking the server
    new_private = _pending_key(state)
    new_public = public_key(new_private)
    api = api_for(state, enrollment)
    on_status("submitting")
    try:
        answer = api.rotate_key(new_public)
    except ClientError as exc:
        if exc.code != "same_key":
            raise
        result = api.peer_config()  # an earlier run got this far: the hub has the key
    else:
        on_status(str(answer.get("status") or "queued"))
        result = api.wait_job(str(answer["job_id"]), timeout, on_status)
    os.replace(state.new_wg_key, state.wg_key)
    enrollment.config.update(result)
    enrollment.config["public_key"] = new_public
    state.save(enrollment)
    if tunnel.is_up(enrollment, options):
        on_status("switching the tunnel")
        tunnel.up(state, enrollment, options)
    return new_public


def _pending_key(state: StateDir) -> str:
    """The key of an unfinished rotation, or a new one written 0600."""
    try:
        return normalize_key(state.new_wg_key.read_text().strip(), "private_key")
    except (OSError, ElysiumError):  # none yet, or a torn file: make a new one
        pass
    key = generate_private_key()
    write_secret(state.new_wg_key, key + "\n")
    return key

"""Calls to the API that ride through a replica's death: a dropped connection is tried again.

Behind a load balancer, a killed API replica drops the connections it held; the next attempt
reaches another replica. A POST, PUT or PATCH carries an ``Idempotency-Key`` (made once per
call, kept across its attempts), so a retry of a request the dead replica had already
recorded answers that job again instead of making a second one. A refused connection (nothing
listens) or a certificate error is no drop: it fails at once, as before.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import requests

WRITES = ("POST", "PUT", "PATCH")
RETRY_BUDGET_S = 15.0  # longest a call keeps retrying dropped connections
FIRST_PAUSE_S = 0.1
LONGEST_PAUSE_S = 2.0
# Said by urllib3/ssl when an open connection (or a TLS handshake) ended under us.
_DROPPED = (
    "Connection aborted",
    "RemoteDisconnected",
    "Connection reset",
    "ConnectionResetError",
    "BrokenPipe",
    "UNEXPECTED_EOF",
    "EOF occurred",
)


def dropped(exc: BaseException) -> bool:
    """Whether ``exc`` is a connection that was open and went away (worth another attempt)."""
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return True  # the answer was cut off after its headers
    if not isinstance(exc, requests.exceptions.ConnectionError):
        return False
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return False
    text = repr(exc)
    return "CERTIFICATE_VERIFY_FAILED" not in text and any(s in text for s in _DROPPED)


def request(
    session: requests.Session,
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    budget_s: float = RETRY_BUDGET_S,
    **kw: Any,
) -> requests.Response:
    """``session.request`` that retries dropped connections for up to ``budget_s``.

    A write gets an ``Idempotency-Key`` unless the caller gave one. Other failures, and a
    drop once the budget is spent, raise as ``session.request`` does.
    """
    headers = dict(headers or {})
    if method.upper() in WRITES and not any(k.lower() == "idempotency-key" for k in headers):
        headers["Idempotency-Key"] = str(uuid.uuid4())
    deadline = time.monotonic() + budget_s
    pause = FIRST_PAUSE_S
    while True:
        try:
            return session.request(method, url, headers=headers, **kw)
        except (
            requests.exceptions.ConnectionError,
            requests.exceptions.ChunkedEncodingError,
        ) as exc:
            if not dropped(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, LONGEST_PAUSE_S)

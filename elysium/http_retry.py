"""Calls to the API that ride through a replica's death: a dropped connection is tried again.

Behind a load balancer, a killed API replica drops the connections it held; the next attempt
reaches another replica. A POST, PUT or PATCH carries an ``Idempotency-Key`` (made once per
call, kept across its attempts), so a retry of a request the dead replica had already
recorded answers that job again instead of making a second one. A refused connection (nothing
listens) or a certificate error is no drop: it fails at once, as before.

``send`` is what both commands call: ``request``, with a call that got no answer raised as a
``NoAnswer`` of one line and an exit code, and ``error_of`` reads an error answer, so
``elysium`` and ``elysium-client`` word a failure the same way.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import requests

from elysium.exit_codes import EXIT_FAILED, EXIT_TLS, EXIT_UNREACHABLE

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


class NoAnswer(Exception):
    """A call that got no answer from the API, as one line a person reads.

    ``code``: ``bad_url``, ``server_untrusted``, ``certificate_rejected``, ``tls_failed`` or
    ``unreachable``; ``exit_code`` from ``elysium.exit_codes``.
    """

    def __init__(self, message: str, *, code: str, exit_code: int) -> None:
        super().__init__(message)
        self.code, self.exit_code = code, exit_code


def send(
    session: requests.Session, method: str, server: str, path: str, *, ca: Path | None, **kw: Any
) -> requests.Response:
    """``request`` of ``server + path``; what got no answer raises ``NoAnswer``.

    ``ca`` is the file the server is trusted through (None: the system's CAs), named when the
    server's certificate is not trusted.
    """
    try:
        return request(session, method, server + path, **kw)
    except requests.exceptions.SSLError as exc:
        raise _tls_failure(exc, server, ca, client_cert=session.cert is not None) from None
    except (
        requests.exceptions.InvalidURL,
        requests.exceptions.MissingSchema,
        requests.exceptions.InvalidSchema,
    ) as exc:
        raise NoAnswer(
            f"invalid server URL {server!r} ({reason(exc)}); it looks like https://host:8443",
            code="bad_url",
            exit_code=EXIT_FAILED,
        ) from None
    except (
        requests.exceptions.ConnectionError,
        requests.exceptions.ChunkedEncodingError,  # an answer cut off, past the retries
        requests.exceptions.Timeout,
    ) as exc:
        raise NoAnswer(
            f"cannot reach the API at {server}: {reason(exc)}",
            code="unreachable",
            exit_code=EXIT_UNREACHABLE,
        ) from None
    except OSError as exc:  # e.g. the CA or certificate file is gone
        raise NoAnswer(f"{server}: {exc}", code="tls_failed", exit_code=EXIT_TLS) from None


def _tls_failure(
    exc: requests.exceptions.SSLError, server: str, ca: Path | None, *, client_cert: bool
) -> NoAnswer:
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        who = f"the CA in {ca}" if ca else "the system's trusted CAs"
        why = "hostname mismatch" if "hostname" in text.lower() else "wrong CA?"
        message, code = (
            f"the server's certificate is not trusted by {who} ({why})",
            "server_untrusted",
        )
    elif client_cert:
        message = f"the server rejected this client's certificate ({reason(exc)})"
        code = "certificate_rejected"
    else:
        message, code = f"TLS handshake with {server} failed: {reason(exc)}", "tls_failed"
    return NoAnswer(message, code=code, exit_code=EXIT_TLS)


def error_of(resp: requests.Response) -> tuple[str, str, dict[str, str]]:
    """An error answer (``{"error": {"code", "message", "fields"}}``) as code, message, fields;
    what the body lacks comes from the status line."""
    code, message, fields = "http_" + str(resp.status_code), resp.reason or "error", {}
    try:
        err = resp.json().get("error") or {}
        code, message = str(err.get("code") or code), str(err.get("message") or message)
        fields = {str(k): str(v) for k, v in dict(err.get("fields") or {}).items()}
    except (ValueError, AttributeError, TypeError):
        pass
    return code, message, fields


def reason(exc: BaseException) -> str:
    """The innermost useful words of a requests/urllib3 exception."""
    text = str(exc)
    for marker in ("Caused by ", "Errno"):
        if marker in text:
            text = text[text.index(marker) :]
    text = text.replace("Caused by ", "").strip("()'\" ")
    return text[:200]

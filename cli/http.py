"""The operator command's HTTPS calls to the API, and the one-line errors their failures become.

Every call carries the profile's bearer token; the server is trusted through the profile's CA.
An error answer (``{"error": {"code", "message", "fields"}}``) becomes an ``OperatorError``
whose exit code a script can test (``elysium.exit_codes``, the same as ``elysium-client``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import requests

from cli.profiles import OperatorError, Profile
from elysium import http_retry
from elysium.exit_codes import EXIT_FAILED, EXIT_JOB, EXIT_TLS, EXIT_TOKEN, EXIT_UNREACHABLE

CONNECT_TIMEOUT_S = 5.0
READ_MARGIN_S = 10.0  # beyond a ?wait= the server may hold the request
WAIT_STEP_S = 10  # one GET /v1/jobs/{id}?wait= at most this long
DONE = ("succeeded", "failed")


class Api:
    """One API server, called with one bearer token."""

    def __init__(self, server: str, token: str, ca: Path | None, profile: str = "") -> None:
        self.server = server.rstrip("/")
        self.ca = ca
        self.profile = profile
        # Passed with each request: a Session's own ``verify`` loses to $REQUESTS_CA_BUNDLE.
        self.verify: str | bool = str(ca) if ca is not None else True
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"
        self.session.headers["User-Agent"] = "elysium"

    @classmethod
    def for_profile(cls, profile: Profile) -> Api:
        return cls(profile.server, profile.token, profile.ca, profile.name)

    def get(self, path: str, **params: Any) -> Any:
        clean = {k: v for k, v in params.items() if v is not None}
        return self.call("GET", path, params=clean or None)

    def post(self, path: str, body: Any = None) -> Any:
        return self.call("POST", path, json=body if body is not None else {})

    def patch(self, path: str, body: Any) -> Any:
        return self.call("PATCH", path, json=body)

    def put(self, path: str, body: Any) -> Any:
        return self.call("PUT", path, json=body)

    def delete(self, path: str) -> Any:
        return self.call("DELETE", path)

    def job(self, job_id: str, wait: float = 0) -> dict[str, Any]:
        params = {"wait": wait} if wait else None
        return dict(
            self.call("GET", f"/v1/jobs/{job_id}", params=params, read_timeout=wait + READ_MARGIN_S)
        )

    def wait_job(self, job_id: str, timeout: float) -> dict[str, Any]:
        """The job once it has ended (or a one-line error when it has not, in ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            job = self.job(job_id, wait=max(1, min(WAIT_STEP_S, int(remaining))))
            if job.get("status") in DONE:
                return job
            if time.monotonic() >= deadline:
                raise OperatorError(
                    f"job {job_id} still {job.get('status')} after {timeout:g}s"
                    " (is the hub's worker running?); follow it with: elysium job wait"
                    f" {job_id}",
                    code="job_timeout",
                    exit_code=EXIT_JOB,
                )

    def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Any = None,
        read_timeout: float = 30.0,
    ) -> Any:
        """One request; its JSON answer, or an ``OperatorError`` naming what went wrong."""
        try:
            resp = http_retry.request(
                self.session,
                method,
                self.server + path,
                json=json,
                params=params,
                verify=self.verify,
                timeout=(CONNECT_TIMEOUT_S, read_timeout),
            )
        except requests.exceptions.SSLError as exc:
            raise self._tls_error(exc) from None
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema) as exc:
            raise OperatorError(
                f"invalid server URL {self.server!r} ({reason(exc)}); it looks like"
                " https://host:8443",
                code="bad_url",
            ) from None
        except (
            requests.exceptions.ConnectionError,
            requests.exceptions.ChunkedEncodingError,  # an answer cut off, past the retries
            requests.exceptions.Timeout,
        ) as exc:
            raise OperatorError(
                f"cannot reach the API at {self.server}: {reason(exc)}",
                code="unreachable",
                exit_code=EXIT_UNREACHABLE,
            ) from None
        except OSError as exc:  # e.g. the profile's CA file is gone
            raise OperatorError(
                f"{self.server}: {exc}", code="tls_failed", exit_code=EXIT_TLS
            ) from None
        if resp.status_code >= 400:
            raise self._http_error(resp)
        try:
            return resp.json()
        except ValueError:
            raise OperatorError(
                f"{method} {path}: the server answered {resp.status_code} without JSON",
                code="bad_answer",
            ) from None

    def _tls_error(self, exc: requests.exceptions.SSLError) -> OperatorError:
        text = str(exc)
        if "CERTIFICATE_VERIFY_FAILED" in text:
            who = f"the CA in {self.ca}" if self.ca else "the system's trusted CAs"
            why = "hostname mismatch" if "hostname" in text.lower() else "wrong CA?"
            message = f"the server's certificate is not trusted by {who} ({why})"
        else:
            message = f"TLS handshake with {self.server} failed: {reason(exc)}"
        return OperatorError(message, code="server_untrusted", exit_code=EXIT_TLS)

    def _http_error(self, resp: requests.Response) -> OperatorError:
        code, message, fields = "http_" + str(resp.status_code), resp.reason or "error", {}
        try:
            err = resp.json().get("error") or {}
            code, message = str(err.get("code") or code), str(err.get("message") or message)
            fields = dict(err.get("fields") or {})
        except (ValueError, AttributeError, TypeError):
            pass
        if resp.status_code == 401:
            whose = f"profile {self.profile!r}" if self.profile else "the given token"
            return OperatorError(
                f"the API refused the token of {whose} ({message}); log in again",
                code=code,
                exit_code=EXIT_TOKEN,
            )
        if resp.status_code == 403:
            return OperatorError(
                f"the token may not do this ({message})", code=code, exit_code=EXIT_TOKEN
            )
        if fields:
            message = "; ".join(f"{k}: {v}" for k, v in fields.items())
        return OperatorError(
            f"{message} ({resp.status_code} {code})",
            code=code,
            exit_code=EXIT_FAILED,
            fields={str(k): str(v) for k, v in fields.items()},
        )


def job_error(job: dict[str, Any]) -> OperatorError:
    """A failed job as the one line the command ends with."""
    err = job.get("error")
    why = (
        f"{err.get('message') or err.get('code')} ({err.get('code')})"
        if isinstance(err, dict)
        else str(err or "no reason given")
    )
    return OperatorError(
        f"job {job.get('id')} ({job.get('kind')}) failed: {why}",
        code="job_failed",
        exit_code=EXIT_JOB,
    )


def reason(exc: BaseException) -> str:
    """The innermost useful words of a requests/urllib3 exception."""
    text = str(exc)
    for marker in ("Caused by ", "Errno"):
        if marker in text:
            text = text[text.index(marker) :]
    text = text.replace("Caused by ", "").strip("()'\" ")
    return text[:200]

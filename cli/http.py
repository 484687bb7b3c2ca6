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
from elysium.exit_codes import EXIT_FAILED, EXIT_JOB, EXIT_TOKEN

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
            resp = http_retry.send(
                self.session,
                method,
                self.server,
                path,
                ca=self.ca,
                json=json,
                params=params,
                verify=self.verify,
                timeout=(CONNECT_TIMEOUT_S, read_timeout),
            )
        except http_retry.NoAnswer as exc:
            raise OperatorError(str(exc), code=exc.code, exit_code=exc.exit_code) from None
        if resp.status_code >= 400:
            raise self._http_error(resp)
        try:
            return resp.json()
        except ValueError:
            raise OperatorError(
                f"{method} {path}: the server answered {resp.status_code} without JSON",
                code="bad_answer",
            ) from None

    def _http_error(self, resp: requests.Response) -> OperatorError:
        code, message, fields = http_retry.error_of(resp)
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
            fields=fields,
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

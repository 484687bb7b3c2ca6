"""The HTTPS calls the client makes, and the one-line errors their failures become.

Enrollment authenticates with the one-time token in the body; every later call (the peer's
config, its job, key rotation) with the client certificate the enrollment returned (mTLS).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from client.errors import EXIT_FAILED, EXIT_JOB, EXIT_TLS, EXIT_TOKEN, ClientError
from elysium import http_retry

CONNECT_TIMEOUT_S = 5.0
READ_MARGIN_S = 10.0  # beyond a ?wait= the server may hold the request
WAIT_STEP_S = 10  # one GET /v1/jobs/{id}?wait= at most this long
DONE = ("succeeded", "failed")

# Error codes of the API that mean "your enrollment token will not do", as a person reads them.
TOKEN_MESSAGES = {
    "token_invalid": "the enrollment token is not valid (mistyped, or for another server)",
    "token_used_up": "the enrollment token has already been used",
    "token_expired": "the enrollment token has expired; ask your operator for a new one",
    "token_revoked": "the enrollment token has been revoked; ask your operator for a new one",
}
CERT_CODES = ("certificate_missing", "certificate_invalid", "certificate_replaced", "peer_not_live")


class Api:
    """One server: its URL, the CA that vouches for it, and (after enrollment) our certificate."""

    def __init__(
        self, server: str, ca: Path | None = None, client_cert: tuple[Path, Path] | None = None
    ) -> None:
        self.server = server.rstrip("/")
        self.ca = ca
        # Passed with each request: a Session's own ``verify`` loses to $REQUESTS_CA_BUNDLE.
        self.verify: str | bool = str(ca) if ca is not None else True
        self.session = requests.Session()
        if client_cert is not None:
            self.session.cert = (str(client_cert[0]), str(client_cert[1]))
        self.session.headers["User-Agent"] = "elysium-client"

    def use_certificate(self, cert: Path, key: Path) -> None:
        self.session.cert = (str(cert), str(key))

    # -- calls ---------------------------------------------------------------------------
    def enroll(
        self, token: str, name: str, public_key: str, csr: str, subnets: list[str]
    ) -> dict[str, Any]:
        """POST /v1/enroll: ``202 {job_id, peer_id, ...}``."""
        body = {
            "token": token,
            "name": name,
            "public_key": public_key,
            "csr": csr,
            "subnets": subnets,
        }
        return self._call("POST", "/v1/enroll", json=body, token_call=True)

    def sso_config(self) -> dict[str, Any]:
        """GET /v1/sso: the OpenID provider, client id and scopes to sign in with."""
        return self._call("GET", "/v1/sso")

    def sso_enrollment_token(self, id_token: str) -> dict[str, Any]:
        """POST /v1/sso/enrollment-token: a one-use enrollment token for a signed-in user."""
        return self._call("POST", "/v1/sso/enrollment-token", json={"id_token": id_token})

    def job(
        self, job_id: str, wait: int = 0, headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        params = {"wait": wait} if wait else None
        return self._call(
            "GET",
            f"/v1/jobs/{job_id}",
            params=params,
            headers=headers,
            read_timeout=wait + READ_MARGIN_S,
        )

    def wait_job(
        self,
        job_id: str,
        timeout: float,
        on_status: Callable[[str], None] = lambda status: None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Wait for the job to end; its result when it succeeded, else a one-line error."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            job = self.job(job_id, wait=max(1, min(WAIT_STEP_S, int(remaining))), headers=headers)
            on_status(str(job.get("status")))
            if job.get("status") == "succeeded":
                return dict(job.get("result") or {})
            if job.get("status") == "failed":
                raise ClientError(
                    f"the job failed: {_job_error(job)}", code="job_failed", exit_code=EXIT_JOB
                )
            if time.monotonic() >= deadline:
                raise ClientError(
                    f"job {job_id} still {job.get('status')} after {timeout:.0f}s"
                    " (is the hub worker running?)",
                    code="job_timeout",
                    exit_code=EXIT_JOB,
                )

    def peer_config(
        self, version: str | None = None, wait: float = 0, delta: bool = False
    ) -> dict[str, Any]:
        """GET /v1/peer/config with our certificate; with ``version`` and ``wait``, the server
        answers when the config's version is not ``version``, or after ``wait`` seconds (with
        ``delta``, a config that moved meanwhile comes as a delta from ``version``)."""
        params: dict[str, Any] | None = None
        if version and wait:
            params = {"version": version, "wait": wait} | ({"delta": "true"} if delta else {})
        return self._call(
            "GET", "/v1/peer/config", params=params, mtls=True, read_timeout=wait + READ_MARGIN_S
        )

    def renew_certificate(self, csr: str) -> dict[str, Any]:
        """POST /v1/peer/certificate with our (still valid) certificate: ``202 {job_id, ...}``."""
        return self._call("POST", "/v1/peer/certificate", json={"csr": csr}, mtls=True)

    def put_candidates(self, addresses: list[str], listen_port: int) -> dict[str, Any]:
        """PUT /v1/peer/candidates with our certificate: our own addresses and listen port,
        for the peers that may try a direct path to us."""
        body = {"addresses": addresses, "listen_port": listen_port}
        return self._call("PUT", "/v1/peer/candidates", json=body, mtls=True)

    def put_paths(self, paths: list[dict[str, Any]]) -> dict[str, Any]:
        """PUT /v1/peer/paths with our certificate: direct, trying or relayed per peer."""
        return self._call("PUT", "/v1/peer/paths", json={"paths": paths}, mtls=True)

    def rotate_key(self, public_key: str) -> dict[str, Any]:
        """PUT /v1/peer/key with our certificate: ``202 {job_id, ...}``."""
        return self._call("PUT", "/v1/peer/key", json={"public_key": public_key}, mtls=True)

    # -- one request, its failures as ClientError ----------------------------------------
    def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Any = None,
        headers: dict[str, str] | None = None,
        read_timeout: float = 30.0,
        token_call: bool = False,
        mtls: bool = False,
    ) -> dict[str, Any]:
        try:
            resp = http_retry.send(
                self.session,
                method,
                self.server,
                path,
                ca=self.ca,
                json=json,
                params=params,
                headers=headers,
                verify=self.verify,
                timeout=(CONNECT_TIMEOUT_S, read_timeout),
            )
        except http_retry.NoAnswer as exc:
            raise ClientError(str(exc), code=exc.code, exit_code=exc.exit_code) from None
        if resp.status_code >= 400:
            raise _http_error(resp, token_call=token_call, mtls=mtls)
        try:
            body = resp.json()
        except ValueError:
            raise ClientError(
                f"{method} {path}: the server answered {resp.status_code} without JSON",
                code="bad_answer",
                exit_code=EXIT_FAILED,
            ) from None
        if not isinstance(body, dict):
            raise ClientError(f"{method} {path}: unexpected answer", code="bad_answer")
        return body


def _http_error(resp: requests.Response, *, token_call: bool, mtls: bool) -> ClientError:
    code, message, fields = http_retry.error_of(resp)
    if token_call and code in TOKEN_MESSAGES:
        return ClientError(TOKEN_MESSAGES[code], code=code, exit_code=EXIT_TOKEN)
    if token_call and resp.status_code == 401:
        return ClientError(TOKEN_MESSAGES["token_invalid"], code=code, exit_code=EXIT_TOKEN)
    if mtls and (resp.status_code in (401, 403) or code in CERT_CODES):
        return ClientError(
            f"the server rejected this client's certificate: {message}",
            code=code,
            exit_code=EXIT_TLS,
        )
    if fields:
        message = "; ".join(f"{k}: {v}" for k, v in fields.items())
    return ClientError(
        f"the server refused ({resp.status_code} {code}): {message}",
        code=code,
        exit_code=EXIT_FAILED,
    )


def _job_error(job: dict[str, Any]) -> str:
    err = job.get("error")
    if isinstance(err, dict):
        return f"{err.get('message') or err.get('code')} ({err.get('code')})"
    return str(err or "no reason given")

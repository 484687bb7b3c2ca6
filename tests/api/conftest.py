"""The API as it runs: gunicorn over TLS on loopback, with the session's PostgreSQL and Redis.

The server is started once per session (``elysium api``, ``tests/api/session.py``) with a PKI
made in a temp dir; each test gets an empty database, an admin token, and a ``requests``
session trusting the CA.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from psycopg.rows import dict_row

from db.enrollment_tokens import create_enrollment_token
from db.tokens import create_api_token
from elysium.keys import generate_private_key, public_key
from elysium.queue import celery_config as elysium_celery_config
from elysium.settings import Settings
from tests.oidc import OidcProvider
from tests.stack import Process, elysium_command, settings_env, wait_for
from workers.runtime import SETTINGS_KEY


@dataclass(frozen=True)
class Pki:
    dir: Path
    ca: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    foreign_cert: Path  # a peer-looking certificate from another CA
    foreign_key: Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def api_env(settings: Settings, api_pki: Pki, port: int, **extra: str) -> dict[str, str]:
    """The environment of a test API server (``extra`` ELYSIUM_* values win)."""
    values = {
        "ELYSIUM_API_BIND": f"127.0.0.1:{port}",
        "ELYSIUM_API_WORKERS": "2",
        "ELYSIUM_TLS_CERT": str(api_pki.server_cert),
        "ELYSIUM_TLS_KEY": str(api_pki.server_key),
        "ELYSIUM_TLS_CA": str(api_pki.ca),
        "ELYSIUM_CA_KEY": str(api_pki.ca_key),
        "ELYSIUM_JOB_WAIT_MAX_S": "10",
    }
    return settings_env(settings, **{**values, **extra})


def start_api(
    settings: Settings, api_pki: Pki, log: Path, port: int | None = None, **extra: str
) -> tuple[Process, str]:
    """A gunicorn API server (``elysium api``) answering /healthz; stop it by its pid. Each
    has a state directory of its own unless told one: a server empties its metrics files
    there when it starts, which would blank another server's ``/metrics`` sharing it."""
    port = port or free_port()
    if "ELYSIUM_STATE_DIR" not in extra:
        state = log.parent / f"api-state-{port}"
        state.mkdir(exist_ok=True)
        extra["ELYSIUM_STATE_DIR"] = str(state)
    server = Process(elysium_command("api"), api_env(settings, api_pki, port, **extra), log)
    url = f"https://127.0.0.1:{port}"
    try:
        wait_for(
            lambda: requests.get(f"{url}/healthz", verify=str(api_pki.ca), timeout=2).ok,
            30,
            "the API to answer /healthz",
        )
    except BaseException:
        server.stop()
        raise
    return server, url


@dataclass(frozen=True)
class Sso:
    """An API server that signs in through a real OpenID provider (tests/oidc)."""

    provider: OidcProvider
    url: str


class Api:
    """A keep-alive HTTPS session to the test API; paths are relative to its base URL."""

    def __init__(
        self, base: str, ca: Path, token: str | None = None, cert: tuple[str, str] | None = None
    ) -> None:
        self.base = base
        self.ca = str(ca)
        self.session = requests.Session()
        if cert is not None:
            self.session.cert = cert
        if token is not None:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def request(self, method: str, path: str, **kw: Any) -> requests.Response:
        kw.setdefault("timeout", 30)
        kw.setdefault(
            "verify", self.ca
        )  # per request: a session's verify loses to REQUESTS_CA_BUNDLE
        return self.session.request(method, self.base + path, **kw)

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> requests.Response:
        return self.request("POST", path, **kw)

    def patch(self, path: str, **kw: Any) -> requests.Response:
        return self.request("PATCH", path, **kw)

    def put(self, path: str, **kw: Any) -> requests.Response:
        return self.request("PUT", path, **kw)

    def delete(self, path: str, **kw: Any) -> requests.Response:
        return self.request("DELETE", path, **kw)


@pytest.fixture
def celery_config(settings: Settings, api_pki: Pki) -> dict[str, object]:
    """The in-process control worker (``celery_worker``) holds the CA key; the API does not."""
    signer = dataclasses.replace(settings, tls_ca=api_pki.ca, ca_key=api_pki.ca_key)
    return {**elysium_celery_config(signer), SETTINGS_KEY: signer}


@pytest.fixture
def db(clean_db: str) -> Iterator[psycopg.Connection[Any]]:
    """The empty test database, for arranging and for checking what the API wrote."""
    with psycopg.connect(clean_db, autocommit=True, row_factory=dict_row) as c:
        yield c


def make_token(db: psycopg.Connection[Any], scope: str, ttl: int | None = None) -> str:
    _, text = create_api_token(db, f"test-{scope}", scope, ttl, "test")
    return text


@pytest.fixture
def admin(api_url: str, api_pki: Pki, db: psycopg.Connection[Any]) -> Api:
    return Api(api_url, api_pki.ca, make_token(db, "admin"))


@pytest.fixture
def operator(api_url: str, api_pki: Pki, db: psycopg.Connection[Any]) -> Api:
    return Api(api_url, api_pki.ca, make_token(db, "operator"))


@pytest.fixture
def reader(api_url: str, api_pki: Pki, db: psycopg.Connection[Any]) -> Api:
    return Api(api_url, api_pki.ca, make_token(db, "reader"))


@pytest.fixture
def anonymous(api_url: str, api_pki: Pki) -> Api:
    return Api(api_url, api_pki.ca)


@pytest.fixture
def interface_id(admin: Api) -> int:
    """An interface (10.30.0.0/24) on hub ``hub-a``; no hub worker builds it in these tests."""
    assert (
        admin.post("/v1/hubs", json={"name": "hub-a", "endpoint": "192.0.2.1"}).status_code == 201
    )
    r = admin.post(
        "/v1/hubs/hub-a/interfaces",
        json={"name": "wg0", "network": "10.30.0.0/24", "listen_port": 51820},
    )
    assert r.status_code == 202, r.text
    return int(r.json()["interface_id"])


def enrollment_token(
    db: psycopg.Connection[Any],
    interface_id: int,
    uses: int = 1,
    subnets: list[str] | None = None,
    ttl: int = 600,
) -> str:
    _, text = create_enrollment_token(db, interface_id, None, ttl, uses, subnets or [], "test")
    return text


def new_key() -> str:
    return public_key(generate_private_key())

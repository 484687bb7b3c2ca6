"""The operator command against the real stack: the API tests' gunicorn over TLS, a hub worker
in a hub namespace of our own (so jobs really end), and ``elysium`` run in-process through its
``main(argv)`` with a private ``$XDG_CONFIG_HOME``.

The database is emptied once per module; tests in a module share the hub and name what they
make so they do not depend on one another's order.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cli.main import main
from db.tokens import create_api_token
from elysium.settings import Settings
from tests.api import conftest as api_fixtures
from tests.api.conftest import Pki
from tests.client.conftest import stop_devices
from tests.conftest import TABLES
from tests.netns import Topology, can_run
from tests.stack import Process, elysium_command, settings_env

# The API tests' empty database for each test (the session's servers: tests/api/session.py).
db = api_fixtures.db

HUB = "hub-a"


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class Operator:
    """``elysium`` as an operator runs it, with its own config directory."""

    url: str
    ca: Path
    config: Path
    admin_token: str
    database_url: str

    def __call__(self, *argv: str, stdin: str | None = None, **env: str) -> Result:
        out, err = io.StringIO(), io.StringIO()
        values = {"XDG_CONFIG_HOME": str(self.config), "COLUMNS": "200", **env}
        redirect = (contextlib.redirect_stdout(out), contextlib.redirect_stderr(err))
        with _environ(values), _stdin(stdin), redirect[0], redirect[1]:
            try:
                main(list(argv))
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        return Result(code, out.getvalue(), err.getvalue())

    def ok(self, *argv: str, **kw: Any) -> str:
        done = self(*argv, **kw)
        assert done.code == 0, done
        return done.out

    def token(self, scope: str) -> str:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            _, text = create_api_token(conn, f"cli-{scope}", scope, 3600, "tests")
        return text

    def login(self, token: str | None = None, profile: str = "default") -> Result:
        return self(
            "login", "--server", self.url, "--ca", str(self.ca), "--profile", profile,
            "--token", token or self.admin_token,
        )  # fmt: skip


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _stdin(text: str | None) -> Iterator[None]:
    if text is None:
        yield
        return
    old, sys.stdin = sys.stdin, io.StringIO(text)
    try:
        yield
    finally:
        sys.stdin = old


@pytest.fixture(scope="module")
def operator(
    api_url: str, api_pki: Pki, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Operator:
    """An empty database, an admin token, and ``elysium`` logged in with it (profile default)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
        _, admin_token = create_api_token(conn, "cli-tests", "admin", 3600, "tests")
    ely = Operator(api_url, api_pki.ca, tmp_path_factory.mktemp("xdg"), admin_token, database_url)
    assert ely.login().code == 0
    return ely


@pytest.fixture(scope="module")
def hub_worker(
    operator: Operator, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Topology]:
    """Hub ``hub-a`` (declared with ``elysium hub add``) and its worker in a namespace of ours:
    interface and peer jobs run for real (userspace WireGuard); jobs sent before it
    consumes its queue wait there."""
    reason = can_run()
    if reason:
        pytest.fail(f"network namespaces: {reason}")
    topo = Topology(peer_count=0).create()
    state_dir = tmp_path_factory.mktemp("hub")
    worker: Process | None = None
    try:
        operator.ok("hub", "add", HUB, "--endpoint", topo.hub_ip)
        worker = Process(
            elysium_command(
                "hub-worker", "--hub", HUB, "--netns", topo.hub, "--state-dir", str(state_dir)
            ),
            settings_env(settings),
            state_dir / "hub-worker.log",
        )
        yield topo
    finally:
        if worker is not None:
            worker.stop()
        stop_devices(state_dir / "hubs" / HUB, topo.hub)
        topo.destroy()

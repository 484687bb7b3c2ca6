"""Fixtures shared by every level: a throwaway PostgreSQL database and settings pointing at it.

The session creates its own database (``elysium_test_<random>``) on the server that
``make deps`` started, migrates it, and drops it at the end; tests never touch another one.
"""

from __future__ import annotations

import importlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import Connection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import ConnectionPool

from db.migrate import drop_database, migrate
from db.pool import open_pool
from elysium.settings import Settings

ADMIN_URL = os.environ.get(
    "ELYSIUM_TEST_ADMIN_URL", "postgresql://elysium:elysium@127.0.0.1:5432/elysium"
)


def _url_for(dbname: str) -> str:
    base, _, _ = ADMIN_URL.rpartition("/")
    return f"{base}/{dbname}"


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    name = f"elysium_test_{secrets.token_hex(4)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _url_for(name)
    try:
        migrate(url)
        yield url
    finally:
        drop_database(ADMIN_URL, name)


@pytest.fixture(scope="session")
def session_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("state")


@pytest.fixture(scope="session")
def settings(database_url: str, session_state_dir: Path) -> Settings:
    return Settings.from_env(
        {},
        database_url=database_url,
        redis_url=os.environ.get("ELYSIUM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
        # Broker keys of this test session only: parallel runs never consume each other's jobs.
        redis_key_prefix=f"elytest{secrets.token_hex(4)}:",
        state_dir=session_state_dir,
        wg_driver="userspace",
    )


TABLES = (
    "audit, jobs, enrollment_tokens, api_tokens, peers, released_addresses, address_pools,"
    " interfaces, hubs, leases, sso_logins, sso_spent"
)


@pytest.fixture
def clean_db(database_url: str) -> str:
    """An empty schema for one test."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    return database_url


@pytest.fixture
def conn(clean_db: str) -> Iterator[Connection[DictRow]]:
    """An autocommit connection to the clean test database."""
    with psycopg.connect(clean_db, autocommit=True, row_factory=dict_row) as c:
        yield c


@pytest.fixture
def pool(settings: Settings, clean_db: str) -> Iterator[ConnectionPool[Connection[DictRow]]]:
    p = open_pool(settings, min_size=1, max_size=60)
    try:
        yield p
    finally:
        p.close()


# ---- network namespaces (tests/netns.py) ----------------------------------------------
from tests.netns import Topology  # noqa: E402
from tests.netns import can_run as netns_unavailable  # noqa: E402
from tests.netns import topology as netns_topology_cm  # noqa: E402


@pytest.fixture(scope="module")
def netns_topology() -> Iterator[Topology]:
    """Hub and peer namespaces on a bridged underlay (see tests/netns.py), per test module.

    Fails (never skips) when the host cannot run them: `make deps` installs what they need.
    """
    reason = netns_unavailable()
    if reason:
        pytest.fail(f"network namespaces: {reason}")
    with netns_topology_cm() as topo:
        yield topo


# ---- an in-process Celery worker (pytest-celery's celery_app / celery_worker) ----------
# For task-level tests: the workers' real Celery configuration on the session's Redis
# (its private key prefix), consuming the control queue in a thread of the test process.
# End-to-end tests run workers as subprocesses instead (tests/stack.py).
# pytest-celery 1.x also ships container-based fixtures of these names; the in-process ones
# (its backward-compatible set, from celery.contrib.pytest) are the ones meant here.
from celery.contrib.pytest import celery_app, celery_worker  # noqa: E402, F401

from elysium.queue import CONTROL_QUEUE  # noqa: E402
from elysium.queue import celery_config as elysium_celery_config  # noqa: E402
from workers.celery_app import TASK_MODULES  # noqa: E402
from workers.runtime import SETTINGS_KEY, close_runtimes  # noqa: E402

# Imported once, here: celery_app's fixture forgets the shared-task hooks registered during
# a test, so modules first imported inside one would leave later tests' apps without tasks.
for _module in TASK_MODULES:
    importlib.import_module(_module)


@pytest.fixture(autouse=True)
def _close_worker_runtimes() -> Iterator[None]:
    """An in-process worker's runtime (its pool's threads and connections) ends with its
    test: left open, they pile up and keep the test process from exiting."""
    yield
    close_runtimes()


@pytest.fixture
def celery_config(settings: Settings) -> dict[str, object]:
    return {**elysium_celery_config(settings), SETTINGS_KEY: settings}


@pytest.fixture
def celery_includes() -> list[str]:
    return TASK_MODULES


@pytest.fixture
def celery_worker_pool() -> str:
    return "threads"


@pytest.fixture
def celery_worker_parameters() -> dict[str, object]:
    # No result backend (jobs live in PostgreSQL), so no ping round trip at start.
    return {"queues": [CONTROL_QUEUE], "perform_ping_check": False, "concurrency": 1}


# ---- the API's session servers (tests/api/session.py) -----------------------------------
# Registered here once, so that every directory shares one PKI, one API and one SSO server.
from tests.api.session import api_pki, api_url, sso  # noqa: E402, F401

"""Migrations: from empty, again as a no-op, and from two runners at once."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator

import psycopg
import pytest

from db.migrate import drop_database, migrate, migration_files
from tests.conftest import ADMIN_URL, _url_for


@pytest.fixture
def empty_database() -> Iterator[str]:
    name = f"elysium_test_mig_{secrets.token_hex(4)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _url_for(name)
    finally:
        drop_database(ADMIN_URL, name)


def test_migrate_from_empty_applies_every_file_then_is_a_noop(empty_database: str) -> None:
    names = [n for n, _ in migration_files()]
    assert migrate(empty_database) == names
    assert migrate(empty_database) == []
    with psycopg.connect(empty_database) as conn:
        tables = {
            r[0]
            for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
    assert {
        "hubs",
        "interfaces",
        "peers",
        "jobs",
        "audit",
        "api_tokens",
        "enrollment_tokens",
        "schema_migrations",
    } <= tables


def test_two_runners_at_once_apply_each_migration_once(empty_database: str) -> None:
    results: list[list[str]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2, timeout=60)

    def run() -> None:
        try:
            barrier.wait()
            results.append(migrate(empty_database))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    names = [n for n, _ in migration_files()]
    assert sorted(results, key=len) == [[], names]
    with psycopg.connect(empty_database) as conn:
        count = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()
    assert count == (len(names),)


def test_drop_database_ends_connections_still_open_to_it(empty_database: str) -> None:
    name = empty_database.rpartition("/")[2]
    held = psycopg.connect(empty_database, autocommit=True)
    try:
        held.execute("SELECT 1")
        drop_database(ADMIN_URL, name)
        with pytest.raises(psycopg.OperationalError):
            held.execute("SELECT 1")  # ended by the drop
    finally:
        held.close()
    with psycopg.connect(ADMIN_URL) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    assert found is None

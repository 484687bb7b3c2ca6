"""Apply the plain SQL files in ``db/migrations`` in order, once each, under an advisory lock;
and drop a throwaway database (tests, benchmarks)."""

from __future__ import annotations

import time
from importlib import resources

import psycopg
from psycopg import sql

MIGRATION_LOCK = 0x454C5953  # "ELYS": one runner at a time across processes


def migration_files() -> list[tuple[str, str]]:
    """(name, sql) for each migration, sorted by name."""
    folder = resources.files("db") / "migrations"
    items = [(p.name, p.read_text()) for p in folder.iterdir() if p.name.endswith(".sql")]
    return sorted(items)


def migrate(database_url: str) -> list[str]:
    """Apply pending migrations; return the names applied (empty when up to date)."""
    applied: list[str] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r[0] for r in conn.execute("SELECT name FROM schema_migrations")}
            for name, sql in migration_files():
                if name in done:
                    continue
                with conn.transaction():
                    conn.execute(sql.encode())
                    conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (name,))
                applied.append(name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
    return applied


def drop_database(admin_url: str, name: str, patience_s: float = 30.0) -> None:
    """Drop database ``name``, ending every connection to it (``WITH (FORCE)``).

    For a role that is not a superuser, PostgreSQL 15 refuses ``FORCE`` while a process that
    no role owns is in the database, such as an autovacuum worker ("must be a member of the
    role whose process is being terminated"). Such a worker ends within moments, so the drop
    is tried again until ``patience_s`` has passed, then the error stands.
    """
    statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    deadline = time.monotonic() + patience_s
    while True:
        try:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(statement)
            return
        except psycopg.errors.InsufficientPrivilege:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)

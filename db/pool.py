"""The psycopg connection pool every process opens once."""

from __future__ import annotations

from psycopg import Connection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import ConnectionPool

from elysium.settings import Settings


def open_pool(
    settings: Settings,
    *,
    min_size: int | None = None,
    max_size: int | None = None,
    name: str = "elysium",
) -> ConnectionPool[Connection[DictRow]]:
    """Open a pool of autocommit dict-row connections (use ``conn.transaction()`` blocks)."""
    pool: ConnectionPool[Connection[DictRow]] = ConnectionPool(
        settings.database_url,
        min_size=settings.db_pool_min if min_size is None else min_size,
        max_size=settings.db_pool_max if max_size is None else max_size,
        kwargs={"row_factory": dict_row, "autocommit": True},
        connection_class=Connection[DictRow],
        name=name,
        open=True,
        check=ConnectionPool.check_connection,
    )
    return pool

"""The psycopg connection pool every process opens once."""

from __future__ import annotations

import select

from psycopg import Connection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import ConnectionPool

from elysium.settings import Settings

# psycopg_pool retries a lost connection with a doubling delay (1, 2, 4 … 64 s) for up to
# reconnect_timeout (default 5 min) and starts no other attempt meanwhile, so after an outage
# a process kept failing requests for up to that delay once PostgreSQL was back. Ending each
# round of retries after a few seconds lets the next request start a new one at once.
RECONNECT_TIMEOUT_S = 5.0


def open_pool(
    settings: Settings,
    *,
    min_size: int | None = None,
    max_size: int | None = None,
    name: str = "elysium",
) -> ConnectionPool[Connection[DictRow]]:
    """Open a pool of autocommit dict-row connections (use ``conn.transaction()`` blocks)."""

    def check(conn: Connection[DictRow]) -> None:
        # An idle connection has nothing to read: when its socket is readable, the server
        # has closed it (restart, outage) or sent a notice, and only then is a round trip
        # spent on checking it. One dead connection means the server went away: check the
        # idle ones now. Met one by one, each would cost the request a doubling pause
        # (0, 1, 2, 4 s) and a pool of them ran it past its timeout although PostgreSQL
        # was back.
        if not conn.broken and not _readable(conn):
            return
        try:
            ConnectionPool.check_connection(conn)
        except Exception:
            pool.check()
            raise

    pool: ConnectionPool[Connection[DictRow]] = ConnectionPool(
        settings.database_url,
        min_size=settings.db_pool_min if min_size is None else min_size,
        max_size=settings.db_pool_max if max_size is None else max_size,
        # The name shows in pg_stat_activity: who holds a server's connections is one query.
        kwargs={"row_factory": dict_row, "autocommit": True, "application_name": name},
        connection_class=Connection[DictRow],
        name=name,
        open=True,
        check=check,
        reconnect_timeout=RECONNECT_TIMEOUT_S,
    )
    return pool


def _readable(conn: Connection[DictRow]) -> bool:
    """Whether the server has sent an idle connection anything (EOF included)."""
    try:
        ready, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(ready)

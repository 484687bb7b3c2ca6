"""Counts for the metrics endpoint, computed when Prometheus scrapes."""

from __future__ import annotations

from psycopg import Connection
from psycopg.rows import DictRow

from db.peer_states import NOT_ENDED


def jobs_by_kind_and_status(conn: Connection[DictRow]) -> list[tuple[str, str, int]]:
    rows = conn.execute(
        "SELECT kind, status, count(*) AS n FROM jobs GROUP BY kind, status ORDER BY 1, 2"
    ).fetchall()
    return [(r["kind"], r["status"], int(r["n"])) for r in rows]


def peers_online(conn: Connection[DictRow]) -> int:
    row = conn.execute(
        f"SELECT count(*) AS n FROM peers p WHERE p.online AND {NOT_ENDED}"
    ).fetchone()
    return int(row["n"]) if row else 0


def ping(conn: Connection[DictRow]) -> None:
    conn.execute("SELECT 1").fetchone()


def paths_by_kind(conn: Connection[DictRow]) -> list[tuple[str, int]]:
    """Pairs of peers by the path their peers last reported: direct, trying, relayed."""
    rows = conn.execute("SELECT path, count(*) AS n FROM peer_paths GROUP BY path ORDER BY path")
    return [(r["path"], int(r["n"])) for r in rows.fetchall()]

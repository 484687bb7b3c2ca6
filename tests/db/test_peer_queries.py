"""Peer queries a hub worker runs on every job: their cost must not grow with the interface."""

from __future__ import annotations

from typing import Any

from psycopg import Connection
from psycopg.rows import DictRow

from db.hubs import create_hub
from db.interfaces import create_interface
from db.peers import desired_peers


class Recording:
    """A connection that remembers the statements it is given (and runs them)."""

    def __init__(self, conn: Connection[DictRow]) -> None:
        self.conn = conn
        self.statements: list[tuple[str, Any]] = []

    def execute(self, sql: str, params: Any = None) -> Any:
        self.statements.append((sql, params))
        return self.conn.execute(sql, params)


def rows_read(plan: dict[str, Any]) -> int:
    """Rows the scans of a plan read: those they returned plus those their filters dropped."""
    own = 0
    if "Scan" in plan["Node Type"]:
        own = plan["Actual Rows"] + plan.get("Rows Removed by Filter", 0)
    return own + sum(rows_read(p) for p in plan.get("Plans", []))


def test_the_desired_peers_of_a_job_are_read_by_id_without_fresh_statistics(
    conn: Connection[DictRow],
) -> None:
    hub = create_hub(conn, "hub-a", "192.0.2.1:51820")
    big = create_interface(conn, hub["id"], "wg0", "10.40.0.0/16", None, 51820, None, [], 25)
    other = create_interface(conn, hub["id"], "wg1", "10.41.0.0/24", None, 51821, None, [], 25)
    conn.execute(
        "INSERT INTO peers (interface_id, name, public_key, address)"
        " VALUES (%s, 'o', rpad('o', 43, 'o') || '=', '10.41.0.2')",
        (other["id"],),
    )
    conn.execute("ANALYZE peers")  # statistics of a small table, then many peers at once
    conn.execute(
        "INSERT INTO peers (interface_id, name, public_key, address)"
        " SELECT %s, 'p' || n, lpad(n::text, 43, 'k') || '=', '10.40.0.0'::inet + n + 1"
        " FROM generate_series(1, 3000) AS n",
        (big["id"],),
    )
    one = conn.execute(
        "SELECT id FROM peers WHERE interface_id = %s ORDER BY id DESC LIMIT 1", (big["id"],)
    ).fetchone()
    assert one is not None
    recording = Recording(conn)
    got = desired_peers(recording, big["id"], [one["id"]])  # type: ignore[arg-type]
    assert [p["id"] for p in got] == [one["id"]] and "interface_id" not in got[0]
    assert desired_peers(recording, other["id"], [one["id"]]) == []  # type: ignore[arg-type]
    for sql, params in recording.statements:
        row = conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", params).fetchone()
        assert row is not None
        plan = row["QUERY PLAN"][0]["Plan"]
        assert rows_read(plan) <= 5, plan  # not the 3,000 peers of the interface

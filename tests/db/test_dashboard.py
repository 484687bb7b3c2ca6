"""The dashboard's queries: a peer search walks the name index however often it runs."""

from __future__ import annotations

from psycopg import Connection
from psycopg.rows import DictRow

from db.dashboard import search_peers
from db.hubs import create_hub
from db.interfaces import create_interface


def peers_read(conn: Connection[DictRow]) -> int:
    """Rows of ``peers`` this transaction has read so far, by any scan."""
    row = conn.execute(
        "SELECT seq_tup_read + idx_tup_fetch AS n FROM pg_stat_xact_user_tables"
        " WHERE relname = 'peers'"
    ).fetchone()
    assert row is not None
    return int(row["n"])


def test_a_name_search_reads_the_peers_it_matches_also_once_the_statement_is_prepared(
    conn: Connection[DictRow],
) -> None:
    hub = create_hub(conn, "hub-a", "192.0.2.1")
    with conn.transaction():
        iface = create_interface(conn, hub["id"], "wg0", "10.64.0.0/18", None, 51820, None, [], 25)
    conn.execute(
        "INSERT INTO peers (interface_id, name, public_key, address, status)"
        " SELECT %s, 'peer-' || g, rpad('k' || g, 43, 'A') || '=',"
        " '10.64.0.0'::inet + g, 'active' FROM generate_series(2, 10001) g",
        (iface["id"],),
    )
    conn.execute("ANALYZE peers")
    runs = 20  # psycopg prepares it at the 5th, PostgreSQL may go generic 5 runs later

    with conn.transaction():
        for _ in range(runs):
            found = search_peers(conn, iface["id"], "peer-99", 0, 50)
        read = peers_read(conn)

    assert [p["name"] for p in found[:3]] == ["peer-99", "peer-990", "peer-991"]
    # It matches 111 (peer-99, peer-990…999, peer-9900…9999): about that many, not 10,000.
    assert read < runs * 200, read / runs

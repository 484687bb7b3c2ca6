"""Address allocation cost into a /16 with 0 and with 10,000 peers on the interface.

Goal: ``ratio`` = per_alloc_ms_10k / per_alloc_ms_empty ≤ 2 — allocation must not scan peers.
Run: ``.venv/bin/python -m bench.alloc`` (writes bench/results/alloc.json).
"""

from __future__ import annotations

import time

import psycopg
from psycopg.rows import dict_row

from bench.scaffold import random_key, size, throwaway_database, write_result
from db.hubs import create_hub
from db.interfaces import create_interface
from db.peers import create_peer

SAMPLES = size(500, 20)
FILL = size(10_000, 100)
WARM_UP = size(100, 10)


def time_allocations(conn: psycopg.Connection, interface_id: int, n: int, tag: str) -> float:  # type: ignore[type-arg]
    """Mean ms of one allocation + peer insert, each in its own transaction."""
    start = time.perf_counter()
    for i in range(n):
        with conn.transaction():
            create_peer(conn, interface_id, f"{tag}{i}", random_key(), [], None, "bench")
    return (time.perf_counter() - start) * 1000 / n


def main() -> None:
    with (
        throwaway_database() as url,
        psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn,
    ):
        hub = create_hub(conn, "bench", "192.0.2.1")
        empty = create_interface(conn, hub["id"], "wg0", "10.0.0.0/16", None, 51820, None, [], None)
        full = create_interface(conn, hub["id"], "wg1", "10.1.0.0/16", None, 51821, None, [], None)
        # Warm up the plan cache and connection on a third interface.
        warm = create_interface(conn, hub["id"], "wg2", "10.2.0.0/16", None, 51822, None, [], None)
        time_allocations(conn, warm["id"], WARM_UP, "w")
        time_allocations(conn, full["id"], FILL, "f")  # 10,000 peers
        conn.execute("ANALYZE")
        per_empty = time_allocations(conn, empty["id"], SAMPLES, "e")
        per_10k = time_allocations(conn, full["id"], SAMPLES, "g")
    write_result(
        "alloc",
        {
            "samples": SAMPLES,
            "peers_on_full_interface": FILL,
            "per_alloc_ms_empty": round(per_empty, 4),
            "per_alloc_ms_10k": round(per_10k, 4),
            "ratio": round(per_10k / per_empty, 3),
            "goals": {"ratio": 2.0},
        },
    )


if __name__ == "__main__":
    main()

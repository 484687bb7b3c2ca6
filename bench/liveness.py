"""Liveness benchmark: one sweep of a 10,000-peer interface, end to end, against per-row writes.

Run as root: ``.venv/bin/python -m bench.liveness``. A real wireguard-go ``wg0`` with 10,000
peers runs in a throwaway namespace; a throwaway database (``elysium_bench_<random>``) holds
the same peers. Both are removed at the end; results go to ``bench/results/liveness.json``.

``sweep_10k_s`` is what one sweep costs for one interface: the hub's single driver dump, the
columns it sends (JSON encoded and decoded, as the Celery message is), and the control side's
one batch ``UPDATE``. ``per_row_update_10k_s`` writes the same values with one ``UPDATE`` per
peer (the same query with one row), in one transaction. An idle benchmark device has no
traffic, so every run gives each peer a new handshake time and counters: every row changes,
the worst case for the write.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import Connection
from psycopg.rows import DictRow, dict_row

from bench.scaffold import RESULTS_DIR, random_key, size, throwaway_database, throwaway_namespace
from dataplane import InterfaceSpec, PeerSpec, PeerStats
from dataplane.uapi import UapiDriver
from db.hubs import create_hub
from db.interfaces import create_interface
from db.peer_liveness import record_liveness
from db.peers import create_peer
from elysium.keys import generate_private_key

PEERS = size(10_000, 50)
REPEAT = size(5, 1)
ONLINE_AFTER_S = 180.0
RESULTS = RESULTS_DIR / "liveness.json"


def columns(stats: list[PeerStats], bump: int) -> dict[str, Any]:
    """What the hub sends for one interface (as ``report_liveness`` builds it), every peer
    given a fresh handshake and counters ``bump`` higher than the device's."""
    now = time.time()
    return {
        "keys": [s.public_key for s in stats],
        "handshakes": [now for _ in stats],
        "rx": [s.rx_bytes + bump for s in stats],
        "tx": [s.tx_bytes + bump for s in stats],
        "endpoints": [s.endpoint for s in stats],
    }


def write_batch(conn: Connection[DictRow], interface_id: int, cols: dict[str, Any]) -> int:
    when = [datetime.fromtimestamp(t, UTC) for t in cols["handshakes"]]
    return record_liveness(
        conn,
        interface_id,
        cols["keys"],
        when,
        cols["rx"],
        cols["tx"],
        cols["endpoints"],
        ONLINE_AFTER_S,
    )


def write_per_row(conn: Connection[DictRow], interface_id: int, cols: dict[str, Any]) -> int:
    written = 0
    with conn.transaction():
        for i, key in enumerate(cols["keys"]):
            written += record_liveness(
                conn,
                interface_id,
                [key],
                [datetime.fromtimestamp(cols["handshakes"][i], UTC)],
                [cols["rx"][i]],
                [cols["tx"][i]],
                [cols["endpoints"][i]],
                ONLINE_AFTER_S,
            )
    return written


def run(ns: str, state: Path, database_url: str) -> dict[str, Any]:
    keys = [random_key() for _ in range(PEERS)]
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        hub = create_hub(conn, "bench", "198.18.0.1")
        iface = create_interface(
            conn, hub["id"], "wg0", "10.96.0.0/16", None, 51820, None, [], None
        )
        with conn.transaction():
            peers = [
                create_peer(conn, iface["id"], f"p{i}", k, (), None, "bench")
                for i, k in enumerate(keys)
            ]
        (state / "wg0.key").write_text(generate_private_key() + "\n")
        driver = UapiDriver(state, ns)
        try:
            driver.ensure_interface(
                InterfaceSpec("wg0", state / "wg0.key", 51820, ("10.96.0.1/16",))
            )
            driver.converge(
                "wg0", [PeerSpec(p["public_key"], (f"{p['address']}/32",)) for p in peers]
            )
            return measure(conn, driver, iface["id"])
        finally:
            driver.remove_interface("wg0")
            driver.close()


def measure(conn: Connection[DictRow], driver: UapiDriver, interface_id: int) -> dict[str, Any]:
    sweep, per_row, dump, write = [], [], [], []
    bump = 0
    for _ in range(REPEAT):
        bump += 1
        start = time.perf_counter()
        stats = driver.dump("wg0")
        dumped = time.perf_counter()
        cols = json.loads(json.dumps(columns(stats, bump)))
        written = write_batch(conn, interface_id, cols)
        end = time.perf_counter()
        assert written == PEERS, written
        sweep.append(end - start)
        dump.append(dumped - start)
        write.append(end - dumped)

        bump += 1
        cols = columns(stats, bump)
        start = time.perf_counter()
        written = write_per_row(conn, interface_id, cols)
        per_row.append(time.perf_counter() - start)
        assert written == PEERS, written
    return {
        "sweep_10k_s": statistics.median(sweep),
        "dump_10k_s": statistics.median(dump),
        "batch_write_10k_s": statistics.median(write),
        "per_row_update_10k_s": statistics.median(per_row),
    }


def main() -> None:
    with (
        throwaway_database() as url,
        throwaway_namespace() as ns,
        tempfile.TemporaryDirectory(prefix="elysium-bench-") as tmp,
    ):
        results = run(ns, Path(tmp), url)
    report = {
        "peers": PEERS,
        "repeat": REPEAT,
        "rows_written_per_run": PEERS,
        **{k: round(v, 6) for k, v in results.items()},
        "speedup_vs_per_row": round(results["per_row_update_10k_s"] / results["sweep_10k_s"], 2),
        "goals": {"sweep_10k_s": 1.0},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

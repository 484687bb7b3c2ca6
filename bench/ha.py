"""High availability under faults: what each HA fault test of ``tests/faults/`` measured.

Runs the tests themselves (one implementation of each fault: the stack, the burst through
HAProxy, the kill, the checks) with ``ELYSIUM_FAULT_FIGURES`` so that each writes its figures,
and ``ELYSIUM_FAULT_BURST`` for the burst's size; writes ``bench/results/ha.json``::

    {"faults": {NAME: {"unavailable_s", "lost", "doubled", "data_plane_loss", …}}, …}

``unavailable_s``: the longest stretch from a refused write (dropped connection, 5xx) to the
next acknowledged one; ``lost``/``doubled``: acknowledged enrollments that did not end on the
hub once / enrollment jobs or device peers beyond them; ``data_plane_loss``: pings from one
enrolled peer to another, through the hub, lost during the fault. A test that fails (a goal
missed) fails this benchmark.

Run: ``.venv/bin/python -m bench.ha`` (root: namespaces, wireguard-go, PostgreSQL clusters).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.scaffold import size, write_result

ROOT = Path(__file__).resolve().parents[1]
# fault name -> the test that makes it
TESTS = {
    "api_replica": "tests/faults/test_api_replicas.py",
    "postgres_primary": "tests/faults/test_postgres_failover.py",
    "redis_primary": "tests/faults/test_sentinel.py",
    "control_worker": "tests/faults/test_control_plane.py",
    "beat_leader": "tests/faults/test_control_plane.py",
}
GOALS = {
    "api_replica": 10.0,
    "postgres_primary": 15.0,
    "redis_primary": 10.0,
    "control_worker": 10.0,
    "beat_leader": 10.0,
}


def run_faults(burst: int) -> tuple[dict[str, dict[str, float]], float]:
    """Each fault's figures, and how long the tests took."""
    with tempfile.TemporaryDirectory(prefix="ely-ha-") as work:
        figures = Path(work) / "figures.json"
        env = {
            **os.environ,
            "ELYSIUM_FAULT_FIGURES": str(figures),
            "ELYSIUM_FAULT_BURST": str(burst),
        }
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", *dict.fromkeys(TESTS.values())],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        took = time.monotonic() - started
        if done.returncode != 0:
            output = done.stdout[-4000:] + done.stderr[-2000:]
            raise SystemExit(f"ha: a fault test failed:\n{output}")
        found: dict[str, dict[str, float]] = json.loads(figures.read_text())
    missing = set(TESTS) - set(found)
    if missing:
        raise SystemExit(f"ha: no figures from {', '.join(sorted(missing))}")
    return found, took


def main() -> None:
    burst = size(1000, 100)
    faults, took = run_faults(burst)
    rounded = {
        name: {k: round(v, 3) if isinstance(v, float) else v for k, v in sorted(figs.items())}
        for name, figs in sorted(faults.items())
    }
    goals: dict[str, float] = {}
    for name, limit in GOALS.items():
        goals[f"faults.{name}.unavailable_s"] = limit
        for zero in ("lost", "doubled", "data_plane_loss"):
            goals[f"faults.{name}.{zero}"] = 0
    write_result(
        "ha",
        {
            "burst": burst,
            "faults": rounded,
            "replica_rss_mb": rounded["api_replica"].pop("replica_rss_mb"),
            "tests_s": round(took, 1),
            "goals": goals,
        },
    )


if __name__ == "__main__":
    main()

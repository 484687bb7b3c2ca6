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

Then the same shape at scale (``bench/follow.py``, ``follow_across_replicas``): 10,000 peers
follow their config across two API replicas (separate gunicorn masters, two workers each)
behind two HAProxy processes (one process holds two descriptors a connection and the open-file
limit here is 20,000: half the followers go through each, as a deployment has no single
balancer either), from four processes of asyncio followers. Each follower, told of a change,
asks again at once, as a real one does; one interface-wide change must reach every follower:
``followers_10k_fanout_p99_s`` (goal ≤ 3 s), with the replicas' summed RSS while all wait.

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
from typing import Any

from bench.follow import follow_across_replicas
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


FOLLOWERS = size(10_000, 40)
GOAL_FANOUT_S = 3.0


def followers_figures() -> dict[str, Any]:
    """10,000 followers across the replicas (see the module's docstring)."""
    run = follow_across_replicas(FOLLOWERS)
    if not run["reached"]:
        raise SystemExit(f"ha: no follower got the change: {run['errors']}")
    return {
        "followers_10k_fanout_p99_s": run["fanout_p99_s"],
        "followers_10k_replicas_rss_mb": run["replicas_rss_mb"],
        "followers_10k": {
            "followers": run["followers"],
            # followers that never got the change (connection refused again and again, or
            # not within 60 s); the percentiles are over the others
            "not_reached": run["followers"] - run["reached"],
            "fanout_p50_s": run["fanout_p50_s"],
            "fanout_max_s": run["fanout_max_s"],
            # the CPU the change took, apart from how busy the machine was
            "replicas_cpu_s": run["replicas_cpu_s"],
            "replicas_cpu_ms_per_follower": round(1000 * run["replicas_cpu_s"] / FOLLOWERS, 3),
            "clients_cpu_s": run["clients_cpu_s"],
            "replicas_rss_mb_idle": run["replicas_rss_mb_idle"],
            "connect_all_s": run["connect_all_s"],
            "reconnects": run["reconnects"],
            "unavailable": run["unavailable"],
            "setup": {
                **run["shape"],
                "waiters": "parked: no thread each (api/gunicorn_worker.py)",
            },
        },
    }


def main() -> None:
    burst = size(1000, 100)
    followers = followers_figures()
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
            **followers,
            "goals": {
                **goals,
                "followers_10k_fanout_p99_s": GOAL_FANOUT_S,
                "followers_10k.not_reached": 0,
            },
        },
    )


if __name__ == "__main__":
    main()

"""What the high-availability fault tests measured, for ``bench/ha.py``.

``bench/ha.py`` runs these tests with ``ELYSIUM_FAULT_FIGURES=<file>`` (each test adds its
fault's figures there) and ``ELYSIUM_FAULT_BURST=<n>`` (the burst's size); a plain test run
sets neither and records nothing.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

# Connections per pool in the HA stacks (two replicas of two workers each, hub, control, beat):
# enough for the bursts' 8 posts at a time, and within a shared server's max_connections.
HA_POOL_MAX = 4


def burst_size(default: int) -> int:
    """The burst's size: ``default``, or what ``bench/ha.py`` asks for."""
    return int(os.environ.get("ELYSIUM_FAULT_BURST", default))


def record(fault: str, **figures: float | int) -> None:
    """Add ``fault``'s figures to the file ``bench/ha.py`` reads (when it runs us)."""
    target = os.environ.get("ELYSIUM_FAULT_FIGURES")
    if not target:
        return
    path = Path(target)
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        found = json.loads(f.read() or "{}")
        found[fault] = figures
        f.seek(0)
        f.truncate()
        f.write(json.dumps(found, indent=2, sort_keys=True))

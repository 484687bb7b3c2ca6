"""The beat schedule: which control task runs how often (periods come from Settings)."""

from __future__ import annotations

from typing import Any

from elysium.queue import (
    CONTROL_EXPIRE,
    CONTROL_JANITOR,
    CONTROL_LIVENESS_SWEEP,
    CONTROL_RECONCILE_ALL,
)
from elysium.settings import Settings


def _entry(task: str, period_s: float) -> dict[str, Any]:
    # A run nobody picked up in time is dropped: the next period sends a fresh one.
    return {"task": task, "schedule": period_s, "options": {"expires": max(5.0, 2 * period_s)}}


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """Entries in Celery's ``beat_schedule`` format; every task goes to the control queue."""
    return {
        "liveness-sweep": _entry(CONTROL_LIVENESS_SWEEP, settings.liveness_interval_s),
        "expiry": _entry(CONTROL_EXPIRE, settings.expiry_interval_s),
        "reconcile": _entry(CONTROL_RECONCILE_ALL, settings.reconcile_interval_s),
        "job-janitor": _entry(CONTROL_JANITOR, settings.janitor_interval_s),
    }

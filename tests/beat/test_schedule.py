"""The beat schedule: four workflows, periods from Settings, all on the control queue."""

from __future__ import annotations

from beat.schedule import beat_schedule
from elysium.queue import CONTROL_QUEUE, route_task
from elysium.settings import Settings


def test_each_workflow_runs_at_its_configured_period() -> None:
    settings = Settings.from_env(
        {
            "ELYSIUM_LIVENESS_INTERVAL_S": "7",
            "ELYSIUM_EXPIRY_INTERVAL_S": "11",
            "ELYSIUM_RECONCILE_INTERVAL_S": "13",
            "ELYSIUM_JANITOR_INTERVAL_S": "17",
        }
    )
    periods = {e["task"]: e["schedule"] for e in beat_schedule(settings).values()}
    assert periods == {
        "elysium.control.liveness_sweep": 7,
        "elysium.control.expire": 11,
        "elysium.control.reconcile_all": 13,
        "elysium.control.janitor": 17,
    }


def test_every_workflow_goes_to_the_control_queue_and_expires_if_nobody_takes_it() -> None:
    for entry in beat_schedule(Settings()).values():
        assert route_task(entry["task"], (), {}, {}) == {"queue": CONTROL_QUEUE}
        assert entry["options"]["expires"] >= entry["schedule"]

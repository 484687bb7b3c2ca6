"""Control-queue tasks: database work and orchestration that no single hub owns.

Beat sends the four sweeps on its schedule (``beat/schedule.py``): liveness, expiry,
reconcile and the job janitor. Each is safe to run twice, late, or beside another run. Each
task is a thin call into ``services``, which records jobs and audit records.
"""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task

from db import peer_liveness
from elysium.queue import (
    CONTROL_EXPIRE,
    CONTROL_JANITOR,
    CONTROL_LIVENESS_SWEEP,
    CONTROL_RECONCILE_ALL,
    CONTROL_RUN_JOB,
    HUB_RECONCILE,
    HUB_REPORT_LIVENESS,
)
from services import enrollment, hubs, jobs, peer_self, peers, tokens
from workers.runtime import runtime

ACTOR = "control"


@shared_task(name=CONTROL_LIVENESS_SWEEP, bind=True)
def liveness_sweep(self: Task) -> dict[str, Any]:
    """Mark silent hubs stale and old handshakes offline; ask every live hub for its dump."""
    rt = runtime(self.app)
    settings = rt.settings
    with rt.pool.connection() as conn:
        stale = hubs.mark_silent_hubs_stale(conn, ACTOR, settings.hub_stale_after_s)
        offline = peer_liveness.mark_offline_peers(conn, settings.online_after_s)
        live = hubs.live_hubs(conn)
    rt.queue.send_to_hubs(HUB_REPORT_LIVENESS, live, settings.liveness_interval_s)
    return {"hubs": live, "stale": stale, "offline": offline}


@shared_task(name=CONTROL_EXPIRE, bind=True)
def expire(self: Task) -> dict[str, Any]:
    """Expire tokens and peers past their time; each expired peer is removed from its hub."""
    rt = runtime(self.app)
    with rt.pool.connection() as conn:
        expired_tokens = tokens.expire_tokens(conn, ACTOR)
        expired_peers = peers.expire_peers(conn, rt.queue, ACTOR)
    return {"tokens": expired_tokens, "peers": expired_peers}


@shared_task(name=CONTROL_RECONCILE_ALL, bind=True)
def reconcile_all(self: Task) -> list[str]:
    """Ask every live hub to converge its interfaces (each hub audits what it changed)."""
    rt = runtime(self.app)
    with rt.pool.connection() as conn:
        live = hubs.live_hubs(conn)
    rt.queue.send_to_hubs(HUB_RECONCILE, live, rt.settings.reconcile_interval_s)
    return live


@shared_task(name=CONTROL_JANITOR, bind=True)
def janitor(self: Task) -> dict[str, int]:
    """Send again jobs whose message was lost; fail jobs that ran past their time limit."""
    rt = runtime(self.app)
    settings = rt.settings
    with rt.pool.connection() as conn:
        live = set(hubs.live_hubs(conn))
        requeued = jobs.requeue_stuck_jobs(
            conn, rt.queue, ACTOR, live, settings.job_requeue_after_s
        )
        timed_out = jobs.time_out_running_jobs(conn, ACTOR, settings.job_time_limit_s)
    return {"requeued": requeued, "timed_out": timed_out}


@shared_task(name=CONTROL_RUN_JOB, bind=True)
def run_job(self: Task, job_id: str) -> str | None:
    """The control side's part of a job: sign an enrollment's certificate, hand it to its hub;
    or sign a peer's renewed certificate, which ends the job.

    Returns the queue the job moved to (None when it had already moved on or failed).
    """
    rt = runtime(self.app)
    with rt.pool.connection() as conn:
        days = rt.settings.peer_cert_days
        if peer_self.sign_renewal(conn, job_id, rt.load_ca, days, ACTOR):
            return None  # a certificate renewal ends here: no hub has anything to do
        moved = enrollment.sign_enrollment(
            conn, rt.queue, job_id, rt.load_ca, rt.settings.peer_cert_days, ACTOR
        )
    return None if moved is None else str(moved["queue"])

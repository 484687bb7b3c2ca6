"""Hub-queue tasks: each runs on its hub's worker and calls the HubWorker."""

from __future__ import annotations

import psycopg
from celery import Task, shared_task

from db import jobs as jobs_db
from elysium.errors import ElysiumError
from elysium.queue import HUB_RECONCILE, HUB_REPORT_LIVENESS, HUB_RUN_JOB
from workers.hub import HubWorker
from workers.runtime import runtime


def _worker(task: Task, hub: str) -> HubWorker:
    worker = runtime(task.app).hub
    if hub != worker.hub:
        raise RuntimeError(f"message for hub {hub} reached the worker of {worker.hub}")
    return worker


@shared_task(name=HUB_RUN_JOB, bind=True, max_retries=8)
def run_job(self: Task, job_id: str, hub: str) -> None:
    """Converge what job ``job_id`` changed on this hub."""
    worker = _worker(self, hub)
    try:
        worker.run_job(job_id)
    except psycopg.OperationalError as exc:  # PostgreSQL restarting: try again shortly
        raise self.retry(countdown=min(30, 2**self.request.retries), exc=exc) from None
    except ElysiumError as exc:
        if not exc.retryable:
            with worker.pool.connection() as conn, conn.transaction():
                jobs_db.fail_job(conn, job_id, exc.code, exc.message, worker.actor)
            return
        with worker.pool.connection() as conn, conn.transaction():
            jobs_db.retry_job(conn, job_id, exc.code, exc.message)
        raise self.retry(countdown=min(30, 2**self.request.retries), exc=exc) from None


@shared_task(name=HUB_RECONCILE, bind=True)
def reconcile(self: Task, hub: str) -> dict[str, dict[str, object]]:
    """Converge every interface of this hub to the database; report what changed."""
    return _worker(self, hub).reconcile()


@shared_task(name=HUB_REPORT_LIVENESS, bind=True)
def report_liveness(self: Task, hub: str) -> int:
    """Dump every interface of this hub once and write the stats to PostgreSQL."""
    return _worker(self, hub).report_liveness()

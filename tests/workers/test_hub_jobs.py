"""A hub worker runs each job through the one table from job kind to handler."""

from __future__ import annotations

from dataclasses import replace

from psycopg import Connection
from psycopg.rows import DictRow
from psycopg_pool import ConnectionPool

from db import jobs as jobs_db
from db.hubs import create_hub
from elysium.queue import hub_queue
from elysium.settings import Settings
from elysium.states import JobKind, JobStatus
from workers.hub import HubWorker


def test_every_job_kind_with_hub_work_has_a_handler(
    settings: Settings, pool: ConnectionPool[Connection[DictRow]]
) -> None:
    worker = HubWorker(replace(settings, hub="hub-table", netns="ely-no-such-ns"), pool)

    assert set(worker.handlers) == set(JobKind) - {JobKind.RENEW_CERTIFICATE}


def test_a_job_of_a_kind_the_hub_does_not_know_fails_with_unknown_kind(
    settings: Settings, pool: ConnectionPool[Connection[DictRow]], conn: Connection[DictRow]
) -> None:
    create_hub(conn, "hub-table", "hub.example")
    worker = HubWorker(replace(settings, hub="hub-table", netns="ely-no-such-ns"), pool)
    with conn.transaction():
        job = jobs_db.create_job(
            conn,
            kind=JobKind.RENEW_CERTIFICATE,  # the control worker's, never a hub's
            queue=hub_queue("hub-table"),
            submitter="tests",
        )

    worker.run_job(str(job["id"]))

    ended = jobs_db.get_job(conn, job["id"])
    assert (ended["status"], ended["error_code"]) == (JobStatus.FAILED, "unknown_kind")

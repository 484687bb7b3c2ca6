"""Waiting for a job to end without polling: LISTEN for the ``job_done`` notification.

Migration 0002 makes PostgreSQL send ``pg_notify('job_done', <job id>)`` when a job's status
becomes succeeded or failed. The wait uses a connection of its own (a listening connection
must not go back to a pool).
"""

from __future__ import annotations

import time
import uuid

import psycopg
from psycopg.rows import dict_row

from db.jobs import FINAL, get_job
from db.rows import JobRow

CHANNEL = "job_done"


def wait_for_job_end(database_url: str, job_id: uuid.UUID | str, timeout_s: float) -> JobRow:
    """The job once it has ended, or as it is when ``timeout_s`` has passed."""
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(
        database_url, autocommit=True, row_factory=dict_row, connect_timeout=5
    ) as conn:
        conn.execute(f"LISTEN {CHANNEL}")
        job = get_job(conn, job_id)  # after LISTEN: an end between the two is not missed
        while job["status"] not in FINAL:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for note in conn.notifies(timeout=left):
                if note.payload == str(job["id"]):
                    break
            job = get_job(conn, job_id)
    return job

"""Waiting for a job to end without polling and without a connection of its own.

Migration 0002 makes PostgreSQL send ``pg_notify('job_done', <job id>)`` when a job's status
becomes succeeded or failed. The process's one listener (``db/notify.py``) wakes the waiters
of that job; a waiter holds a pooled connection only for its reads. In the API's gunicorn
worker a wait holds no thread either (:func:`park_until_job_ends`); elsewhere a thread waits
(:func:`wait_for_job_end`).
"""

from __future__ import annotations

import time
import uuid

from db.jobs import FINAL, get_job
from db.notify import Connect, Notifications, Parking, key
from db.rows import JobRow

CHANNEL = "job_done"


def job_key(job_id: uuid.UUID | str) -> str:
    """The key a job's end is sent under."""
    return key(CHANNEL, str(job_id))


def wait_for_job_end(
    connect: Connect, notifications: Notifications, job_id: uuid.UUID | str, timeout_s: float
) -> JobRow:
    """The job once it has ended, or as it is when ``timeout_s`` has passed."""
    deadline = time.monotonic() + timeout_s
    with notifications.subscribe([job_key(job_id)]) as ended:
        with connect() as conn:  # after subscribing: an end between the two is not missed
            job = get_job(conn, job_id)
        while job["status"] not in FINAL:
            left = deadline - time.monotonic()
            if left <= 0 or not ended.wait(left):
                break
            ended.clear()
            with connect() as conn:
                job = get_job(conn, job_id)
    return job


def park_until_job_ends(
    connect: Connect, notifications: Notifications, job: JobRow, wait_s: float, parking: Parking
) -> JobRow:
    """:func:`wait_for_job_end` for a request that waits without a thread: ``job`` (just
    read) when it has ended or the wait is over; else the request parks (this does not
    return) until the job's end is notified or its deadline comes, and is then served again
    from the start, reading the job anew."""
    deadline = parking.started + wait_s
    parking.unsubscribe()  # served again: from here on, this call decides anew
    if job["status"] in FINAL or time.monotonic() >= deadline:
        return job
    parking.subscribe(notifications, [job_key(job["id"])])
    try:
        with connect() as conn:  # after subscribing: an end between the two is not missed
            job = get_job(conn, job["id"])
    except BaseException:
        parking.unsubscribe()
        raise
    if job["status"] not in FINAL:
        parking.park(deadline, {})
    parking.unsubscribe()
    return job

"""Queries for durable jobs: the row exists before its Celery message; status moves forward only."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any, cast

from psycopg import Connection
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from db.rows import JobRow
from elysium.errors import NotFound
from elysium.states import FINAL_JOB, OPEN_JOB, JobKind, JobStatus, sql_list

JOB_COLUMNS = (
    "id, kind, status, queue, payload, result, error_code, error_message, attempts,"
    " idempotency_key, request_hash, submitter, hub_id, interface_id, peer_id, created_at,"
    " enqueued_at,"
    " started_at, finished_at, updated_at"
)
OPEN = sql_list(OPEN_JOB)
FINAL = sql_list(FINAL_JOB)


class IdempotentReplay(Exception):
    """The submitter already made a job with this idempotency key (carried in ``job``)."""

    def __init__(self, job: JobRow) -> None:
        super().__init__(str(job["id"]))
        self.job = job


def find_by_idempotency_key(
    conn: Connection[DictRow], submitter: str, key: str | None
) -> JobRow | None:
    if key is None:
        return None
    return cast(
        JobRow | None,
        conn.execute(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE submitter = %s AND idempotency_key = %s",
            (submitter, key),
        ).fetchone(),
    )


def create_job(
    conn: Connection[DictRow],
    *,
    kind: JobKind,
    queue: str,
    submitter: str,
    payload: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
    hub_id: int | None = None,
    interface_id: int | None = None,
    peer_id: int | None = None,
    new_peer: bool = False,
    target: str | None = None,
) -> JobRow:
    """Insert a queued job and its ``accepted`` audit record, in one statement of the
    caller's transaction.

    ``new_peer``: the job is about a peer not written yet; it draws the peer's id (the
    caller writes the peer under ``job["peer_id"]``). ``target`` names what the job acts on
    in the audit record (default: ``peer:<id>``). Raises IdempotentReplay when another
    transaction committed a job with the same key first; the caller rolls back its own
    writes and answers with that job.
    """
    row = conn.execute(
        "WITH j AS (INSERT INTO jobs (id, kind, queue, submitter, payload, idempotency_key,"
        " request_hash, hub_id, interface_id, peer_id, enqueued_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s,"
        "  CASE WHEN %s THEN nextval(pg_get_serial_sequence('peers', 'id')) ELSE %s END, now())"
        f" ON CONFLICT (submitter, idempotency_key) DO NOTHING RETURNING {JOB_COLUMNS}),"
        " a AS (INSERT INTO audit (actor, action, target, outcome, detail)"
        "  SELECT submitter, kind, coalesce(%s, 'peer:' || peer_id), 'accepted',"
        "  jsonb_build_object('job_id', id) FROM j)"
        " SELECT * FROM j",
        (
            uuid.uuid4(),
            kind,
            queue,
            submitter,
            Jsonb(payload or {}),
            idempotency_key,
            request_hash,
            hub_id,
            interface_id,
            new_peer,
            peer_id,
            target,
        ),
    ).fetchone()
    if row is None:
        existing = find_by_idempotency_key(conn, submitter, idempotency_key)
        assert existing is not None
        raise IdempotentReplay(existing)
    return cast(JobRow, row)


def get_job(conn: Connection[DictRow], job_id: uuid.UUID | str) -> JobRow:
    row = conn.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = %s", (str(job_id),)).fetchone()
    if row is None:
        raise NotFound(f"job {job_id} does not exist", code="job_not_found")
    return cast(JobRow, row)


def mark_enqueued(conn: Connection[DictRow], job_id: uuid.UUID | str) -> None:
    conn.execute("UPDATE jobs SET enqueued_at = now() WHERE id = %s", (str(job_id),))


def hand_on(
    conn: Connection[DictRow], job_id: uuid.UUID | str, queue: str, payload: dict[str, Any]
) -> JobRow | None:
    """Move a queued job to another queue with more payload; None if it is no longer queued."""
    return cast(
        JobRow | None,
        conn.execute(
            f"UPDATE jobs SET queue = %s, payload = payload || %s, enqueued_at = now(),"
            f" updated_at = now() WHERE id = %s AND status = '{JobStatus.QUEUED}'"
            f" RETURNING {JOB_COLUMNS}",
            (queue, Jsonb(payload), str(job_id)),
        ).fetchone(),
    )


def start_job(conn: Connection[DictRow], job_id: uuid.UUID | str) -> JobRow | None:
    """Move an open job to running; None when it has already ended (a redelivered message)."""
    return cast(
        JobRow | None,
        conn.execute(
            f"UPDATE jobs SET status = '{JobStatus.RUNNING}',"
            f" started_at = coalesce(started_at, now()),"
            f" attempts = attempts + 1, updated_at = now() WHERE id = %s AND status = ANY(%s)"
            f" RETURNING {JOB_COLUMNS}",
            (str(job_id), list(OPEN)),
        ).fetchone(),
    )


def claim_interface_jobs(
    conn: Connection[DictRow],
    queue: str,
    interface_id: int,
    kinds: Iterable[JobKind],
    trigger_id: uuid.UUID | str,
    limit: int = 2000,
) -> list[JobRow]:
    """Take the job a message named plus every other open peer job of its interface (a burst).

    The named job is waited for when another transaction holds it (a submitter still stamping
    it); the others are skipped when locked, so two consumers never take one job.
    """
    return _claim(conn, queue, kinds, trigger_id, limit, interface_id)


def claim_queue_jobs(
    conn: Connection[DictRow],
    queue: str,
    kinds: Iterable[JobKind],
    trigger_id: uuid.UUID | str,
    limit: int = 2000,
) -> list[JobRow]:
    """Take the job a message named plus every other open job of ``kinds`` on ``queue``
    (e.g. a hub's link jobs, converged together), locking as ``claim_interface_jobs`` does."""
    return _claim(conn, queue, kinds, trigger_id, limit, None)


def _claim(
    conn: Connection[DictRow],
    queue: str,
    kinds: Iterable[JobKind],
    trigger_id: uuid.UUID | str,
    limit: int,
    interface_id: int | None,
) -> list[JobRow]:
    same = "interface_id = %s" if interface_id is not None else "interface_id IS NULL"
    params: list[Any] = [str(trigger_id), list(OPEN), queue]
    params += [interface_id] if interface_id is not None else []
    params += [sql_list(kinds), list(OPEN), limit]
    return cast(
        list[JobRow],
        conn.execute(
            f"WITH named AS (SELECT id FROM jobs WHERE id = %s AND status = ANY(%s) FOR UPDATE),"
            f" waiting AS (SELECT id FROM jobs WHERE queue = %s AND {same}"
            f"  AND kind = ANY(%s) AND status = ANY(%s) ORDER BY created_at LIMIT %s"
            f"  FOR UPDATE SKIP LOCKED)"
            f" UPDATE jobs SET status = '{JobStatus.RUNNING}',"
            f" started_at = coalesce(started_at, now()),"
            f" attempts = attempts + 1, updated_at = now()"
            f" WHERE id IN (SELECT id FROM named UNION SELECT id FROM waiting)"
            f" RETURNING {JOB_COLUMNS}",
            params,
        ).fetchall(),
    )


def open_jobs_on_queue(conn: Connection[DictRow], queue: str) -> list[JobRow]:
    return cast(
        list[JobRow],
        conn.execute(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE queue = %s AND status = ANY(%s)"
            " ORDER BY created_at",
            (queue, list(OPEN)),
        ).fetchall(),
    )


# Ending a job and auditing how it ended is one statement: no job ends unrecorded.
_END_AND_AUDIT = (
    "WITH ended AS ({update} RETURNING id, kind, hub_id, interface_id, peer_id, status,"
    " error_code), logged AS (INSERT INTO audit (actor, action, target, outcome, detail)"
    " SELECT %s, kind, CASE WHEN peer_id IS NOT NULL THEN 'peer:' || peer_id"
    "  WHEN interface_id IS NOT NULL THEN 'interface:' || interface_id ELSE 'job:' || id END,"
    "  status, jsonb_strip_nulls(jsonb_build_object('job_id', id, 'error_code', error_code))"
    " FROM ended RETURNING 1) SELECT id FROM ended"
)


def succeed_job(
    conn: Connection[DictRow],
    job_id: uuid.UUID | str,
    result: dict[str, Any] | None,
    actor: str = "worker",
) -> bool:
    """End an open job as succeeded with its result, and audit it; False if it had ended."""
    cur = conn.execute(
        _END_AND_AUDIT.format(
            update=f"UPDATE jobs SET status = '{JobStatus.SUCCEEDED}', result = %s,"
            " error_code = NULL,"
            " error_message = NULL, finished_at = now(), updated_at = now()"
            " WHERE id = %s AND status <> ALL(%s)"
        ),
        (Jsonb(result or {}), str(job_id), list(FINAL), actor),
    )
    return cur.rowcount == 1


def fail_job(
    conn: Connection[DictRow],
    job_id: uuid.UUID | str,
    code: str,
    message: str,
    actor: str = "worker",
) -> bool:
    """End an open job as failed with a code and message, and audit it."""
    cur = conn.execute(
        _END_AND_AUDIT.format(
            update=f"UPDATE jobs SET status = '{JobStatus.FAILED}', error_code = %s,"
            " error_message = %s,"
            " finished_at = now(), updated_at = now() WHERE id = %s AND status <> ALL(%s)"
        ),
        (code, message[:1000], str(job_id), list(FINAL), actor),
    )
    return cur.rowcount == 1


def retry_job(conn: Connection[DictRow], job_id: uuid.UUID | str, code: str, message: str) -> None:
    conn.execute(
        f"UPDATE jobs SET status = '{JobStatus.RETRYING}', error_code = %s, error_message = %s,"
        " updated_at = now() WHERE id = %s AND status <> ALL(%s)",
        (code, message[:1000], str(job_id), list(FINAL)),
    )


def stuck_queued_jobs(
    conn: Connection[DictRow], older_than_s: float, limit: int = 1000
) -> list[JobRow]:
    """Jobs still waiting long after their message was sent (or never sent)."""
    return cast(
        list[JobRow],
        conn.execute(
            f"SELECT {JOB_COLUMNS} FROM jobs"
            f" WHERE status IN ('{JobStatus.QUEUED}', '{JobStatus.RETRYING}')"
            f" AND coalesce(enqueued_at, created_at) < now() - make_interval(secs => %s)"
            f" ORDER BY created_at LIMIT %s",
            (older_than_s, limit),
        ).fetchall(),
    )


def time_out_running_jobs(conn: Connection[DictRow], limit_s: float) -> list[JobRow]:
    """Mark jobs running longer than their limit as failed (code ``timeout``)."""
    return cast(
        list[JobRow],
        conn.execute(
            f"UPDATE jobs SET status = '{JobStatus.FAILED}', error_code = 'timeout',"
            f" error_message = 'the job ran past its time limit', finished_at = now(),"
            f" updated_at = now() WHERE status = '{JobStatus.RUNNING}'"
            f" AND started_at < now() - make_interval(secs => %s) RETURNING {JOB_COLUMNS}",
            (limit_s,),
        ).fetchall(),
    )

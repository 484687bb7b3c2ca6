"""Submitting jobs: record the job and its audit record, commit, then send the message.

The job row exists before its Celery message. If sending fails (broker down) the job stays
``queued`` and the job janitor sends it again; the caller still gets its job id.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from psycopg import Connection
from psycopg.rows import DictRow

from db import audit
from db.jobs import IdempotentReplay, create_job, find_by_idempotency_key
from elysium.queue import JobQueue, hub_queue


@dataclass
class Record:
    """What a service wrote for a job, and what the job is about."""

    hub: str
    target: str
    hub_id: int | None = None
    interface_id: int | None = None
    peer_id: int | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    # Run last, just before the commit: where a hot row lock belongs (it is held until then).
    before_commit: Callable[[Connection[DictRow]], object] | None = None


@dataclass
class Submitted:
    job: dict[str, Any]
    replayed: bool = False  # an earlier job with the same idempotency key

    @property
    def body(self) -> dict[str, Any]:
        """The 202 answer: the job id and the ids of what it acts on."""
        out: dict[str, Any] = {"job_id": str(self.job["id"]), "status": self.job["status"]}
        for key in ("interface_id", "peer_id"):
            if self.job.get(key) is not None:
                out[key] = self.job[key]
        return out


def submit_hub_job(
    conn: Connection[DictRow],
    queue: JobQueue,
    *,
    kind: str,
    submitter: str,
    idempotency_key: str | None,
    write: Callable[[Connection[DictRow]], Record],
) -> Submitted:
    """Run ``write`` and record a job for the hub it names in one transaction, then enqueue.

    ``write`` validates and records the desired state; any ElysiumError it raises rolls
    everything back. A replayed idempotency key returns the first job and writes nothing.
    """
    existing = find_by_idempotency_key(conn, submitter, idempotency_key)
    if existing is not None:
        return Submitted(existing, replayed=True)
    try:
        with conn.transaction():
            rec = write(conn)
            job = create_job(
                conn,
                kind=kind,
                queue=hub_queue(rec.hub),
                submitter=submitter,
                payload=rec.payload,
                idempotency_key=idempotency_key,
                hub_id=rec.hub_id,
                interface_id=rec.interface_id,
                peer_id=rec.peer_id,
            )
            audit.record(conn, submitter, kind, rec.target, "accepted", {"job_id": str(job["id"])})
            if rec.before_commit is not None:
                rec.before_commit(conn)
    except IdempotentReplay as replay:
        return Submitted(replay.job, replayed=True)
    # Stamped enqueued_at on insert: if this send fails the janitor sends it later.
    queue.offer_hub_job(job["id"], rec.hub)
    return Submitted(job)

"""Submitting jobs: record the job and its audit record, commit, then send the message.

The job row exists before its Celery message. If sending fails (broker down) the job stays
``queued`` and the job janitor sends it again; the caller still gets its job id. A job's
``queue`` column says where it waits now: a hub's queue, or ``control`` while the control
side still has work to do for it (signing an enrollment's certificate).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from psycopg import Connection
from psycopg.pq import TransactionStatus
from psycopg.rows import DictRow

from db import audit
from db import jobs as jobs_db
from db.peers import NextAddressNotTaken
from db.rows import JobRow
from elysium.errors import ElysiumError
from elysium.queue import CONTROL_QUEUE, HUB_QUEUE_PREFIX, JobQueue, hub_queue
from elysium.states import JobKind
from services.mesh_jobs import followups


class IdempotencyKeyReused(ElysiumError):
    """The same Idempotency-Key came back with a different request (IETF draft: 422)."""

    status = 422
    code = "idempotency_key_reused"

    def __init__(self) -> None:
        super().__init__(
            "this Idempotency-Key was used with a different request",
            fields={"Idempotency-Key": "was used with a different request"},
        )


@dataclass
class Record:
    """What a service wrote for a job, and what the job is about."""

    hub: str
    target: str | None  # None: the new peer the job records (``peer:<its id>``)
    hub_id: int | None = None
    interface_id: int | None = None
    peer_id: int | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    # Run last, in order, just before the commit: where hot row locks belong (each is held
    # until the commit): the interface's address pool, an enrollment token's uses.
    last: list[Callable[[Connection[DictRow]], object]] = field(default_factory=list)
    # The control side must act first (e.g. sign a certificate); it then hands the job on.
    via_control: bool = False
    # The job draws the id of a peer that a ``last`` step writes (set once the job is in).
    new_peer: bool = False
    # Whether the hub is in the mesh (None: not known, looked up): other hubs may have to act.
    meshed: bool | None = None
    # The last write, sent with the COMMIT in one round trip, instead of ``last`` (its row
    # locks are then held only while the server runs it and commits). Only where no other hub
    # has to act (``meshed`` False). It raises NextAddressNotTaken (rolled back) when it
    # cannot be done that way; the transaction then runs again with ``last``.
    final: Callable[[Connection[DictRow]], object] | None = None


@dataclass
class Submitted:
    job: JobRow
    replayed: bool = False  # an earlier job with the same idempotency key

    @property
    def body(self) -> dict[str, Any]:
        """The 202 answer: the job id and the ids of what it acts on."""
        out: dict[str, Any] = {"job_id": str(self.job["id"]), "status": self.job["status"]}
        if self.job["interface_id"] is not None:
            out["interface_id"] = self.job["interface_id"]
        if self.job["peer_id"] is not None:
            out["peer_id"] = self.job["peer_id"]
        return out


def request_hash(kind: str, request: dict[str, Any]) -> str:
    """A stable fingerprint of what a caller asked for (secrets never stored in the clear)."""
    text = json.dumps({"kind": kind, **request}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _replay(job: JobRow, fingerprint: str | None) -> Submitted:
    stored = job["request_hash"]
    if fingerprint is not None and stored is not None and stored != fingerprint:
        raise IdempotencyKeyReused()
    return Submitted(job, replayed=True)


def record_hub_job(
    conn: Connection[DictRow],
    rec: Record,
    *,
    kind: JobKind,
    submitter: str,
    idempotency_key: str | None = None,
    fingerprint: str | None = None,
) -> JobRow:
    """Insert the job ``rec`` describes and its ``accepted`` audit record (caller's transaction)."""
    job = jobs_db.create_job(
        conn,
        kind=kind,
        queue=CONTROL_QUEUE if rec.via_control else hub_queue(rec.hub),
        submitter=submitter,
        payload=rec.payload,
        idempotency_key=idempotency_key,
        request_hash=fingerprint,
        hub_id=rec.hub_id,
        interface_id=rec.interface_id,
        peer_id=rec.peer_id,
        new_peer=rec.new_peer,
        target=rec.target,
    )
    rec.peer_id = job["peer_id"]
    return job


def send(queue: JobQueue, job: JobRow) -> bool:
    """Send a recorded job's message to where it waits now; False when the broker is down."""
    if job["queue"] == CONTROL_QUEUE:
        return queue.offer_control_job(job["id"])
    return queue.offer_hub_job(job["id"], job["queue"].removeprefix(HUB_QUEUE_PREFIX))


def submit_hub_job(
    conn: Connection[DictRow],
    queue: JobQueue,
    *,
    kind: JobKind,
    submitter: str,
    idempotency_key: str | None,
    write: Callable[[Connection[DictRow]], Record],
    request: dict[str, Any] | None = None,
    final_commit: bool = False,
) -> Submitted:
    """Run ``write`` and record a job for the hub it names in one transaction, then enqueue.

    ``write`` validates and records the desired state; any ElysiumError it raises rolls
    everything back. A replayed idempotency key returns the first job and writes nothing,
    unless ``request`` (what the caller asked for) differs from the first time: 422.
    ``final_commit``: try first with ``Record.final`` sent with the COMMIT (hot rows).
    """
    fingerprint = request_hash(kind, request) if idempotency_key and request is not None else None
    existing = jobs_db.find_by_idempotency_key(conn, submitter, idempotency_key)
    if existing is not None:
        return _replay(existing, fingerprint)

    def record(rec: Record) -> JobRow:
        return record_hub_job(
            conn,
            rec,
            kind=kind,
            submitter=submitter,
            idempotency_key=idempotency_key,
            fingerprint=fingerprint,
        )

    try:
        done = _with_final_commit(conn, write, record) if final_commit else None
        if done is None:
            with conn.transaction():
                rec = write(conn)
                job = record(rec)
                for step in rec.last:
                    step(conn)
                more = followups(conn, job, rec.hub, rec.meshed)  # other hubs that must act
        else:
            job, more = done
    except jobs_db.IdempotentReplay as replay:
        return _replay(replay.job, fingerprint)
    # Stamped enqueued_at on insert: if a send fails the janitor sends it later.
    send(queue, job)
    for other in more:
        send(queue, other)
    return Submitted(job)


def _with_final_commit(
    conn: Connection[DictRow],
    write: Callable[[Connection[DictRow]], Record],
    record: Callable[[Record], JobRow],
) -> tuple[JobRow, list[JobRow]] | None:
    """The transaction of ``submit_hub_job`` as an explicit ``BEGIN`` … ``COMMIT``, whose
    last write (``Record.final``) goes with the COMMIT; None when that could not be done
    (rolled back: run it again the usual way). Without a final write, the usual steps."""
    conn.execute("BEGIN")
    try:
        rec = write(conn)
        job = record(rec)
        if rec.final is None:
            for step in rec.last:
                step(conn)
        more = followups(conn, job, rec.hub, rec.meshed)
        if rec.final is None:
            conn.execute("COMMIT")
        else:
            rec.final(conn)  # and commits
        return job, more
    except NextAddressNotTaken:
        return None
    finally:
        if conn.info.transaction_status != TransactionStatus.IDLE:
            conn.execute("ROLLBACK")  # an error above: nothing is written


def requeue_stuck_jobs(
    conn: Connection[DictRow],
    queue: JobQueue,
    actor: str,
    live_hubs: Collection[str],
    older_than_s: float,
) -> int:
    """Send again jobs whose message was lost; each send is audited.

    Jobs of a stale hub are left queued: its worker finishes open jobs when it starts.
    """
    requeued = 0
    for job in jobs_db.stuck_queued_jobs(conn, older_than_s):
        hub = job["queue"].removeprefix(HUB_QUEUE_PREFIX)
        if job["queue"] != CONTROL_QUEUE and hub not in live_hubs:
            continue
        with conn.transaction():
            if send(queue, job):
                jobs_db.mark_enqueued(conn, job["id"])
                requeued += 1
                audit.record(
                    conn,
                    actor,
                    "job.requeue",
                    f"job:{job['id']}",
                    "sent",
                    {"kind": job["kind"], "status": job["status"], "queue": job["queue"]},
                )
    return requeued


def time_out_running_jobs(conn: Connection[DictRow], actor: str, limit_s: float) -> int:
    """Fail jobs running past their time limit (code ``timeout``), each audited."""
    with conn.transaction():
        timed_out = jobs_db.time_out_running_jobs(conn, limit_s)
        for job in timed_out:
            audit.record(
                conn,
                actor,
                "job.timeout",
                f"job:{job['id']}",
                "failed",
                {"kind": job["kind"], "limit_s": limit_s},
            )
    return len(timed_out)

"""Control-queue tasks: database work and orchestration that no single hub owns.

Beat sends the four sweeps on its schedule (``beat/schedule.py``): liveness, expiry,
reconcile and the job janitor. Each is safe to run twice, late, or beside another run.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from psycopg import Connection
from psycopg.rows import DictRow

from db import audit
from db import hubs as hubs_db
from db import jobs as jobs_db
from db import peers as peers_db
from db import tokens as tokens_db
from elysium.queue import (
    CONTROL_EXPIRE,
    CONTROL_JANITOR,
    CONTROL_LIVENESS_SWEEP,
    CONTROL_RECONCILE_ALL,
    CONTROL_RECORD_LIVENESS,
    HUB_QUEUE_PREFIX,
    HUB_RECONCILE,
    HUB_REPORT_LIVENESS,
    hub_queue,
)
from workers.celery_app import app
from workers.runtime import runtime

log = logging.getLogger(__name__)

ACTOR = "control"


def live_hubs(conn: Connection[DictRow]) -> list[str]:
    """Hubs whose worker has a recent heartbeat (a silent hub's queue is not fed)."""
    return [h["name"] for h in hubs_db.list_hubs(conn) if not h["stale"]]


def _send_to_hubs(task: str, hubs: Sequence[str], expires_s: float) -> None:
    # A run a hub did not pick up before the next period is dropped, so a slow hub never
    # works through a backlog of sweeps.
    for hub in hubs:
        app.send_task(task, kwargs={"hub": hub}, expires=max(5.0, expires_s))


@app.task(name=CONTROL_LIVENESS_SWEEP)
def liveness_sweep() -> dict[str, Any]:
    """Mark silent hubs stale and old handshakes offline; ask every live hub for its dump."""
    rt = runtime()
    settings = rt.settings
    with rt.pool.connection() as conn:
        with conn.transaction():
            stale = hubs_db.mark_stale_hubs(conn, settings.hub_stale_after_s)
            for name in stale:
                audit.record(
                    conn,
                    ACTOR,
                    "hub.stale",
                    f"hub:{name}",
                    "stale",
                    {"silent_for_s": settings.hub_stale_after_s},
                )
            offline = peers_db.mark_offline_peers(conn, settings.online_after_s)
        hubs = live_hubs(conn)
    _send_to_hubs(HUB_REPORT_LIVENESS, hubs, settings.liveness_interval_s)
    return {"hubs": hubs, "stale": stale, "offline": offline}


@app.task(name=CONTROL_RECORD_LIVENESS)
def record_liveness(
    hub: str,
    interface_id: int,
    keys: list[str],
    handshakes: list[float | None],
    rx: list[int],
    tx: list[int],
    endpoints: list[str | None],
) -> int:
    """Write one interface's dump (columns, handshakes as Unix times) in one statement."""
    rt = runtime()
    when = [None if t is None else datetime.fromtimestamp(t, UTC) for t in handshakes]
    with rt.pool.connection() as conn:
        return peers_db.record_liveness(
            conn, interface_id, keys, when, rx, tx, endpoints, rt.settings.online_after_s
        )


@app.task(name=CONTROL_EXPIRE)
def expire() -> dict[str, Any]:
    """Expire tokens and peers past their time; each expired peer is removed from its hub."""
    rt = runtime()
    with rt.pool.connection() as conn:
        with conn.transaction():
            tokens = tokens_db.expire_tokens(conn)
            if tokens["enrollment"] or tokens["api"]:
                audit.record(conn, ACTOR, "tokens.expire", None, "succeeded", tokens)
            sent: list[tuple[str, str]] = []
            for peer in peers_db.expire_due_peers(conn):
                job = jobs_db.create_job(
                    conn,
                    kind="expire_peer",
                    queue=hub_queue(peer["hub"]),
                    submitter=ACTOR,
                    payload={"public_key": peer["public_key"]},
                    hub_id=peer["hub_id"],
                    interface_id=peer["interface_id"],
                    peer_id=peer["id"],
                )
                audit.record(
                    conn,
                    ACTOR,
                    "expire_peer",
                    f"peer:{peer['id']}",
                    "accepted",
                    {"job_id": str(job["id"]), "hub": peer["hub"]},
                )
                sent.append((str(job["id"]), peer["hub"]))
        for job_id, hub in sent:
            rt.queue.offer_hub_job(job_id, hub)  # stamped enqueued_at on insert
    return {"tokens": tokens, "peers": len(sent)}


@app.task(name=CONTROL_RECONCILE_ALL)
def reconcile_all() -> list[str]:
    """Ask every live hub to converge its interfaces (each hub audits what it changed)."""
    rt = runtime()
    with rt.pool.connection() as conn:
        hubs = live_hubs(conn)
    _send_to_hubs(HUB_RECONCILE, hubs, rt.settings.reconcile_interval_s)
    return hubs


@app.task(name=CONTROL_JANITOR)
def janitor() -> dict[str, int]:
    """Send again jobs whose message was lost; fail jobs that ran past their time limit.

    Jobs of a stale hub are left queued: its worker finishes open jobs when it starts.
    """
    rt = runtime()
    settings = rt.settings
    requeued = 0
    with rt.pool.connection() as conn:
        hubs = set(live_hubs(conn))
        for job in jobs_db.stuck_queued_jobs(conn, settings.job_requeue_after_s):
            hub = job["queue"].removeprefix(HUB_QUEUE_PREFIX)
            if not job["queue"].startswith(HUB_QUEUE_PREFIX) or hub not in hubs:
                continue
            with conn.transaction():
                if rt.queue.offer_hub_job(job["id"], hub):
                    jobs_db.mark_enqueued(conn, job["id"])
                    requeued += 1
                    audit.record(
                        conn,
                        ACTOR,
                        "job.requeue",
                        f"job:{job['id']}",
                        "sent",
                        {"kind": job["kind"], "status": job["status"], "hub": hub},
                    )
        with conn.transaction():
            timed_out = jobs_db.time_out_running_jobs(conn, settings.job_time_limit_s)
            for job in timed_out:
                audit.record(
                    conn,
                    ACTOR,
                    "job.timeout",
                    f"job:{job['id']}",
                    "failed",
                    {"kind": job["kind"], "limit_s": settings.job_time_limit_s},
                )
    return {"requeued": requeued, "timed_out": len(timed_out)}

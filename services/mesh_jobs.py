"""Link jobs: the messages that keep the mesh right, sent only to the hubs that must act.

A ``mesh_link`` job on hub X about hub Y tells X's worker to program its link to Y again
from the database (Y's key, endpoint and the networks behind Y), and to reload its
firewall (tags in X's policy may name Y's peers). It is idempotent like every hub job.

Which hubs must act when something changes on hub Y:
- Y joins, leaves or changes its mesh settings: Y about each hub it is (or was) linked to,
  and each of those about Y (``mesh.py``).
- An interface of Y is created, deleted, or changes its pushed routes: every hub linked to Y
  (the networks behind Y moved; their peers' configs move too).
- A peer of Y joins, leaves or changes: the linked hubs that route its subnets (when it has
  or had any), and those whose policies name one of its tags (their sets name its address).
  Any other peer change stays on Y's queue alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from psycopg import Connection
from psycopg.rows import DictRow

from db import jobs as jobs_db
from db import mesh as mesh_db
from db.peers import get_peer
from db.rows import JobRow
from elysium.queue import hub_queue
from elysium.states import MESH_INTERFACE_KINDS, MESH_PEER_KINDS, JobKind


def record_link_jobs(
    conn: Connection[DictRow],
    pairs: Iterable[tuple[dict[str, Any], dict[str, Any]]],
    submitter: str,
    reason: str,
) -> list[JobRow]:
    """One ``mesh_link`` job per ``(hub, other hub)`` pair, on the first hub's queue."""
    jobs = []
    for hub, other in pairs:
        jobs.append(
            jobs_db.create_job(
                conn,
                kind=JobKind.MESH_LINK,
                queue=hub_queue(hub["name"]),
                submitter=submitter,
                payload={"peer_hub": other["name"], "peer_hub_id": other["id"], "reason": reason},
                hub_id=hub["id"],
                target=f"hub:{hub['name']}",
            )
        )
    return jobs


def followups(
    conn: Connection[DictRow], job: JobRow, hub: str, meshed: bool | None = None
) -> list[JobRow]:
    """The link jobs that a job on ``hub`` needs on other hubs (caller's transaction; none
    for a hub outside the mesh: ``meshed`` False, as read with the job's interface, skips
    the lookup)."""
    kind = job["kind"]
    if meshed is False or (kind not in MESH_INTERFACE_KINDS and kind not in MESH_PEER_KINDS):
        return []
    if kind == JobKind.UPDATE_PEER and not {"tags", "subnets", "enabled"} & job["payload"].keys():
        return []
    if kind == JobKind.UPDATE_INTERFACE and "routes" not in job["payload"]:
        return []  # exit or NAT alone: nothing behind the hub moved
    me, linked = mesh_db.mesh_of(conn, hub)
    if me is None or not linked:
        return []
    if kind in MESH_INTERFACE_KINDS:
        targets = linked
        routes_moved = True
    else:
        assert job["peer_id"] is not None
        peer = get_peer(conn, job["peer_id"])
        was = job["payload"].get("was", {})
        tags = {*peer["tags"], *was.get("tags", [])}
        routes_moved = bool(peer["subnets"] or was.get("subnets"))
        ids = [h["id"] for h in linked]
        wanted = set(ids) if routes_moved else mesh_db.hubs_using_tags(conn, ids, sorted(tags))
        targets = [h for h in linked if h["id"] in wanted]
    if not targets:
        return []
    if routes_moved:
        mesh_db.notify_configs(conn, [h["id"] for h in targets])
    return record_link_jobs(conn, [(h, me) for h in targets], job["submitter"], kind)

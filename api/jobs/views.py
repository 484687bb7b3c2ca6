"""``GET /v1/jobs/{id}?wait=N``: a job, seen by its submitter (and admins), waited on if asked."""

from __future__ import annotations

import uuid
from typing import Any

from api import state
from api.auth import Caller, CertificateReplaced, caller, require_any
from api.jobs.schemas import JobSchema, JobWaitArgs
from api.schemas import Blueprint
from db.job_notify import park_until_job_ends, wait_for_job_end
from db.jobs import FINAL, get_job
from db.rows import JobRow
from elysium.errors import NotFound
from elysium.states import JobKind, JobStatus

blp = Blueprint("jobs", __name__, url_prefix="/v1/jobs", description="Jobs")


def visible(job: JobRow, who: Caller) -> bool:
    """Submitters see their jobs, admins every job, a peer the jobs about itself."""
    return (
        job["submitter"] == who.actor
        or who.allows("admin")
        or (who.peer_id is not None and job["peer_id"] == who.peer_id)
    )


def job_view(job: JobRow) -> dict[str, Any]:
    error = (
        {"code": job["error_code"], "message": job["error_message"]}
        if job["error_code"] and job["status"] == JobStatus.FAILED
        else None
    )
    return {**job, "id": str(job["id"]), "error": error}


@blp.route("/<string:job_id>", methods=["GET"])
@require_any
@blp.arguments(JobWaitArgs, location="query")
@blp.response(200, JobSchema)
@blp.doc(security=[{"bearer": []}, {}])
def job(args: dict[str, Any], job_id: str) -> dict[str, Any]:
    """A job; with ``wait=N`` the answer comes when it ends or after N seconds (capped by the
    server's ``job_wait_max_s``). Others' jobs are a 404."""
    try:
        jid = uuid.UUID(job_id)
    except ValueError:
        raise NotFound(f"job {job_id} does not exist", code="job_not_found") from None
    with state.connection() as conn:
        found = get_job(conn, jid)
    who = caller()
    if not visible(found, who):
        raise NotFound(f"job {job_id} does not exist", code="job_not_found")
    if who.certificate_replaced and found["kind"] != JobKind.RENEW_CERTIFICATE:
        # A replaced certificate fetches the renewal that replaced it, and nothing else.
        assert who.peer_id is not None
        raise CertificateReplaced(who.peer_id)
    wait = min(args["wait"], state.settings().job_wait_max_s)
    if wait > 0 and found["status"] not in FINAL:
        parking = state.parking()  # the API's gunicorn worker: the wait holds no thread
        if parking is not None:
            found = park_until_job_ends(
                state.connection, state.notifications(), found, wait, parking
            )
        else:
            found = wait_for_job_end(state.connection, state.notifications(), jid, wait)
    return job_view(found)

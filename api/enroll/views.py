"""``POST /v1/enroll``: a peer joins with an enrollment token (no API token)."""

from __future__ import annotations

from typing import Any

from api import state
from api.auth import enrollment_actor
from api.enroll.schemas import EnrollSchema
from api.jobs.schemas import JobAcceptedSchema
from api.schemas import IDEMPOTENCY_PARAM, Blueprint, idempotency_key
from services.enrollment import enroll_peer

blp = Blueprint("enroll", __name__, url_prefix="/v1/enroll", description="Enrollment")


@blp.route("", methods=["POST"])
@blp.arguments(EnrollSchema)
@blp.response(202, JobAcceptedSchema)
@blp.doc(security=[], parameters=[IDEMPOTENCY_PARAM])
def enroll(body: dict[str, Any]) -> dict[str, Any]:
    """Redeem an enrollment token: the peer gets an address and, with a CSR, a certificate.

    Follow the job with ``GET /v1/jobs/{id}`` using the enrollment token as bearer.
    """
    with state.connection() as conn:
        sub = enroll_peer(
            conn,
            state.queue(),
            submitter=enrollment_actor(body["token"]),
            idempotency_key=idempotency_key(),
            **body,
        )
    return sub.body

"""``GET /v1/audit``: the audit trail (reader)."""

from __future__ import annotations

from typing import Any

from api import state
from api.audit.schemas import AuditArgs, AuditPageSchema
from api.auth import require_scope
from api.schemas import Blueprint, after_id, page
from db.audit import list_audit

blp = Blueprint("audit", __name__, url_prefix="/v1/audit", description="Audit trail")


@blp.route("", methods=["GET"])
@require_scope("reader")
@blp.arguments(AuditArgs, location="query")
@blp.response(200, AuditPageSchema)
def audit(args: dict[str, Any]) -> dict[str, Any]:
    """Audit records in order, at or after ``since``, a page at a time."""
    with state.connection() as conn:
        rows = list_audit(
            conn, since=args["since"], limit=args["limit"], cursor=after_id(args) or None
        )
    return page(rows, args["limit"])

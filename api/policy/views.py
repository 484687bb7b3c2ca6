"""``/v1/interfaces/{id}/policy``: who may talk to whom through the interface's hub."""

from __future__ import annotations

from typing import Any

from api import state
from api.auth import caller, require_scope
from api.jobs.schemas import JobAcceptedSchema
from api.policy.schemas import PolicyCheckArgs, PolicyDecisionSchema, PolicySchema
from api.schemas import IDEMPOTENCY_PARAM, Blueprint, idempotency_key
from db.interfaces import get_interface
from services import policy as services

blp = Blueprint(
    "policy", __name__, url_prefix="/v1/interfaces", description="Access policy of an interface"
)


@blp.route("/<id:interface_id>/policy", methods=["GET"])
@require_scope("reader")
@blp.response(200, PolicySchema)
def policy(interface_id: int) -> dict[str, Any]:
    """The interface's rules in order and its default action."""
    with state.connection() as conn:
        return get_interface(conn, interface_id)["policy"]


@blp.route("/<id:interface_id>/policy", methods=["PUT"])
@require_scope("admin")
@blp.arguments(PolicySchema)
@blp.response(202, JobAcceptedSchema)
@blp.doc(parameters=[IDEMPOTENCY_PARAM])
def set_policy(body: dict[str, Any], interface_id: int) -> dict[str, Any]:
    """Replace the policy: its hub loads it in one nftables transaction (or keeps the old)."""
    with state.connection() as conn:
        sub = services.set_policy(
            conn, state.queue(), caller().actor, interface_id, body, idempotency_key()
        )
    return sub.body


@blp.route("/<id:interface_id>/policy/check", methods=["GET"])
@require_scope("reader")
@blp.arguments(PolicyCheckArgs, location="query")
@blp.response(200, PolicyDecisionSchema)
def check(args: dict[str, Any], interface_id: int) -> dict[str, Any]:
    """Would the hub forward this? Allow or deny, and the rule that decides."""
    with state.connection() as conn:
        return services.check_policy(
            conn, interface_id, args["from"], args["to"], args["proto"], args["port"]
        )

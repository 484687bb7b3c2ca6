"""``/v1/hubs/{name}/interfaces``, ``/v1/interfaces/{id}`` and its enrollment tokens."""

from __future__ import annotations

from typing import Any

from api import state
from api.auth import caller, require_scope
from api.interfaces.schemas import (
    EnrollmentTokenCreatedSchema,
    EnrollmentTokenCreateSchema,
    EnrollmentTokenPageSchema,
    EnrollmentTokenSchema,
    InterfaceChangeSchema,
    InterfaceCreateSchema,
    InterfaceSchema,
)
from api.jobs.schemas import JobAcceptedSchema
from api.schemas import (
    HUB_NAME,
    IDEMPOTENCY_PARAM,
    Blueprint,
    PageArgs,
    after_id,
    idempotency_key,
    page,
)
from db.interfaces import get_interface
from db.rows import InterfaceRow
from elysium.errors import NotFound
from services import interfaces as services
from services import tokens as token_services

blp = Blueprint("interfaces", __name__, url_prefix="/v1", description="WireGuard interfaces")


@blp.route("/hubs/<string:hub>/interfaces", methods=["POST"])
@require_scope("admin")
@blp.arguments(InterfaceCreateSchema)
@blp.response(202, JobAcceptedSchema)
@blp.doc(parameters=[IDEMPOTENCY_PARAM])
def create_interface(body: dict[str, Any], hub: str) -> dict[str, Any]:
    """Record an interface on a hub; the hub creates it and reports its public key."""
    if not HUB_NAME.match(hub):
        raise NotFound(f"hub {hub!r} does not exist", code="hub_not_found")
    with state.connection() as conn:
        sub = services.create_interface(
            conn, state.queue(), caller().actor, hub, **body, idempotency_key=idempotency_key()
        )
    return sub.body


@blp.route("/interfaces/<id:interface_id>", methods=["GET"])
@require_scope("reader")
@blp.response(200, InterfaceSchema)
def interface(interface_id: int) -> InterfaceRow:
    """One interface, its status and (once built) the hub's public key."""
    with state.connection() as conn:
        return get_interface(conn, interface_id)


@blp.route("/interfaces/<id:interface_id>", methods=["PATCH"])
@require_scope("admin")
@blp.arguments(InterfaceChangeSchema)
@blp.response(202, JobAcceptedSchema)
@blp.doc(parameters=[IDEMPOTENCY_PARAM])
def change_interface(body: dict[str, Any], interface_id: int) -> dict[str, Any]:
    """Change the networks pushed to peers (``routes``), ``exit``, ``nat`` and ``direct``
    (peer-to-peer paths); the hub applies routes, NAT and policy, and peers' configs follow."""
    with state.connection() as conn:
        sub = services.change_interface(
            conn, state.queue(), caller().actor, interface_id, body, idempotency_key()
        )
    return sub.body


@blp.route("/interfaces/<id:interface_id>", methods=["DELETE"])
@require_scope("admin")
@blp.response(202, JobAcceptedSchema)
@blp.doc(parameters=[IDEMPOTENCY_PARAM])
def delete_interface(interface_id: int) -> dict[str, Any]:
    """Delete an interface: its hub removes the device, then its records go."""
    with state.connection() as conn:
        sub = services.delete_interface(
            conn, state.queue(), caller().actor, interface_id, idempotency_key=idempotency_key()
        )
    return sub.body


@blp.route("/interfaces/<id:interface_id>/rotate-key", methods=["POST"])
@require_scope("admin")
@blp.response(202, JobAcceptedSchema)
@blp.doc(parameters=[IDEMPOTENCY_PARAM])
def rotate_key(interface_id: int) -> dict[str, Any]:
    """Give the interface a new key: its hub makes it (the private key never leaves the hub),
    applies it and reports the public key; following peers switch to it."""
    with state.connection() as conn:
        sub = services.rotate_interface_key(
            conn, state.queue(), caller().actor, interface_id, idempotency_key=idempotency_key()
        )
    return sub.body


@blp.route("/interfaces/<id:interface_id>/enrollment-tokens", methods=["POST"])
@require_scope("operator")
@blp.arguments(EnrollmentTokenCreateSchema)
@blp.response(201, EnrollmentTokenCreatedSchema)
def create_enrollment_token(body: dict[str, Any], interface_id: int) -> dict[str, Any]:
    """A token that enrolls up to ``uses`` peers on this interface; shown only here."""
    with state.connection() as conn:
        row, text = token_services.issue_enrollment_token(
            conn, caller().actor, interface_id, **body
        )
    return {**row, "token": text}


@blp.route("/interfaces/<id:interface_id>/enrollment-tokens", methods=["GET"])
@require_scope("operator")
@blp.arguments(PageArgs, location="query")
@blp.response(200, EnrollmentTokenPageSchema)
def enrollment_tokens(args: dict[str, Any], interface_id: int) -> dict[str, Any]:
    """The interface's enrollment tokens, a page at a time: uses, grants, expiry and
    ``state``; never the token text (only its hash is kept)."""
    with state.connection() as conn:
        rows = token_services.enrollment_tokens(
            conn, interface_id, after_id=after_id(args), limit=args["limit"]
        )
    return page(rows, args["limit"])


@blp.route("/enrollment-tokens/<id:token_id>", methods=["DELETE"])
@require_scope("operator")
@blp.response(200, EnrollmentTokenSchema)
def revoke_enrollment_token(token_id: int) -> dict[str, Any]:
    """Revoke an enrollment token: it enrolls nobody from now on."""
    with state.connection() as conn:
        return token_services.revoke_enrollment_token(conn, caller().actor, token_id)

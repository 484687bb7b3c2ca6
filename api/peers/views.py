"""``/v1/interfaces/{id}/peers`` and ``/v1/peers``: add, list, read, change, remove peers."""

from __future__ import annotations

from typing import Any

from api import state
from api.auth import caller, require_scope
from api.jobs.schemas import JobAcceptedSchema
from api.peers.schemas import (
    PeerChangeSchema,
    PeerCreateSchema,
    PeerDetailSchema,
    PeerListArgs,
    PeerPageSchema,
)
from api.schemas import IDEMPOTENCY_PARAM, Blueprint, after_id, idempotency_key, page
from db.peer_candidates import paths_of
from db.peers import get_peer, list_peers
from elysium.errors import ValidationError
from services import peers as services

blp = Blueprint("peers", __name__, url_prefix="/v1", description="Peers")


@blp.route("/interfaces/<id:interface_id>/peers", methods=["POST"])
@require_scope("operator")
@blp.arguments(PeerCreateSchema)
@blp.response(202, JobAcceptedSchema)
@blp.doc(parameters=[IDEMPOTENCY_PARAM])
def add_peer(body: dict[str, Any], interface_id: int) -> dict[str, Any]:
    """Add a peer whose public key is known; the job's result holds its config."""
    with state.connection() as conn:
        sub = services.add_peer(
            conn,
            state.queue(),
            caller().actor,
            interface_id,
            **body,
            idempotency_key=idempotency_key(),
        )
    return sub.body


@blp.route("/peers", methods=["GET"])
@require_scope("reader")
@blp.arguments(PeerListArgs, location="query")
@blp.response(200, PeerPageSchema)
def peers(args: dict[str, Any]) -> dict[str, Any]:
    """Live peers by id, a page at a time (pass ``next_cursor`` back as ``cursor``)."""
    with state.connection() as conn:
        rows = list_peers(
            conn,
            interface_id=args["interface_id"],
            online=args["online"],
            after_id=after_id(args),
            limit=args["limit"],
        )
    return page(rows, args["limit"])


@blp.route("/peers/<id:peer_id>", methods=["GET"])
@require_scope("reader")
@blp.response(200, PeerDetailSchema)
def peer(peer_id: int) -> dict[str, Any]:
    """One peer, with what its hub last reported of it and, on a direct interface, its paths
    to other peers as its client reported them."""
    with state.connection() as conn:
        return {**get_peer(conn, peer_id), "paths": paths_of(conn, peer_id)}


@blp.route("/peers/<id:peer_id>", methods=["PATCH"])
@require_scope("operator")
@blp.arguments(PeerChangeSchema)
@blp.response(202, JobAcceptedSchema)
@blp.doc(parameters=[IDEMPOTENCY_PARAM])
def change_peer(body: dict[str, Any], peer_id: int) -> dict[str, Any]:
    """Enable or disable a peer, change its routed subnets or its expiry."""
    if not body:
        raise ValidationError("_schema", "nothing to change: give enabled, subnets or expires_at")
    with state.connection() as conn:
        sub = services.change_peer(
            conn, state.queue(), caller().actor, peer_id, body, idempotency_key=idempotency_key()
        )
    return sub.body


@blp.route("/peers/<id:peer_id>", methods=["DELETE"])
@require_scope("operator")
@blp.response(202, JobAcceptedSchema)
@blp.doc(parameters=[IDEMPOTENCY_PARAM])
def remove_peer(peer_id: int) -> dict[str, Any]:
    """Take a peer off its hub; its address is given back when the hub has removed it."""
    with state.connection() as conn:
        sub = services.remove_peer(
            conn, state.queue(), caller().actor, peer_id, idempotency_key=idempotency_key()
        )
    return sub.body

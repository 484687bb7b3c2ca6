"""``/v1/peer/*``: calls a peer makes about itself, authenticated by its client certificate."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, request

from api import state
from api.auth import caller, require_peer
from api.jobs.schemas import JobAcceptedSchema
from api.peer_self.schemas import (
    PeerCandidatesSchema,
    PeerCandidatesStoredSchema,
    PeerCertificateSchema,
    PeerConfigArgs,
    PeerConfigSchema,
    PeerKeySchema,
    PeerPathsSchema,
    PeerPathsStoredSchema,
)
from api.schemas import IDEMPOTENCY_PARAM, Blueprint, idempotency_key
from elysium.wgquick import render_wg_quick
from services.direct import report_candidates, report_paths
from services.peer_self import follow_config, renew_certificate
from services.peers import rotate_key

blp = Blueprint(
    "peer",
    __name__,
    url_prefix="/v1/peer",
    description="A peer's own config and key (client certificate)",
)

TEXT_DOC = {"responses": {"200": {"content": {"text/plain": {"schema": {"type": "string"}}}}}}


@blp.route("/config", methods=["GET"])
@require_peer
@blp.arguments(PeerConfigArgs, location="query")
@blp.response(200, PeerConfigSchema)
@blp.doc(security=[], **TEXT_DOC)
def config(args: dict[str, Any]) -> Any:
    """This peer's current config: JSON, or a wg-quick file with ``Accept: text/plain``.

    With ``version=V&wait=N`` the answer comes at once when the config's version is not V,
    else when it moves or after N seconds (capped by the server's ``config_wait_max_s``).
    """
    found = follow_config(
        state.connection,
        state.notifications(),
        caller().peer_id or 0,
        args["version"],
        min(args["wait"], state.settings().config_wait_max_s),
        args["delta"],
        state.config_views(),
        state.parking(),
    )
    if "base" in found:  # a delta: not a config, so not through the config's schema
        return jsonify(found)
    best = request.accept_mimetypes.best_match(["application/json", "text/plain"])
    if best == "text/plain":
        return Response(render_wg_quick(found, None), mimetype="text/plain")
    return found


@blp.route("/certificate", methods=["POST"])
@require_peer
@blp.arguments(PeerCertificateSchema)
@blp.response(202, JobAcceptedSchema)
@blp.doc(security=[], parameters=[IDEMPOTENCY_PARAM])
def post_certificate(body: dict[str, Any]) -> dict[str, Any]:
    """Renew this peer's client certificate from a fresh CSR; the control worker signs it and
    the job's result holds ``certificate`` (the API never holds the CA key)."""
    who = caller()
    with state.connection() as conn:
        sub = renew_certificate(
            conn,
            state.queue(),
            who.actor,
            who.peer_id or 0,
            body["csr"],
            idempotency_key=idempotency_key(),
        )
    return sub.body


@blp.route("/key", methods=["PUT"])
@require_peer
@blp.arguments(PeerKeySchema)
@blp.response(202, JobAcceptedSchema)
@blp.doc(security=[], parameters=[IDEMPOTENCY_PARAM])
def put_key(body: dict[str, Any]) -> dict[str, Any]:
    """Rotate this peer's public key; the hub swaps the old key for the new one at once."""
    who = caller()
    with state.connection() as conn:
        sub = rotate_key(
            conn,
            state.queue(),
            who.actor,
            who.peer_id or 0,
            body["public_key"],
            idempotency_key=idempotency_key(),
        )
    return sub.body


@blp.route("/candidates", methods=["PUT"])
@require_peer
@blp.arguments(PeerCandidatesSchema)
@blp.response(200, PeerCandidatesStoredSchema)
@blp.doc(security=[])
def put_candidates(body: dict[str, Any]) -> dict[str, Any]:
    """Report this peer's own addresses and WireGuard listen port: on a direct interface the
    peers it may talk with try them (after the endpoint the hub sees) for a direct path."""
    who = caller()
    with state.connection() as conn:
        return report_candidates(
            conn, who.actor, who.peer_id or 0, body["addresses"], body["listen_port"]
        )


@blp.route("/paths", methods=["PUT"])
@require_peer
@blp.arguments(PeerPathsSchema)
@blp.response(200, PeerPathsStoredSchema)
@blp.doc(security=[])
def put_paths(body: dict[str, Any]) -> dict[str, Any]:
    """Report this peer's paths to the peers its config lists (direct, trying, relayed; the
    endpoint in use; why relayed): ``GET /v1/peers/{id}`` and the metrics show them."""
    with state.connection() as conn:
        return {"paths": report_paths(conn, caller().peer_id or 0, body["paths"])}

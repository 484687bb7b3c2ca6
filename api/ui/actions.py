"""What the dashboard changes: every change is a POST with the session's CSRF token, checked
against the token's scope, and goes through the same service as the API call."""

from __future__ import annotations

import io
import json
from typing import Any

import marshmallow as ma
import qrcode
import qrcode.image.svg
from cryptography.hazmat.primitives.serialization import Encoding
from flask import redirect, request, url_for
from markupsafe import Markup
from werkzeug.wrappers import Response

from api import state
from api.errors import flatten
from api.interfaces.schemas import EnrollmentTokenCreateSchema
from api.policy.schemas import PolicySchema
from api.ui.blueprint import blp, page, requires, viewer
from db.interfaces import get_interface
from db.peers import get_peer
from elysium.errors import ElysiumError, NotFound, ValidationError
from services import peers as peer_services
from services import policy as policy_services
from services import tokens as token_services

# What each peer action does, and how its confirmation says it.
PEER_ACTIONS = {
    "disable": ("Disable", "The hub drops this peer's tunnel; it keeps its address."),
    "enable": ("Enable", "The hub takes this peer's tunnel back."),
    "delete": ("Delete", "The hub removes this peer for good; its address is released."),
}


def _peer_action(action: str) -> tuple[str, str]:
    if action not in PEER_ACTIONS:
        raise NotFound(f"no peer action {action!r}", code="not_found")
    return PEER_ACTIONS[action]


@blp.route("/peers/<id:peer_id>/<string:action>", methods=["GET"])
@requires("operator")
def confirm_peer_action(peer_id: int, action: str) -> Response:
    """The confirmation page of a peer action (works without JavaScript)."""
    label, effect = _peer_action(action)
    with state.connection() as conn:
        peer = get_peer(conn, peer_id)
    return page("confirm.html", peer=peer, action=action, label=label, effect=effect)


@blp.route("/peers/<id:peer_id>/<string:action>", methods=["POST"])
@requires("operator")
def peer_action(peer_id: int, action: str) -> Response:
    _peer_action(action)
    with state.connection() as conn:
        if action == "delete":
            sub = peer_services.remove_peer(conn, state.queue(), viewer().actor, peer_id)
        else:
            changes = {"enabled": action == "enable"}
            sub = peer_services.change_peer(conn, state.queue(), viewer().actor, peer_id, changes)
    return redirect(url_for("ui.peer", peer_id=peer_id, job=sub.body["job_id"]), 303)


def _token_form() -> dict[str, Any]:
    """The form's fields as the API's body (empty fields left out, lists split on commas)."""
    form = request.form
    body: dict[str, Any] = {}
    for field in ("name", "ttl_seconds", "uses"):
        if form.get(field, "").strip():
            body[field] = form[field].strip()
    for field in ("subnets", "tags"):
        items = [s.strip() for s in form.get(field, "").split(",") if s.strip()]
        if items:
            body[field] = items
    return body


@blp.route("/interfaces/<id:interface_id>/tokens", methods=["POST"])
@requires("operator")
def create_token(interface_id: int) -> Response:
    """A new enrollment token: shown once, with its enroll command and that command's QR."""
    raw = _token_form()
    with state.connection() as conn:
        iface = get_interface(conn, interface_id)
        try:
            body = EnrollmentTokenCreateSchema().load(raw)
            row, text = token_services.issue_enrollment_token(
                conn, viewer().actor, interface_id, **body
            )
        except (ma.ValidationError, ElysiumError) as exc:
            fields = flatten(exc.messages) if isinstance(exc, ma.ValidationError) else exc.fields
            rows = token_services.enrollment_tokens(conn, interface_id, limit=1000)
            return page("tokens.html", 400, iface=iface, tokens=rows, form=raw, errors=fields)
    command = enroll_command(request.host_url.rstrip("/"), text, row["name"])
    return page(
        "token_created.html", iface=iface, token=row, text=text, command=command, qr=qr_svg(command)
    )


def enroll_command(server: str, token_text: str, name: str | None) -> str:
    """The one line a new peer runs; ``ca.pem`` is the CA certificate from ``/ui/ca.pem``."""
    peer_name = name if name and name.replace("-", "").isalnum() else '"$(hostname)"'
    return (
        f"elysium-client enroll --server {server} --ca ca.pem"
        f" --token {token_text} --name {peer_name}"
    )


def qr_svg(text: str) -> Markup:
    """A QR code of ``text`` as inline SVG, drawn here (no script, no outside service)."""
    image = qrcode.make(text, image_factory=qrcode.image.svg.SvgPathImage, box_size=8)
    out = io.BytesIO()
    image.save(out)
    svg = out.getvalue().decode()
    return Markup(svg[svg.index("<svg") :])  # our own drawing of our own text: safe


@blp.route("/enrollment-tokens/<id:token_id>/revoke", methods=["POST"])
@requires("operator")
def revoke_token(token_id: int) -> Response:
    with state.connection() as conn:
        row = token_services.revoke_enrollment_token(conn, viewer().actor, token_id)
    return redirect(url_for("ui.tokens", interface_id=row["interface_id"]), 303)


@blp.route("/interfaces/<id:interface_id>/policy", methods=["POST"])
@requires("admin")
def save_policy(interface_id: int) -> Response:
    """Replace the policy with the JSON text of the form (as ``PUT .../policy``)."""
    text = request.form.get("policy", "")
    try:
        try:
            body = PolicySchema().load(json.loads(text))
        except json.JSONDecodeError as exc:
            raise ValidationError("policy", f"not JSON: {exc}") from None
        except ma.ValidationError as exc:
            raise ValidationError(
                "policy", "; ".join(f"{k}: {v}" for k, v in flatten(exc.messages).items())
            ) from None
        with state.connection() as conn:
            sub = policy_services.set_policy(
                conn, state.queue(), viewer().actor, interface_id, body
            )
    except ElysiumError as exc:
        with state.connection() as conn:
            iface = get_interface(conn, interface_id)
        error = exc.message + "".join(f"; {k}: {v}" for k, v in exc.fields.items())
        return page("policy.html", 400, iface=iface, text=text, error=error, job=None)
    return redirect(url_for("ui.policy", interface_id=interface_id, job=sub.body["job_id"]), 303)


@blp.route("/ca.pem", methods=["GET"])
def ca_pem() -> Response:
    """The Elysium CA certificate a new peer passes as ``--ca`` (public, like the CA itself)."""
    pem = state.state().ca_cert.public_bytes(Encoding.PEM)
    return Response(pem, mimetype="application/x-pem-file")

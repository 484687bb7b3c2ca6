"""``/v1/hubs``: declare hubs (admin), list them with their worker's heartbeat (reader)."""

from __future__ import annotations

from typing import Any

from api import state
from api.auth import caller, require_scope
from api.hubs.schemas import (
    HubCreateSchema,
    HubDetailSchema,
    HubListSchema,
    HubSchema,
    MeshAcceptedSchema,
    MeshJoinSchema,
    MeshSchema,
)
from api.schemas import HUB_NAME, Blueprint
from db.hubs import get_hub, list_hubs
from db.interfaces import list_hub_interfaces
from db.rows import HubRow
from elysium.errors import NotFound
from services.hubs import declare_hub
from services.mesh import join_mesh, leave_mesh, mesh_view

blp = Blueprint("hubs", __name__, url_prefix="/v1/hubs", description="Hubs")


@blp.route("", methods=["POST"])
@require_scope("admin")
@blp.arguments(HubCreateSchema)
@blp.response(201, HubSchema)
def create_hub(body: dict[str, Any]) -> HubRow:
    """Declare a hub; its worker connects to the queue ``hub.<name>``."""
    with state.connection() as conn:
        return declare_hub(conn, caller().actor, body["name"], body["endpoint"])


@blp.route("", methods=["GET"])
@require_scope("reader")
@blp.response(200, HubListSchema)
def hubs() -> dict[str, Any]:
    """Every hub, by name."""
    with state.connection() as conn:
        return {"items": list_hubs(conn)}


@blp.route("/<string:name>", methods=["GET"])
@require_scope("reader")
@blp.response(200, HubDetailSchema)
def hub(name: str) -> dict[str, Any]:
    """One hub with its worker's last heartbeat and its interfaces."""
    if not HUB_NAME.match(name):
        raise NotFound(f"hub {name!r} does not exist", code="hub_not_found")
    with state.connection() as conn:
        hub = get_hub(conn, name)
        return {**hub, "interfaces": list_hub_interfaces(conn, name), "mesh": mesh_view(conn, name)}


@blp.route("/<string:name>/mesh", methods=["GET"])
@require_scope("reader")
@blp.response(200, MeshSchema)
def mesh(name: str) -> dict[str, Any]:
    """The hub's mesh settings and links, each with its last handshake."""
    with state.connection() as conn:
        get_hub(conn, _known(name))
        return mesh_view(conn, name)


@blp.route("/<string:name>/mesh", methods=["PUT"])
@require_scope("admin")
@blp.arguments(MeshJoinSchema)
@blp.response(202, MeshAcceptedSchema)
def join(body: dict[str, Any], name: str) -> dict[str, Any]:
    """Join the hub to the mesh, or change its mesh settings: each end of every link that
    changes gets a link job (one round). Overlapping interface networks: 409."""
    with state.connection() as conn:
        return join_mesh(conn, state.queue(), caller().actor, _known(name), body)


@blp.route("/<string:name>/mesh", methods=["DELETE"])
@require_scope("admin")
@blp.response(202, MeshAcceptedSchema)
def leave(name: str) -> dict[str, Any]:
    """Take the hub out of the mesh: both ends of its links drop them."""
    with state.connection() as conn:
        return leave_mesh(conn, state.queue(), caller().actor, _known(name))


def _known(name: str) -> str:
    if not HUB_NAME.match(name):
        raise NotFound(f"hub {name!r} does not exist", code="hub_not_found")
    return name

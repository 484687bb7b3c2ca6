"""The dashboard's pages: what they show comes from the same queries as the API's GETs."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from flask import request
from werkzeug.wrappers import Response

from api import state
from api.ui.blueprint import blp, page, requires
from db.dashboard import find_audit, interface_counts, job_counts, recent_jobs, search_peers
from db.hubs import get_hub, list_hubs
from db.interfaces import get_interface, list_hub_interfaces
from db.peer_candidates import paths_of
from db.peer_config import peer_config
from db.peers import get_peer
from elysium.errors import ValidationError
from elysium.states import JobStatus
from elysium.wgquick import render_wg_quick
from services import tokens as token_services
from services.mesh import mesh_view

PAGE_SIZE = 50
REFRESH_S = 5


@blp.route("/", methods=["GET"])
def overview() -> Response:
    """Hubs and their heartbeat, interfaces with peers online/offline, jobs in flight."""
    with state.connection() as conn:
        hubs = list_hubs(conn)
        interfaces = interface_counts(conn)
        jobs = job_counts(conn)
    return page("overview.html", hubs=hubs, interfaces=interfaces, jobs=jobs)


@blp.route("/hubs/<string:name>", methods=["GET"])
def hub(name: str) -> Response:
    with state.connection() as conn:
        row = get_hub(conn, name)
        interfaces = list_hub_interfaces(conn, name)
        mesh = mesh_view(conn, name)
    return page("hub.html", hub=row, interfaces=interfaces, mesh=mesh)


def _peer_page(interface_id: int) -> dict[str, Any]:
    q = request.args.get("q", "").strip()[:64]
    after = _int_arg("after")
    with state.connection() as conn:
        iface = get_interface(conn, interface_id)
        peers = search_peers(conn, interface_id, q, after or 0, PAGE_SIZE)
    more = peers[-1]["id"] if len(peers) == PAGE_SIZE else None
    return {"iface": iface, "peers": peers, "q": q, "after": after, "next_after": more}


@blp.route("/interfaces/<id:interface_id>", methods=["GET"])
def interface(interface_id: int) -> Response:
    """The interface and a page of its peers (search by name prefix, pages by id)."""
    return page("interface.html", refresh_s=REFRESH_S, **_peer_page(interface_id))


@blp.route("/interfaces/<id:interface_id>/peer-rows", methods=["GET"])
def peer_rows(interface_id: int) -> Response:
    """Only the peer table's rows: what the interface page reloads every few seconds."""
    return page("peer_rows.html", **_peer_page(interface_id))


@blp.route("/peers/<id:peer_id>", methods=["GET"])
def peer(peer_id: int) -> Response:
    """A peer: its state, its config (no private key: that never leaves the peer), its audit."""
    with state.connection() as conn:
        row = get_peer(conn, peer_id)
        config = peer_config(conn, peer_id)
        iface = get_interface(conn, row["interface_id"])
        audit = find_audit(conn, target=f"peer:{peer_id}", limit=50)
        paths = paths_of(conn, peer_id) if iface["direct"] else []
    return page(
        "peer.html",
        peer=row,
        iface=iface,
        paths=paths,
        config=config,
        wg_quick=render_wg_quick(config, None, row["name"]),
        audit=audit,
        job=request.args.get("job"),
    )


@blp.route("/interfaces/<id:interface_id>/tokens", methods=["GET"])
@requires("operator")
def tokens(interface_id: int) -> Response:
    """The interface's enrollment tokens (never their text) and the form for a new one."""
    with state.connection() as conn:
        iface = get_interface(conn, interface_id)
        rows = token_services.enrollment_tokens(conn, interface_id, limit=1000)
    return page("tokens.html", iface=iface, tokens=rows, form={})


@blp.route("/interfaces/<id:interface_id>/policy", methods=["GET"])
def policy(interface_id: int) -> Response:
    with state.connection() as conn:
        iface = get_interface(conn, interface_id)
    text = json.dumps(iface["policy"], indent=2)
    return page("policy.html", iface=iface, text=text, error=None, job=request.args.get("job"))


@blp.route("/jobs", methods=["GET"])
def jobs() -> Response:
    """The newest jobs, their status and error codes; older pages by creation time."""
    status = request.args.get("status") or None
    if status is not None and status not in set(JobStatus):
        raise ValidationError("status", "must be a job status")
    before = _time_arg("before")
    with state.connection() as conn:
        rows = recent_jobs(conn, status, before, PAGE_SIZE)
    more = rows[-1]["created_at"].isoformat() if len(rows) == PAGE_SIZE else None
    return page("jobs.html", jobs=rows, status=status, statuses=list(JobStatus), next_before=more)


@blp.route("/audit", methods=["GET"])
def audit() -> Response:
    """Audit records newest first, filtered by actor, action and target (exact)."""
    filters = {
        k: (request.args.get(k) or "").strip()[:200] or None for k in ("actor", "action", "target")
    }
    with state.connection() as conn:
        rows = find_audit(conn, **filters, before_id=_int_arg("before"), limit=PAGE_SIZE)
    more = rows[-1]["id"] if len(rows) == PAGE_SIZE else None
    return page("audit.html", records=rows, filters=filters, next_before=more)


def _int_arg(name: str) -> int | None:
    value = request.args.get(name, "")
    if not value:
        return None
    if not value.isdigit() or len(value) > 18:
        raise ValidationError(name, "must be a positive integer")
    return int(value)


def _time_arg(name: str) -> datetime | None:
    value = request.args.get(name, "")
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError(name, "must be an ISO 8601 time") from None

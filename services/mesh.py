"""The hub mesh: a hub joins (or leaves) and its links are programmed by the workers of
both ends, one ``mesh_link`` job each, all recorded in one transaction (one round of jobs).

Mesh changes take one transaction-scoped advisory lock, so two hubs joining at once see
each other and their networks are checked against each other.
"""

from __future__ import annotations

from typing import Any

from psycopg import Connection
from psycopg.rows import DictRow

from db import audit
from db import mesh as mesh_db
from db.hubs import get_hub, list_hubs
from db.rows import InterfaceRow
from elysium.errors import Conflict, ValidationError
from elysium.mesh import (
    MESH_DEVICE,
    MeshMember,
    check_no_overlap,
    check_peers,
    links_of,
    parse_mesh_endpoint,
    split_endpoint,
)
from elysium.networks import IPNetwork
from elysium.queue import JobQueue
from services.jobs import send
from services.mesh_jobs import record_link_jobs

MESH_LOCK = 0x656C_6D65_7368  # "elmesh": serialises joins, leaves and their checks


def _lock(conn: Connection[DictRow]) -> None:
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (MESH_LOCK,))


def _networks(
    conn: Connection[DictRow], hubs: list[dict[str, Any]]
) -> dict[str, list[tuple[str, str]]]:
    """What each of ``hubs`` routes to its interfaces, by hub name (one query)."""
    nets = mesh_db.interface_networks(conn, [h["id"] for h in hubs])
    return {h["name"]: nets[h["id"]] for h in hubs}


def join_mesh(
    conn: Connection[DictRow], queue: JobQueue, actor: str, name: str, body: dict[str, Any]
) -> dict[str, Any]:
    """Put hub ``name`` in the mesh (or change its mesh settings): ``listen_port``,
    ``endpoint`` (default: the hub's endpoint host on that port), ``peers`` (default: every
    meshed hub). Link jobs go to this hub and to each hub it is or was linked to."""
    port = body["listen_port"]
    with conn.transaction():
        _lock(conn)
        hub = get_hub(conn, name)
        default_host, _ = split_endpoint(hub["endpoint"], port)
        raw = body.get("endpoint")
        if raw is None:
            raw = f"[{default_host}]" if ":" in default_host else default_host
        endpoint = parse_mesh_endpoint(raw, port)
        peers = body.get("peers")
        if peers is not None:
            peers = check_peers(name, peers, {h["name"] for h in list_hubs(conn)})
        rows = mesh_db.meshed_hubs(conn)
        others = [m for m in mesh_db.members(rows) if m.name != name]
        before = set(links_of(name, mesh_db.members(rows)))
        after = set(links_of(name, [*others, MeshMember(name, peers)]))
        by_name = {r["name"]: r for r in rows}
        taken = conn.execute(
            "SELECT name FROM interfaces WHERE hub_id = %s AND listen_port = %s",
            (hub["id"], port),
        ).fetchone()
        if taken is not None:
            raise Conflict(
                f"port {port} is the listen port of {taken['name']}",
                code="port_in_use",
                fields={"listen_port": f"used by interface {taken['name']}"},
            )
        nets = _networks(conn, [dict(hub), *(by_name[n] for n in sorted(after))])
        own = nets.pop(name)
        check_no_overlap(name, own, nets)
        mesh_db.set_mesh(conn, hub["id"], port, endpoint, peers)
        detail = {"listen_port": port, "endpoint": endpoint, "peers": peers}
        audit.record(conn, actor, "mesh.join", f"hub:{name}", "accepted", detail)
        me = {"id": hub["id"], "name": name}
        was = by_name.get(name)
        moved = was is None or (was["mesh_port"], was["mesh_endpoint"]) != (port, endpoint)
        pairs = _changed_links(me, before, after, by_name, moved)
        jobs = record_link_jobs(conn, pairs, actor, "mesh.join")
        touched = [by_name[n] for n in sorted(before ^ after)]
        if touched:  # what lies across the mesh moved for these hubs' peers
            mesh_db.notify_configs(conn, [hub["id"], *(o["id"] for o in touched)])
    for job in jobs:
        send(queue, job)
    return {**mesh_view(conn, name), "jobs": [_job_ref(j) for j in jobs]}


def leave_mesh(conn: Connection[DictRow], queue: JobQueue, actor: str, name: str) -> dict[str, Any]:
    """Take hub ``name`` out of the mesh: both ends of each of its links drop the link."""
    with conn.transaction():
        _lock(conn)
        hub = get_hub(conn, name)
        meshed, linked = mesh_db.mesh_of(conn, name)
        if meshed is None:
            raise Conflict(f"hub {name!r} is not in the mesh", code="not_meshed")
        mesh_db.clear_mesh(conn, hub["id"])
        audit.record(conn, actor, "mesh.leave", f"hub:{name}", "accepted", {})
        me = {"id": hub["id"], "name": name}
        pairs = [(me, o) for o in linked] + [(o, me) for o in linked]
        jobs = record_link_jobs(conn, pairs, actor, "mesh.leave")
        mesh_db.notify_configs(conn, [hub["id"], *(o["id"] for o in linked)])
    for job in jobs:
        send(queue, job)
    return {"hub": name, "meshed": False, "jobs": [_job_ref(j) for j in jobs]}


def _changed_links(
    me: dict[str, Any],
    before: set[str],
    after: set[str],
    hubs: dict[str, dict[str, Any]],
    moved: bool,
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The link jobs a join or a settings change needs: both ends of each link made or
    dropped; for a hub whose port or endpoint moved, the far end of each kept link (it
    dials the new endpoint) and one job here (the device listens on the new port)."""
    pairs = []
    for name in sorted(before ^ after):
        pairs += [(me, hubs[name]), (hubs[name], me)]
    kept = sorted(before & after)
    if moved and kept:
        if not pairs:  # no job here yet to converge the device
            pairs.append((me, hubs[kept[0]]))
        pairs += [(hubs[name], me) for name in kept]
    return pairs


def _job_ref(job: Any) -> dict[str, Any]:
    return {
        "job_id": str(job["id"]),
        "hub": job["queue"].removeprefix("hub."),
        "peer_hub": job["payload"]["peer_hub"],
    }


def mesh_view(conn: Connection[DictRow], name: str) -> dict[str, Any]:
    """A hub's mesh settings and each of its links with what its worker last saw."""
    me, linked = mesh_db.mesh_of(conn, name)
    if me is None:
        return {"hub": name, "meshed": False}
    seen = mesh_db.link_rows(conn, me["id"])
    links = []
    for other in linked:
        row = seen.get(other["id"], {})
        links.append(
            {
                "hub": other["name"],
                "endpoint": other["mesh_endpoint"],
                "public_key": other["mesh_public_key"],
                "stale": other["stale"],
                "last_handshake_at": row.get("last_handshake_at"),
                "rx_bytes": row.get("rx_bytes", 0),
                "tx_bytes": row.get("tx_bytes", 0),
                "error": (
                    {"code": row["error_code"], "message": row["error_message"]}
                    if row.get("error_code")
                    else None
                ),
            }
        )
    return {
        "hub": name,
        "meshed": True,
        "listen_port": me["mesh_port"],
        "endpoint": me["mesh_endpoint"],
        "peers": me["mesh_peers"],
        "public_key": me["mesh_public_key"],
        "joined_at": me["mesh_joined_at"],
        "links": links,
    }


def check_routes(conn: Connection[DictRow], iface: InterfaceRow, routes: list[str]) -> None:
    """Routes an interface of a meshed hub pushes: clear of what every linked hub routes
    (the mesh would carry the same network two ways)."""
    linked = mesh_db.linked_hubs(conn, iface["hub"])
    if not linked or not routes:
        return
    _lock(conn)
    mine = [(r, f"{iface['name']}'s route") for r in routes]
    check_no_overlap(iface["hub"], mine, _networks(conn, linked), field="routes")


def check_new_interface(
    conn: Connection[DictRow], hub: str, name: str, listen_port: int, networks: list[IPNetwork]
) -> None:
    """An interface on a meshed hub: not the mesh device's name or port, and its networks
    clear of every linked hub's."""
    if name == MESH_DEVICE:
        raise ValidationError("name", "is the name of the hub mesh device")
    me, linked = mesh_db.mesh_of(conn, hub)
    if me is None:
        return
    _lock(conn)
    if listen_port == me["mesh_port"]:
        raise Conflict(
            f"port {listen_port} is the hub's mesh port",
            code="port_in_use",
            fields={"listen_port": "is the hub's mesh port"},
        )
    mine = [(str(n), name) for n in networks]
    check_no_overlap(hub, mine, _networks(conn, linked), field="network")

"""``elysium hub list|show|add`` and ``elysium mesh show|set|rm`` over the API."""

from __future__ import annotations

from typing import Any

import click

from cli import output
from cli.interfaces import INTERFACE_COLUMNS
from cli.operator import Operator, operator_options

HUB_COLUMNS: list[output.Column] = [
    ("NAME", "name"),
    ("ENDPOINT", "endpoint"),
    ("HEARTBEAT", "last_heartbeat_at"),
    ("STALE", "stale"),
]
LINK_COLUMNS: list[output.Column] = [
    ("HUB", "hub"),
    ("ENDPOINT", "endpoint"),
    ("HANDSHAKE", "last_handshake_at"),
    ("RX", "rx_bytes"),
    ("TX", "tx_bytes"),
    ("STALE", "stale"),
    ("ERROR", lambda r: (r.get("error") or {}).get("message")),
]


@click.group()
def hub() -> None:
    """Hubs: the gateway hosts peers dial."""


@hub.command("list")
@operator_options()
def hub_list(op: Operator) -> None:
    """Every hub with its worker's last heartbeat."""
    op.show(op.api.get("/v1/hubs"), lambda a: output.table(a["items"], HUB_COLUMNS, "no hubs"))


@hub.command("show")
@click.argument("name")
@operator_options()
def hub_show(op: Operator, name: str) -> None:
    """One hub, its interfaces and its mesh links."""
    op.show(op.api.get(f"/v1/hubs/{name}"), _render_hub)


def _render_hub(h: dict[str, Any]) -> None:
    output.record(h, ["name", "endpoint", "created_at", "last_heartbeat_at", "stale", "worker"])
    output.line("")
    output.table(h.get("interfaces") or [], INTERFACE_COLUMNS, "no interfaces")
    mesh = h.get("mesh") or {}
    if mesh.get("meshed"):
        output.line("")
        output.table(mesh.get("links") or [], LINK_COLUMNS, "no mesh links")


@hub.command("add")
@click.argument("name")
@click.option("--endpoint", required=True, metavar="HOST[:PORT]", help="What peers dial.")
@operator_options()
def hub_add(op: Operator, name: str, endpoint: str) -> None:
    """Declare a hub (admin); then run its worker: elysium hub-worker --hub NAME."""
    made = op.api.post("/v1/hubs", {"name": name, "endpoint": endpoint})
    op.show(made, lambda h: output.line(f"hub {h['name']} declared (id {h['id']})"))


@click.group()
def mesh() -> None:
    """Hub-to-hub links (the mesh)."""


@mesh.command("show")
@click.argument("hub_name", metavar="HUB")
@operator_options()
def mesh_show(op: Operator, hub_name: str) -> None:
    """A hub's mesh settings and its links, each with its last handshake."""
    op.show(op.api.get(f"/v1/hubs/{hub_name}/mesh"), _render_mesh)


def _render_mesh(m: dict[str, Any]) -> None:
    output.record(m, ["hub", "meshed", "listen_port", "endpoint", "peers", "public_key"])
    if m.get("meshed"):
        output.line("")
        output.table(m.get("links") or [], LINK_COLUMNS, "no links yet")


@mesh.command("set")
@click.argument("hub_name", metavar="HUB")
@click.option("--listen-port", required=True, type=click.IntRange(1, 65535), help="UDP port.")
@click.option("--endpoint", metavar="HOST[:PORT]", help="What other hubs dial.")
@click.option(
    "--peer", "peers", multiple=True, metavar="HUB", help="Link only to these hubs (repeat)."
)
@operator_options(changes=True)
def mesh_set(
    op: Operator, hub_name: str, listen_port: int, endpoint: str | None, peers: tuple[str, ...]
) -> None:
    """Join a hub to the mesh, or change its mesh settings (admin)."""
    body: dict[str, Any] = {"listen_port": listen_port}
    if endpoint:
        body["endpoint"] = endpoint
    if peers:
        body["peers"] = list(peers)
    op.follow(op.api.put(f"/v1/hubs/{hub_name}/mesh", body), f"mesh of {hub_name}")


@mesh.command("rm")
@click.argument("hub_name", metavar="HUB")
@operator_options(changes=True)
def mesh_rm(op: Operator, hub_name: str) -> None:
    """Take a hub out of the mesh: both ends of its links drop them (admin)."""
    op.follow(op.api.delete(f"/v1/hubs/{hub_name}/mesh"), f"mesh of {hub_name}")

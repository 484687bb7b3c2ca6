"""``elysium interface list|show|add|set|rm|rotate-key`` over the API."""

from __future__ import annotations

from typing import Any

import click

from cli import output
from cli.operator import Operator, operator_options

INTERFACE_COLUMNS: list[output.Column] = [
    ("ID", "id"),
    ("HUB", "hub"),
    ("NAME", "name"),
    ("NETWORK", lambda r: [n for n in (r.get("network"), r.get("network6")) if n]),
    ("PORT", "listen_port"),
    ("STATUS", "status"),
    ("ROUTES", "routes"),
    ("EXIT", "exit"),
    ("DIRECT", "direct"),
]
INTERFACE_FIELDS = [
    "id",
    "hub",
    "name",
    "status",
    "network",
    "network6",
    "listen_port",
    "mtu",
    "dns",
    "keepalive",
    "public_key",
    "routes",
    "exit",
    "nat",
    "direct",
    "created_at",
    "updated_at",
]


@click.group()
def interface() -> None:
    """WireGuard interfaces on hubs."""


@interface.command("list")
@click.option("--hub", "hub_name", metavar="HUB", help="Only this hub's interfaces.")
@operator_options()
def interface_list(op: Operator, hub_name: str | None) -> None:
    """Interfaces of every hub (or of one)."""
    names = [hub_name] if hub_name else [h["name"] for h in op.api.get("/v1/hubs")["items"]]
    items = [i for name in names for i in op.api.get(f"/v1/hubs/{name}").get("interfaces", [])]
    op.show(
        {"items": items}, lambda a: output.table(a["items"], INTERFACE_COLUMNS, "no interfaces")
    )


@interface.command("show")
@click.argument("interface_id", type=int, metavar="ID")
@operator_options()
def interface_show(op: Operator, interface_id: int) -> None:
    """One interface: its status, networks and (once built) the hub's public key."""
    op.show(
        op.api.get(f"/v1/interfaces/{interface_id}"), lambda i: output.record(i, INTERFACE_FIELDS)
    )


@interface.command("add")
@click.argument("hub_name", metavar="HUB")
@click.argument("name")
@click.option("--network", required=True, metavar="CIDR", help="IPv4 network, e.g. 10.8.0.0/24.")
@click.option("--network6", metavar="CIDR", help="IPv6 network (optional).")
@click.option("--listen-port", required=True, type=click.IntRange(1, 65535), help="UDP port.")
@click.option("--mtu", type=int, help="MTU (1280-9000; default: WireGuard's).")
@click.option("--dns", multiple=True, metavar="IP", help="DNS server pushed to peers (repeat).")
@click.option("--keepalive", type=int, help="Persistent keepalive in seconds (default 25).")
@operator_options(changes=True)
def interface_add(
    op: Operator,
    hub_name: str,
    name: str,
    network: str,
    network6: str | None,
    listen_port: int,
    mtu: int | None,
    dns: tuple[str, ...],
    keepalive: int | None,
) -> None:
    """Create an interface on a hub (admin); its hub builds it and reports its public key.

    \b
    Example:
      elysium interface add hub-a wg0 --network 10.8.0.0/24 --listen-port 51820
    """
    body: dict[str, Any] = {"name": name, "network": network, "listen_port": listen_port}
    extra = {"network6": network6, "mtu": mtu, "keepalive": keepalive}
    body.update({k: v for k, v in extra.items() if v is not None})
    if dns:
        body["dns"] = list(dns)
    accepted = op.api.post(f"/v1/hubs/{hub_name}/interfaces", body)
    op.follow(accepted, f"interface {accepted['interface_id']} ({hub_name}/{name})")
    _show_after(op, int(accepted["interface_id"]))


@interface.command("set")
@click.argument("interface_id", type=int, metavar="ID")
@click.option(
    "--route", "routes", multiple=True, metavar="CIDR", help="A network behind the hub (repeat)."
)
@click.option("--no-routes", is_flag=True, help="Push no networks to peers.")
@click.option("--exit/--no-exit", "exit_", default=None, help="Be the peers' default route.")
@click.option("--nat-egress", metavar="DEV", help="Masquerade what leaves through DEV.")
@click.option("--no-nat", is_flag=True, help="No NAT (route an exit without it).")
@click.option(
    "--direct/--no-direct",
    default=None,
    help="Let peers that the policy lets talk connect directly (the hub relays the rest).",
)
@operator_options(changes=True)
def interface_set(
    op: Operator,
    interface_id: int,
    routes: tuple[str, ...],
    no_routes: bool,
    exit_: bool | None,
    nat_egress: str | None,
    no_nat: bool,
    direct: bool | None,
) -> None:
    """Change what the interface pushes to its peers: routes, exit, NAT, direct paths
    (admin)."""
    body: dict[str, Any] = {}
    if routes or no_routes:
        body["routes"] = list(routes)
    if exit_ is not None:
        body["exit"] = exit_
    if nat_egress or no_nat:
        body["nat"] = {"egress": nat_egress} if nat_egress else None
    if direct is not None:
        body["direct"] = direct
    if not body:
        raise click.UsageError(
            "nothing to change: give --route, --exit, --nat-egress, --direct ..."
        )
    op.follow(op.api.patch(f"/v1/interfaces/{interface_id}", body), f"interface {interface_id}")
    _show_after(op, interface_id)


@interface.command("rm")
@click.argument("interface_id", type=int, metavar="ID")
@operator_options(changes=True)
def interface_rm(op: Operator, interface_id: int) -> None:
    """Delete an interface: its hub removes the device, then its records go (admin)."""
    op.follow(op.api.delete(f"/v1/interfaces/{interface_id}"), f"interface {interface_id} removed")


@interface.command("rotate-key")
@click.argument("interface_id", type=int, metavar="ID")
@operator_options(changes=True)
def interface_rotate_key(op: Operator, interface_id: int) -> None:
    """Give the interface a new key, made on its hub; following peers switch to it (admin)."""
    accepted = op.api.post(f"/v1/interfaces/{interface_id}/rotate-key")
    op.follow(accepted, f"interface {interface_id} key")
    _show_after(op, interface_id, ["id", "name", "status", "public_key"])


def _show_after(op: Operator, interface_id: int, keys: list[str] | None = None) -> None:
    """For people, after a change that was waited for: the interface as it is now."""
    if op.wait and not op.as_json:
        output.record(op.api.get(f"/v1/interfaces/{interface_id}"), keys or INTERFACE_FIELDS)

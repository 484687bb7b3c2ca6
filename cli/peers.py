"""``elysium peer list|show|add|set|rm|disable|enable`` over the API."""

from __future__ import annotations

from typing import Any

import click

from cli import output
from cli.operator import Operator, operator_options

PEER_COLUMNS: list[output.Column] = [
    ("ID", "id"),
    ("IFACE", "interface_id"),
    ("NAME", "name"),
    ("ADDRESS", lambda r: [a for a in (r.get("address"), r.get("address6")) if a]),
    ("STATUS", lambda r: r.get("status") if r.get("enabled", True) else "disabled"),
    ("ONLINE", "online"),
    ("HANDSHAKE", "last_handshake_at"),
    ("TAGS", "tags"),
]


@click.group()
def peer() -> None:
    """Peers of interfaces."""


def page_options(f: Any) -> Any:
    f = click.option("--cursor", help="Start after this (a page's next_cursor).")(f)
    return click.option(
        "--limit", type=click.IntRange(1, 1000), default=100, show_default=True, help="Page size."
    )(f)


def more_hint(answer: dict[str, Any], command: str) -> None:
    if answer.get("next_cursor"):
        output.note(f"more: {command} --cursor {answer['next_cursor']}")


@peer.command("list")
@click.option("--interface", "interface_id", type=int, metavar="ID", help="Only this interface.")
@click.option("--online/--offline", default=None, help="Only peers online (or offline).")
@page_options
@operator_options()
def peer_list(
    op: Operator, interface_id: int | None, online: bool | None, limit: int, cursor: str | None
) -> None:
    """Live peers by id, a page at a time."""
    answer = op.api.get(
        "/v1/peers",
        interface_id=interface_id,
        online=None if online is None else str(online).lower(),
        limit=limit,
        cursor=cursor,
    )

    def render(a: dict[str, Any]) -> None:
        output.table(a["items"], PEER_COLUMNS, "no peers")
        more_hint(a, "elysium peer list")

    op.show(answer, render)


@peer.command("show")
@click.argument("peer_id", type=int, metavar="ID")
@operator_options()
def peer_show(op: Operator, peer_id: int) -> None:
    """One peer, with what its hub last reported of it."""
    op.show(op.api.get(f"/v1/peers/{peer_id}"), output.record)


@peer.command("add")
@click.argument("interface_id", type=int, metavar="INTERFACE_ID")
@click.argument("name")
@click.option("--public-key", required=True, metavar="KEY", help="The peer's WireGuard key.")
@click.option("--subnet", "subnets", multiple=True, metavar="CIDR", help="Routed behind it.")
@click.option("--tag", "tags", multiple=True, help="Policy tag (repeat).")
@click.option("--expires-at", metavar="TIME", help="RFC 3339 time it is removed at.")
@operator_options(changes=True)
def peer_add(
    op: Operator,
    interface_id: int,
    name: str,
    public_key: str,
    subnets: tuple[str, ...],
    tags: tuple[str, ...],
    expires_at: str | None,
) -> None:
    """Add a peer whose public key is known (operator); its config is the job's result.

    \b
    Example:
      elysium peer add 1 nas --public-key xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=
    """
    body: dict[str, Any] = {"name": name, "public_key": public_key}
    body.update({"subnets": list(subnets), "tags": list(tags), "expires_at": expires_at})
    accepted = op.api.post(f"/v1/interfaces/{interface_id}/peers", body)
    op.follow(accepted, f"peer {accepted['peer_id']} ({name})")
    _show_after(op, int(accepted["peer_id"]))


@peer.command("set")
@click.argument("peer_id", type=int, metavar="ID")
@click.option("--subnet", "subnets", multiple=True, metavar="CIDR", help="Routed behind it.")
@click.option("--no-subnets", is_flag=True, help="Route nothing behind it.")
@click.option("--tag", "tags", multiple=True, help="Policy tag (repeat; replaces the tags).")
@click.option("--no-tags", is_flag=True, help="Take all its tags away.")
@click.option("--expires-at", metavar="TIME", help="RFC 3339 time it is removed at.")
@click.option("--no-expiry", is_flag=True, help="Never expire.")
@operator_options(changes=True)
def peer_set(
    op: Operator,
    peer_id: int,
    subnets: tuple[str, ...],
    no_subnets: bool,
    tags: tuple[str, ...],
    no_tags: bool,
    expires_at: str | None,
    no_expiry: bool,
) -> None:
    """Change a peer's routed subnets, tags or expiry (operator)."""
    body: dict[str, Any] = {}
    if subnets or no_subnets:
        body["subnets"] = list(subnets)
    if tags or no_tags:
        body["tags"] = list(tags)
    if expires_at or no_expiry:
        body["expires_at"] = expires_at
    if not body:
        raise click.UsageError("nothing to change: give --subnet, --tag or --expires-at")
    _change(op, peer_id, body)


@peer.command("disable")
@click.argument("peer_id", type=int, metavar="ID")
@operator_options(changes=True)
def peer_disable(op: Operator, peer_id: int) -> None:
    """Take a peer off its hub, keeping its record and address (operator)."""
    _change(op, peer_id, {"enabled": False})


@peer.command("enable")
@click.argument("peer_id", type=int, metavar="ID")
@operator_options(changes=True)
def peer_enable(op: Operator, peer_id: int) -> None:
    """Put a disabled peer back on its hub (operator)."""
    _change(op, peer_id, {"enabled": True})


@peer.command("rm")
@click.argument("peer_id", type=int, metavar="ID")
@operator_options(changes=True)
def peer_rm(op: Operator, peer_id: int) -> None:
    """Remove a peer; its address is given back once its hub has removed it (operator)."""
    op.follow(op.api.delete(f"/v1/peers/{peer_id}"), f"peer {peer_id} removed")


def _change(op: Operator, peer_id: int, body: dict[str, Any]) -> None:
    op.follow(op.api.patch(f"/v1/peers/{peer_id}", body), f"peer {peer_id}")
    _show_after(op, peer_id)


def _show_after(op: Operator, peer_id: int) -> None:
    if op.wait and not op.as_json:
        output.record(op.api.get(f"/v1/peers/{peer_id}"))

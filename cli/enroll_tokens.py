"""``elysium enroll-token create|list|revoke``: one-time tokens that let peers join."""

from __future__ import annotations

import re
import shlex
from typing import Any

import click

from cli import output
from cli.operator import Operator, operator_options
from cli.peers import more_hint, page_options
from elysium.qr import qr_text

TOKEN_COLUMNS: list[output.Column] = [
    ("ID", "id"),
    ("IFACE", "interface_id"),
    ("NAME", "name"),
    ("STATE", "state"),
    ("USES LEFT", lambda r: f"{r.get('uses_left')}/{r.get('uses_total')}"),
    ("TAGS", "tags"),
    ("SUBNETS", "subnets"),
    ("EXPIRES", "expires_at"),
]
PEER_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@click.group("enroll-token")
def enroll_token() -> None:
    """Enrollment tokens: a peer joins an interface with one (operator)."""


@enroll_token.command("create")
@click.argument("interface_id", type=int, metavar="INTERFACE_ID")
@click.option(
    "--ttl",
    "ttl_seconds",
    type=click.IntRange(min=1),
    default=3600,
    show_default=True,
    help="Seconds the token is valid.",
)
@click.option("--uses", type=click.IntRange(1, 100_000), default=1, show_default=True)
@click.option("--name", help="What (or who) it is for; also the suggested peer name.")
@click.option("--subnet", "subnets", multiple=True, metavar="CIDR", help="Granted (repeat).")
@click.option("--tag", "tags", multiple=True, help="Given to each peer it enrolls (repeat).")
@click.option("--no-qr", is_flag=True, help="Do not draw the QR code.")
@operator_options()
def enroll_token_create(
    op: Operator,
    interface_id: int,
    ttl_seconds: int,
    uses: int,
    name: str | None,
    subnets: tuple[str, ...],
    tags: tuple[str, ...],
    no_qr: bool,
) -> None:
    """Make a token and print the command a new peer runs, with its QR code.

    \b
    Example:
      elysium enroll-token create 1 --ttl 600 --name laptop --tag ops
    """
    body: dict[str, Any] = {"ttl_seconds": ttl_seconds, "uses": uses, "name": name}
    body.update({"subnets": list(subnets), "tags": list(tags)})
    made = op.api.post(f"/v1/interfaces/{interface_id}/enrollment-tokens", body)
    if op.as_json:
        output.print_json(made)
        return
    command = enroll_command(op.profile.server, str(made["token"]), name)
    output.note(
        f"enrollment token {made['id']} for interface {interface_id}: {uses} use(s),"
        f" expires {output.cell(made.get('expires_at'))}; on the new peer (with the CA as ca.pem):"
    )
    output.line(command)
    if not no_qr:
        output.line(qr_text(command).rstrip("\n"))


def enroll_command(server: str, token_text: str, name: str | None) -> str:
    """The one line a new peer runs (``ca.pem``: the API's CA certificate, copied over)."""
    peer_name = shlex.quote(name) if name and PEER_NAME.match(name) else '"$(hostname)"'
    return (
        f"elysium-client enroll --server {shlex.quote(server)} --ca ca.pem"
        f" --token {token_text} --name {peer_name}"
    )


@enroll_token.command("list")
@click.argument("interface_id", type=int, metavar="INTERFACE_ID")
@page_options
@operator_options()
def enroll_token_list(op: Operator, interface_id: int, limit: int, cursor: str | None) -> None:
    """The interface's enrollment tokens (never their text: only a hash is kept)."""
    answer = op.api.get(
        f"/v1/interfaces/{interface_id}/enrollment-tokens", limit=limit, cursor=cursor
    )

    def render(a: dict[str, Any]) -> None:
        output.table(a["items"], TOKEN_COLUMNS, "no enrollment tokens")
        more_hint(a, f"elysium enroll-token list {interface_id}")

    op.show(answer, render)


@enroll_token.command("revoke")
@click.argument("token_id", type=int, metavar="ID")
@operator_options()
def enroll_token_revoke(op: Operator, token_id: int) -> None:
    """Revoke an enrollment token: it enrolls nobody from now on."""
    revoked = op.api.delete(f"/v1/enrollment-tokens/{token_id}")
    op.show(revoked, lambda r: output.line(f"revoked enrollment token {r['id']} ({r['state']})"))

"""``elysium policy``: an interface's access policy over the API (get, set, check, edit), and a
worked example to start from."""

from __future__ import annotations

import json
from typing import IO, Any

import click

from cli import output
from cli.operator import Operator, operator_options
from cli.policy_file import edit_policy, parse_policy_text

# An office LAN behind the hub; an ops group with SSH to the servers; laptops that reach
# only the LAN. The interface pushes the LAN to its peers (routes) and denies by default.
EXAMPLE_INTERFACE = {"routes": ["192.168.10.0/24"]}
EXAMPLE_POLICY = {
    "default": "drop",
    "rules": [
        {"from": "tag:ops", "to": "tag:servers", "proto": "tcp", "ports": [22], "action": "accept"},
        {"from": "tag:ops", "to": "routes", "action": "accept"},
        {"from": "tag:laptop", "to": "routes", "action": "accept"},
    ],
}


@click.group()
def policy() -> None:
    """Access policies: who may talk to whom through a hub."""


@policy.command("example")
@click.option("--interface-id", type=int, default=1, show_default=True)
@click.option("--api", "api_url", default="https://127.0.0.1:8443", show_default=True)
def example(interface_id: int, api_url: str) -> None:
    """Print a worked example: an office LAN, ops with SSH to servers, laptops on the LAN.

    \b
    Rules are tried in order; the first that matches decides, else the default. Selectors:
    tag:NAME, peer:ID, hub, routes (the interface's routes), or a CIDR (0.0.0.0/0: anywhere).
    Replies of allowed flows always pass.
    """
    base = f"{api_url}/v1/interfaces/{interface_id}"
    auth = '-H "Authorization: Bearer $TOKEN" --cacert ca.pem'
    click.echo("# 1. push the office LAN to the peers")
    click.echo(f"curl {auth} -X PATCH {base} -d '{json.dumps(EXAMPLE_INTERFACE)}' \\")
    click.echo("     -H 'Content-Type: application/json'")
    click.echo("# 2. tokens that tag who enrolls with them (servers, ops, laptop)")
    click.echo(
        f"curl {auth} -X POST {base}/enrollment-tokens"
        ' -d \'{"ttl_seconds": 3600, "tags": ["ops"]}\' -H \'Content-Type: application/json\''
    )
    click.echo("# 3. the policy")
    click.echo(f"curl {auth} -X PUT {base}/policy -H 'Content-Type: application/json' \\")
    click.echo("     -d @- <<'EOF'")
    rules = ",\n".join(f"    {json.dumps(r)}" for r in EXAMPLE_POLICY["rules"])
    click.echo(f'{{"default": "{EXAMPLE_POLICY["default"]}", "rules": [\n{rules}\n]}}')
    click.echo("EOF")
    click.echo("# 4. ask it: may peer 3 reach 192.168.10.20 on tcp/22?")
    click.echo(f"curl {auth} '{base}/policy/check?from=peer:3&to=192.168.10.20&proto=tcp&port=22'")


RULE_COLUMNS: list[output.Column] = [
    ("#", "index"),
    ("FROM", "from"),
    ("TO", "to"),
    ("PROTO", "proto"),
    ("PORTS", "ports"),
    ("ACTION", "action"),
]


@policy.command("get")
@click.argument("interface_id", type=int, metavar="INTERFACE_ID")
@operator_options()
def policy_get(op: Operator, interface_id: int) -> None:
    """The interface's rules in order and its default (``--json``: a file ``policy set``
    takes back)."""
    op.show(op.api.get(f"/v1/interfaces/{interface_id}/policy"), _render_policy)


def _render_policy(p: dict[str, Any]) -> None:
    rules = [{"index": i, **r} for i, r in enumerate(p.get("rules") or [])]
    output.table(rules, RULE_COLUMNS, "no rules")
    output.line(f"default: {p.get('default')}")


@policy.command("set")
@click.argument("interface_id", type=int, metavar="INTERFACE_ID")
@click.argument("file", type=click.File("r"))
@operator_options(changes=True)
def policy_set(op: Operator, interface_id: int, file: IO[str]) -> None:
    """Replace the policy with the JSON in FILE ('-': stdin) (admin). A policy the API refuses
    changes nothing; the hub loads an accepted one in one transaction.

    \b
    Example:
      elysium policy get 1 --json > policy.json; $EDITOR policy.json
      elysium policy set 1 policy.json
    """
    body = parse_policy_text(file.read(), str(getattr(file, "name", "<stdin>")))
    op.follow(op.api.put(f"/v1/interfaces/{interface_id}/policy", body), "policy")


@policy.command("check")
@click.argument("interface_id", type=int, metavar="INTERFACE_ID")
@click.option("--from", "src", required=True, help="An address, hub or peer:ID.")
@click.option("--to", "dst", required=True, help="An address, hub or peer:ID.")
@click.option("--proto", help="tcp, udp or icmp.")
@click.option("--port", type=click.IntRange(1, 65535))
@operator_options()
def policy_check(
    op: Operator, interface_id: int, src: str, dst: str, proto: str | None, port: int | None
) -> None:
    """Would the hub forward this? Allow or deny, and the rule that decides."""
    decision = op.api.get(
        f"/v1/interfaces/{interface_id}/policy/check",
        **{"from": src, "to": dst, "proto": proto, "port": port},
    )

    def render(d: dict[str, Any]) -> None:
        why = "the default" if d.get("rule") is None else f"rule {d['rule']}"
        matched = f": {json.dumps(d['matched'])}" if d.get("matched") else ""
        output.line(f"{d['action']} {d.get('from')} -> {d.get('to')} by {why}{matched}")

    op.show(decision, render)


@policy.command("edit")
@click.argument("interface_id", type=int, metavar="INTERFACE_ID")
@operator_options(changes=True)
def policy_edit(op: Operator, interface_id: int) -> None:
    """Edit the policy in $EDITOR (admin). A refused policy reopens with the API's reason at
    the top; saving it unchanged or empty changes nothing."""
    edit_policy(op, interface_id)

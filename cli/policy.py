"""``elysium policy``: the access policy model, with a worked example to start from."""

from __future__ import annotations

import json

import click

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

"""``elysium token create|revoke``: API tokens, through the API (admin) or, with ``--db`` on the
server's own host, straight in the database (how the first admin token is made)."""

from __future__ import annotations

from typing import Any

import click

from cli import output
from cli.operator import Operator, operator_options
from elysium.states import Scope

ACTOR = "cli"  # who the database path's changes are recorded as

db_option = click.option(
    "--db",
    "direct",
    is_flag=True,
    help="Write to the database (ELYSIUM_DATABASE_URL) instead of calling the API: the"
    " server's host, e.g. for the first admin token.",
)


@click.group()
def token() -> None:
    """API bearer tokens (admin)."""


@token.command("create")
@click.option("--scope", required=True, type=click.Choice([s.value for s in Scope]))
@click.option("--name", required=True, help="What the token is for (1-64 characters).")
@click.option(
    "--ttl",
    "ttl_seconds",
    type=click.IntRange(min=1),
    default=None,
    help="Lifetime in seconds (default: no expiry).",
)
@db_option
@operator_options()
def token_create(
    op: Operator, scope: str, name: str, ttl_seconds: int | None, direct: bool
) -> None:
    """Create an API token and print only the token, once, on stdout.

    \b
    Examples:
      elysium token create --scope reader --name grafana --ttl 86400
      elysium token create --db --scope admin --name first-admin   # on the server's host
    """
    if direct:
        row, text = _create_in_database(name, scope, ttl_seconds)
        made: dict[str, Any] = {**row, "token": text}
    else:
        body = {"name": name, "scope": scope, "ttl_seconds": ttl_seconds}
        made = op.api.post("/v1/tokens", body)
    if op.as_json:
        output.print_json(made)
        return
    expires = made.get("expires_at") or "never"
    output.note(f"created API token {made['id']} ({scope}), expires {output.cell(expires)}")
    output.line(str(made["token"]))


@token.command("revoke")
@click.argument("token_id", type=int, metavar="ID")
@db_option
@operator_options()
def token_revoke(op: Operator, token_id: int, direct: bool) -> None:
    """Revoke an API token by id: it stops working at once."""
    if direct:
        revoked: dict[str, Any] = _revoke_in_database(token_id)
    else:
        revoked = op.api.delete(f"/v1/tokens/{token_id}")
    op.show(revoked, lambda r: output.line(f"revoked API token {token_id}"))


def _create_in_database(name: str, scope: str, ttl: int | None) -> tuple[dict[str, Any], str]:
    from services import tokens

    with _connect() as conn:
        row, text = tokens.issue_api_token(conn, ACTOR, name, scope, ttl)
    out: dict[str, Any] = {k: row[k] for k in ("id", "name", "scope") if k in row}
    return {**out, "expires_at": tokens.iso(row["expires_at"])}, text


def _revoke_in_database(token_id: int) -> dict[str, Any]:
    from services import tokens

    with _connect() as conn:
        return dict(tokens.revoke_api_token(conn, ACTOR, token_id))


def _connect() -> Any:
    import psycopg
    from psycopg.rows import dict_row

    from elysium.settings import Settings

    settings = Settings.from_env()
    return psycopg.connect(settings.database_url, row_factory=dict_row, autocommit=True)

"""The ``elysium`` server-side command: database, PKI, tokens, workers."""

from __future__ import annotations

import sys

import click

from elysium.errors import ElysiumError
from elysium.settings import Settings


@click.group()
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Elysium: hub-and-spoke WireGuard networks (server side)."""
    ctx.obj = Settings.from_env()


@cli.group()
def db() -> None:
    """Database schema."""


@db.command("migrate")
@click.pass_obj
def db_migrate(settings: Settings) -> None:
    """Apply pending SQL migrations (safe to run from several processes at once)."""
    from db.migrate import migrate

    applied = migrate(settings.database_url)
    click.echo(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else ""))


def main() -> None:
    try:
        cli(standalone_mode=True)
    except ElysiumError as exc:
        click.echo(f"elysium: {exc.message}", err=True)
        sys.exit(2)

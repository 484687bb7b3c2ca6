"""The ``elysium`` command. For operators: verbs over the HTTPS API (profiles, hubs,
interfaces, peers, tokens, policy, mesh, jobs, audit; one module each under ``cli/``). For the
server's own host: the database, the PKI and the processes (API, workers, beat)."""

from __future__ import annotations

import functools
import os
import socket
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
import psycopg

from cli.completion import completion
from cli.enroll_tokens import enroll_token
from cli.hubs import hub, mesh
from cli.interfaces import interface
from cli.jobs import audit, job
from cli.login import login, logout
from cli.peers import peer
from cli.policy import policy
from cli.profiles import OperatorError
from cli.tokens import ACTOR, token
from elysium.errors import ElysiumError
from elysium.settings import Settings

# The verbs an operator runs anywhere, through the API; then the server host's own commands.
OPERATOR_COMMANDS = (login, logout, hub, interface, peer, enroll_token, token, policy, mesh, job)
SERVER_COMMANDS = ("db", "pki", "api", "control-worker", "hub-worker", "beat")


class ElysiumGroup(click.Group):
    """Lists the operator's verbs first, the server host's commands after them."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = super().list_commands(ctx)
        server = [n for n in SERVER_COMMANDS if n in names]
        return [n for n in names if n not in server] + server


@click.group(cls=ElysiumGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Elysium: hub-and-spoke WireGuard networks.

    \b
    An operator's first steps (each verb has --help, --json, --profile):
      elysium login --server https://api:8443 --ca ca.pem --token ely_XXXX
      elysium hub list
      elysium interface add hub-a wg0 --network 10.8.0.0/24 --listen-port 51820
      elysium enroll-token create 1 --name laptop
      elysium peer list

    db, pki, api, control-worker, hub-worker and beat run on the server's own host
    (settings from ELYSIUM_*).
    """
    # Settings are read only by the commands that need them: an operator's verbs do not.
    ctx.obj = _LazySettings()


class _LazySettings:
    def __init__(self) -> None:
        self._settings: Settings | None = None

    def get(self) -> Settings:
        if self._settings is None:
            self._settings = Settings.from_env()
        return self._settings


def pass_settings(f: Callable[..., Any]) -> Callable[..., Any]:
    """Hand the command the settings from ``ELYSIUM_*`` (read when it runs)."""

    @functools.wraps(f)
    def run(*args: Any, **kwargs: Any) -> Any:
        lazy = click.get_current_context().find_object(_LazySettings)
        assert lazy is not None
        return f(lazy.get(), *args, **kwargs)

    return run


for _command in (*OPERATOR_COMMANDS, audit, completion):
    cli.add_command(_command)


@cli.group()
def db() -> None:
    """Database schema."""


@db.command("migrate")
@pass_settings
def db_migrate(settings: Settings) -> None:
    """Apply pending SQL migrations (safe to run from several processes at once)."""
    from db.migrate import migrate

    applied = migrate(settings.database_url)
    names = ": " + ", ".join(applied) if applied else ""
    click.echo(f"applied {len(applied)} migration(s){names}")


@cli.group()
def pki() -> None:
    """The private CA and its certificates."""


@pki.command("init")
@click.option(
    "--dir",
    "directory",
    required=True,
    type=click.Path(path_type=Path),
    help="Directory for ca.pem/ca.key and server.pem/server.key.",
)
@click.option(
    "--san",
    "sans",
    multiple=True,
    metavar="DNS_OR_IP",
    help="Server certificate name (repeat); default: localhost, 127.0.0.1, ::1.",
)
@click.option(
    "--tls-dir",
    type=click.Path(path_type=Path),
    help="Also copy ca.pem, server.pem and server.key (never ca.key) here, for the API.",
)
def pki_init(directory: Path, sans: tuple[str, ...], tls_dir: Path | None) -> None:
    """Create the CA (kept if it exists) and the API's server certificate."""
    _make_pki(directory, sans)
    if tls_dir is not None:
        tls_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for name in ("ca.pem", "server.pem", "server.key"):
            data = (directory / name).read_bytes()
            path = tls_dir / name
            path.touch(mode=0o600)
            path.write_bytes(data)
            os.chmod(path, 0o600 if name.endswith(".key") else 0o644)
        click.echo(f"copied ca.pem, server.pem, server.key to {tls_dir}")


def _make_pki(directory: Path, sans: tuple[str, ...]) -> None:
    from elysium import pki as ca

    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca_pem, ca_key_path = directory / "ca.pem", directory / "ca.key"
    server_pem, server_key = directory / "server.pem", directory / "server.key"
    if ca_pem.exists() != ca_key_path.exists():
        raise click.ClickException(f"{directory}: one of ca.pem/ca.key is missing; not touching it")
    if ca_pem.exists():
        ca_cert, ca_key = ca.load_certificate(ca_pem), ca.load_private_key(ca_key_path)
        click.echo(f"CA exists, kept: {ca_pem}")
    else:
        ca_cert, ca_key = ca.create_ca()
        ca.write_private_key(ca_key_path, ca_key)
        ca.write_certificate(ca_pem, ca_cert)
        click.echo(f"created CA: {ca_pem}")
    wanted = [str(n.value) for n in ca.parse_sans(sans or ca.DEFAULT_SANS)]
    if server_pem.exists() and server_key.exists():
        current = ca.load_certificate(server_pem)
        same_names = not sans or sorted(ca.certificate_sans(current)) == sorted(wanted)
        if ca.verify_issued_by(ca_cert, current) and same_names:
            click.echo(f"server certificate exists, kept: {server_pem}")
            _print_tls_settings(directory)
            return
    cert, key = ca.create_server_certificate(ca_cert, ca_key, wanted)
    ca.write_private_key(server_key, key)
    ca.write_certificate(server_pem, cert)
    click.echo(f"issued server certificate for {', '.join(wanted)}: {server_pem}")
    _print_tls_settings(directory)


def _print_tls_settings(directory: Path) -> None:
    d = directory.resolve()
    click.echo(
        f"ELYSIUM_TLS_CERT={d / 'server.pem'} ELYSIUM_TLS_KEY={d / 'server.key'}"
        f" ELYSIUM_TLS_CA={d / 'ca.pem'} ELYSIUM_CA_KEY={d / 'ca.key'}"
    )


@pki.command("client")
@click.option(
    "--dir",
    "directory",
    required=True,
    type=click.Path(path_type=Path),
    help="Directory holding ca.pem/ca.key; NAME.pem/NAME.key are written there.",
)
@click.option("--name", required=True, help="Admin name (a-z 0-9 . _ -).")
def pki_client(directory: Path, name: str) -> None:
    """Issue an admin client certificate (refuses to replace an existing one)."""
    from elysium import pki as ca

    ca_pem, ca_key_path = directory / "ca.pem", directory / "ca.key"
    if not (ca_pem.exists() and ca_key_path.exists()):
        raise click.ClickException(f"{directory}: no CA; run 'elysium pki init' first")
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    if name in ("ca", "server") or cert_path.exists() or key_path.exists():
        raise click.ClickException(f"{cert_path} or its key exists; not replacing it")
    cert, key = ca.create_client_certificate(
        ca.load_certificate(ca_pem), ca.load_private_key(ca_key_path), name
    )
    ca.write_private_key(key_path, key)
    ca.write_certificate(cert_path, cert)
    click.echo(f"issued client certificate admin:{name}: {cert_path} (key {key_path})")


def main(argv: list[str] | None = None) -> None:
    """The ``elysium`` entry point; ``argv`` (without the program name) for tests."""
    try:
        cli.main(args=argv, prog_name="elysium", standalone_mode=True)
    except OperatorError as exc:
        click.echo(f"elysium: {exc.message}", err=True)
        sys.exit(exc.exit_code)
    except ElysiumError as exc:
        click.echo(f"elysium: {exc.message}", err=True)
        sys.exit(2)
    except psycopg.OperationalError as exc:  # an expected failure: no traceback
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        click.echo(f"elysium: the database is not reachable ({first})", err=True)
        sys.exit(3)


def _worker_argv(queue: str, name: str, pool: str, concurrency: int, loglevel: str) -> list[str]:
    return [
        "worker",
        "-Q",
        queue,
        f"--pool={pool}",
        f"--concurrency={concurrency}",
        "-n",
        f"{name}@{socket.gethostname()}",
        f"--loglevel={loglevel}",
        "--without-gossip",
        "--without-mingle",
    ]


@cli.command("hub-worker")
@click.option("--hub", required=True, help="The hub this worker programs (its queue is hub.<HUB>).")
@click.option("--netns", default="", help="Act on WireGuard inside this network namespace.")
@click.option("--state-dir", type=click.Path(path_type=Path), help="Keys and sockets live here.")
@click.option("--endpoint", help="Declare the hub with this endpoint if it does not exist yet.")
@click.option("--loglevel", default="INFO", show_default=True)
@pass_settings
def hub_worker(
    settings: Settings,
    hub: str,
    netns: str,
    state_dir: Path | None,
    endpoint: str | None,
    loglevel: str,
) -> None:
    """Run the worker of one hub: converge it from the database, then consume hub.<HUB>.

    \b
    Example:
      elysium hub-worker --hub hub-a --netns ely-hub-a --state-dir /var/lib/elysium
    """
    settings = replace(settings, hub=hub, netns=netns, state_dir=state_dir or settings.state_dir)
    from elysium.queue import hub_queue
    from services.hubs import ensure_hub
    from workers.celery_app import make_celery
    from workers.runtime import runtime

    app = make_celery(settings)
    rt = runtime(app)
    if endpoint:
        with rt.pool.connection() as conn:
            ensure_hub(conn, ACTOR, hub, endpoint)
    rt.hub.start()
    app.worker_main(_worker_argv(hub_queue(hub), f"hub.{hub}", "solo", 1, loglevel))


@cli.command("control-worker")
@click.option("--concurrency", default=2, show_default=True)
@click.option("--loglevel", default="INFO", show_default=True)
@pass_settings
def control_worker(settings: Settings, concurrency: int, loglevel: str) -> None:
    """Run a worker of the control queue (database work, sweeps, orchestration)."""
    from elysium.queue import CONTROL_QUEUE
    from workers.celery_app import make_celery

    make_celery(settings).worker_main(
        _worker_argv(CONTROL_QUEUE, "control", "threads", concurrency, loglevel)
    )


@cli.command("beat")
@click.option("--loglevel", default="INFO", show_default=True)
@pass_settings
def beat_command(settings: Settings, loglevel: str) -> None:
    """Run Celery beat: the periodic workflows, sent only by the beat holding the lease.

    Run as many as you like; exactly one sends at a time (table ``leases``, name ``beat``).
    """
    from functools import partial

    from beat.leader import LeaderScheduler
    from workers.celery_app import make_celery

    make_celery(settings).Beat(
        scheduler=partial(LeaderScheduler, settings=settings),
        loglevel=loglevel,
        max_interval=settings.beat_lease_s / 3,
    ).run()


@cli.command("api")
@click.option("--bind", help="host:port (default: ELYSIUM_API_BIND).")
@click.option("--workers", type=click.IntRange(min=1), help="default: ELYSIUM_API_WORKERS.")
@pass_settings
def api_server(settings: Settings, bind: str | None, workers: int | None) -> None:
    """Serve the HTTPS API with gunicorn (config api/gunicorn_conf.py, TLS from ELYSIUM_TLS_*)."""
    import os

    from gunicorn.app.wsgiapp import run

    import api

    if bind:
        os.environ["ELYSIUM_API_BIND"] = bind
    if workers:
        os.environ["ELYSIUM_API_WORKERS"] = str(workers)
    conf = Path(api.__file__).parent / "gunicorn_conf.py"
    sys.argv = ["gunicorn", "-c", str(conf), "api.app:create_app()"]
    run()

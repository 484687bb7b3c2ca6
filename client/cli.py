"""The ``elysium-client`` command: enroll, up, run, down, status, config, rotate."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from client import dns, receiver_policy, tunnel, wgquick
from client.errors import EXIT_FAILED, ClientError
from client.state import DEFAULT_INTERFACE, STATE_DIR_ENV, Enrollment, StateDir
from elysium.errors import ElysiumError
from elysium.wgquick import render_wg_quick

err_console = Console(stderr=True)

state_dir_option = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar=STATE_DIR_ENV,
    help=f"Keys, certificate and config (default /var/lib/elysium-client, or ${STATE_DIR_ENV}).",
)
netns_option = click.option(
    "--netns",
    metavar="NS",
    default=None,
    help="Network namespace the tunnel lives in (default: as enrolled, else this one).",
)


class ClientGroup(click.Group):
    """Expected failures become one line on stderr and their exit code, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ClientError as exc:
            _fail(exc.message, exc.exit_code)
        except ElysiumError as exc:  # the dataplane or a key file said no
            _fail(f"{exc.message} ({exc.code})", EXIT_FAILED)
        except OSError as exc:
            _fail(str(exc), EXIT_FAILED)


def _fail(message: str, code: int) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.group(cls=ClientGroup, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Join an Elysium WireGuard network as a peer, and run its tunnel.

    \b
    A typical journey:
      elysium-client enroll --server https://api.example:8443 --ca ca.pem \\
                            --token ENROLL_TOKEN --name laptop
      elysium-client run          # or: up, to bring the tunnel up and return
      elysium-client status
      elysium-client rotate
      elysium-client down
    """


@cli.command()
@click.option("--server", required=True, metavar="URL", help="The API, e.g. https://api:8443.")
@click.option("--token", metavar="TOKEN", help="One-time enrollment token.")
@click.option(
    "--sso",
    is_flag=True,
    help="No token: sign in through the server's OpenID provider (a code to type in a browser).",
)
@click.option("--name", required=True, help="A name for this peer (shown to operators).")
@click.option(
    "--ca",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CA certificate (PEM) of the API; default: the system's trusted CAs.",
)
@click.option(
    "--subnet",
    "subnets",
    multiple=True,
    metavar="CIDR",
    help="A subnet behind this peer to route through it (repeat).",
)
@click.option(
    "--interface",
    default=DEFAULT_INTERFACE,
    show_default=True,
    help="Name of the tunnel interface (e.g. wg0).",
)
@click.option("--timeout", default=120.0, show_default=True, help="Seconds to wait for the hub.")
@netns_option
@state_dir_option
def enroll(
    server: str,
    token: str | None,
    sso: bool,
    name: str,
    ca: Path | None,
    subnets: tuple[str, ...],
    interface: str,
    timeout: float,
    netns: str | None,
    state_dir: Path | None,
) -> None:
    """Enroll this machine with a one-time token, or by signing in (--sso).

    Makes the WireGuard key and a TLS key here (0600, never sent), sends the public key and a
    CSR, waits for the hub to add the peer, and stores the config and client certificate.

    \b
    Examples:
      elysium-client enroll --server https://10.0.0.1:8443 --ca ca.pem \\
                            --token elyenr_XXXX --name laptop
      elysium-client enroll --server https://api:8443 --token elyenr_XXXX --name office \\
                            --subnet 192.168.10.0/24 --netns office
      elysium-client enroll --server https://api:8443 --ca ca.pem --sso --name laptop
    """
    from client.enrollment import enroll as do_enroll

    if (token is None) == (not sso):
        raise click.UsageError("give one of --token TOKEN or --sso")
    state = StateDir.from_option(state_dir)
    if sso:
        from client.sso import sso_enrollment_token

        token = sso_enrollment_token(server, ca)
    assert token is not None
    with _progress(f"Enrolling {name}") as on_status:
        done = do_enroll(
            state,
            server=server,
            token=token,
            name=name,
            ca=ca,
            subnets=list(subnets),
            netns=netns,
            interface=interface,
            timeout=timeout,
            on_status=on_status,
        )
    addresses = ", ".join(done.config.get("addresses", []))
    click.echo(
        f"enrolled {name} as peer {done.peer_id}: {addresses} via "
        f"{done.config.get('endpoint')}; state in {state.path}"
    )
    click.echo("next: elysium-client up")


@cli.command()
@click.option("--interface", default=None, help="Tunnel interface name (default: as enrolled).")
@click.option("--offline", is_flag=True, help="Use the stored config; do not ask the server.")
@netns_option
@state_dir_option
def up(interface: str | None, offline: bool, netns: str | None, state_dir: Path | None) -> None:
    """Bring the tunnel up (or repair it): interface, key, addresses, hub peer, routes.

    The current config is fetched from the server first (with the client certificate);
    if the server cannot be reached the stored config is used.

    \b
    Examples:
      elysium-client up
      elysium-client up --netns peer1 --interface wg0
    """
    state, enrollment = _enrolled(state_dir, netns, interface)
    state.save(enrollment)  # down and status then act where up did
    if not offline:
        _refresh_config(state, enrollment)
    public = tunnel.up(state, enrollment, _tunnel_options(state, enrollment))
    dns.apply(
        state.path, enrollment.netns, enrollment.interface, enrollment.config.get("dns") or []
    )
    where = f" in netns {enrollment.netns}" if enrollment.netns else ""
    click.echo(
        f"{enrollment.interface}{where} is up: "
        f"{', '.join(enrollment.config['addresses'])}, public key {public}"
    )


@cli.command()
@click.option(
    "--wait",
    default=55.0,
    show_default=True,
    help="Seconds one long poll may wait for a change (the server caps it).",
)
@click.option("--interface", default=None, help="Tunnel interface name (default: as enrolled).")
@netns_option
@state_dir_option
def run(wait: float, interface: str | None, netns: str | None, state_dir: Path | None) -> None:
    """Run in the foreground: keep the tunnel up and follow the network live.

    Brings the tunnel up (or adopts the one already up), then waits on the server for each
    new config version and applies it as the smallest change: other peers' subnets and their
    routes, the hub's key and endpoint, DNS. One log line per change. When the server cannot
    be reached the last config keeps working. SIGTERM leaves the tunnel up.

    \b
    Examples:
      elysium-client run
      systemctl enable --now elysium-client     # deploy/systemd/elysium-client.service
    """
    from client.follow import Follower, now_text

    state, enrollment = _enrolled(state_dir, netns, interface)
    state.save(enrollment)  # down and status then act where run did

    def log(line: str) -> None:
        click.echo(f"{now_text()} {line}")
        sys.stdout.flush()

    Follower(state, enrollment, _tunnel_options(state, enrollment), log, wait_s=wait).run()


@cli.command()
@netns_option
@state_dir_option
def down(netns: str | None, state_dir: Path | None) -> None:
    """Take the tunnel down: the interface, its wireguard-go process, socket and routes go.

    \b
    Example:
      elysium-client down
    """
    state, enrollment = _enrolled(state_dir, netns, None)
    removed = tunnel.down(enrollment, _tunnel_options(state, enrollment))
    receiver_policy.remove(enrollment.netns)  # run's own table on a direct interface
    dns.restore(state.path)  # the DNS servers from before up
    click.echo(
        f"{enrollment.interface} is down" if removed else f"{enrollment.interface} was not up"
    )


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@netns_option
@state_dir_option
def status(as_json: bool, netns: str | None, state_dir: Path | None) -> None:
    """Show the tunnel: interface, endpoint, latest handshake, transfer, addresses.

    \b
    Examples:
      elysium-client status
      elysium-client status --json | jq .handshake_age_s
    """
    state, enrollment = _enrolled(state_dir, netns, None)
    st = tunnel.status(enrollment, _tunnel_options(state, enrollment))
    follow = _follow_status(enrollment)
    if as_json:
        click.echo(json.dumps({**st.to_dict(), **follow}, indent=2))
        return
    age = st.handshake_age_s()
    where = f" (netns {st.netns})" if st.netns else ""
    rows = [
        ("interface", f"{st.interface}{where}: {'up' if st.up else 'down'}"),
        ("addresses", ", ".join(st.addresses) or "-"),
        ("endpoint", st.endpoint or "-"),
        ("handshake", "never" if age is None else f"{_duration(age)} ago"),
        ("transfer", f"{_size(st.rx_bytes)} received, {_size(st.tx_bytes)} sent"),
        ("public key", st.public_key or "-"),
        ("config", _config_line(follow)),
    ]
    for label, value in rows:
        click.echo(f"{label:<11}{value}")
    for path in st.paths:  # other peers of a direct interface
        at = path["latest_handshake_at"]
        click.echo(
            f"{'peer ' + str(path['peer_id']):<11}{','.join(path['addresses'])} {path['path']}"
            f" via {path['endpoint'] or 'the hub'}, handshake {at or 'never'}"
        )


@cli.command()
@click.option("--qr", is_flag=True, help="Print the config as a terminal QR code.")
@state_dir_option
def config(qr: bool, state_dir: Path | None) -> None:
    """Print a wg-quick config for this peer (it includes the private key: keep it private).

    \b
    Examples:
      elysium-client config > /etc/wireguard/elysium0.conf
      elysium-client config --qr      # scan with the WireGuard mobile app
    """
    state, enrollment = _enrolled(state_dir, None, None)
    text = render_wg_quick(enrollment.config, state.read_wg_key(), enrollment.name)
    click.echo(wgquick.qr_text(text) if qr else text, nl=False)


@cli.command()
@click.option("--timeout", default=120.0, show_default=True, help="Seconds to wait for the hub.")
@state_dir_option
def rotate(timeout: float, state_dir: Path | None) -> None:
    """Replace this peer's WireGuard key: the hub gets the new public key, then the tunnel.

    The old key stays in use until the hub has taken the new one.

    \b
    Example:
      elysium-client rotate
    """
    from client.rotation import rotate as do_rotate

    state, enrollment = _enrolled(state_dir, None, None)
    with _progress("Rotating the key") as on_status:
        new_public = do_rotate(
            state,
            enrollment,
            _tunnel_options(state, enrollment),
            timeout=timeout,
            on_status=on_status,
        )
    click.echo(f"rotated: new public key {new_public}")


def _enrolled(
    state_dir: Path | None, netns: str | None, interface: str | None
) -> tuple[StateDir, Enrollment]:
    state = StateDir.from_option(state_dir)
    enrollment = state.load()
    if netns is not None:
        enrollment.netns = netns or None
    if interface is not None:
        enrollment.interface = interface
    return state, enrollment


def _follow_status(enrollment: Enrollment) -> dict[str, Any]:
    """The config version this peer holds, how old it is and when the server last answered."""
    from datetime import UTC, datetime

    def age(text: str | None) -> float | None:
        if not text:
            return None
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return round((datetime.now(UTC) - at).total_seconds(), 1)

    return {
        "config_version": enrollment.config.get("version"),
        "config_age_s": age(enrollment.config_at),
        "checked_age_s": age(enrollment.checked_at),
    }


def _config_line(follow: dict[str, Any]) -> str:
    if not follow["config_version"]:
        return "-"
    line = str(follow["config_version"])
    if follow["config_age_s"] is not None:
        line += f", since {_duration(follow['config_age_s'])}"
    if follow["checked_age_s"] is not None:
        line += f" (server checked {_duration(follow['checked_age_s'])} ago)"
    return line


def _tunnel_options(state: StateDir, enrollment: Enrollment) -> tunnel.TunnelOptions:
    """The driver for this enrollment's namespace, as ``$ELYSIUM_WG_DRIVER`` chooses it."""
    return tunnel.TunnelOptions.from_env(state.path, enrollment.netns)


def _refresh_config(state: StateDir, enrollment: Enrollment) -> None:
    from client.rotation import api_for

    try:
        current = api_for(state, enrollment).peer_config()
    except ClientError as exc:
        err_console.print(f"[yellow]warning:[/] using the stored config ({exc.message})")
        return
    enrollment.config.update(current)
    state.save(enrollment)


@contextmanager
def _progress(title: str) -> Iterator[Callable[[str], None]]:
    """A spinner on stderr naming the job's status as it moves."""
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(
        *columns, console=err_console, transient=True, disable=not err_console.is_terminal
    ) as progress:
        task = progress.add_task(f"{title}: starting")

        def on_status(status: str) -> None:
            progress.update(task, description=f"{title}: {status}")

        yield on_status


def _duration(seconds: float) -> str:
    s = int(max(0, seconds))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def main() -> None:
    cli()

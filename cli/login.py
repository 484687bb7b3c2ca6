"""``elysium login`` and ``logout``: keep (or forget) a profile after the API accepts its token."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cli import output, profiles
from cli.http import Api
from cli.profiles import OperatorError
from cli.sso import sso_login


@click.command()
@click.option("--server", required=True, metavar="URL", help="The API, e.g. https://api:8443.")
@click.option(
    "--ca",
    type=click.Path(dir_okay=False, path_type=Path),
    help="CA certificate (PEM) of the API; copied into the profile. Default: system CAs.",
)
@click.option(
    "--token",
    metavar="TOKEN",
    help="API token; '-' (or no --token with stdin not a terminal) reads it from stdin.",
)
@click.option(
    "--sso",
    is_flag=True,
    help="Sign in through the server's OpenID provider (device code) for a short-lived token.",
)
@click.option(
    "--provider-ca",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="With --sso: CA certificate of the OpenID provider. Default: system CAs.",
)
@click.option(
    "--profile", metavar="NAME", help="Profile name (default: $ELYSIUM_PROFILE, else 'default')."
)
def login(
    server: str,
    ca: Path | None,
    token: str | None,
    sso: bool,
    provider_ca: Path | None,
    profile: str | None,
) -> None:
    """Check an API token against the server, then keep it in a profile (file mode 0600).

    \b
    Examples:
      elysium login --server https://10.0.0.1:8443 --ca ca.pem --token ely_XXXX
      pass show elysium/admin | elysium login --server https://api:8443 --ca ca.pem
      elysium login --server https://api:8443 --ca ca.pem --sso
    """
    name = profiles.profile_name(profile)
    if sso and token is not None:
        raise click.UsageError("give --token or --sso, not both")
    if not server.startswith("https://"):
        raise OperatorError(f"--server {server!r}: the API is https://host:port", code="bad_url")
    ca_pem = None
    if ca is not None:
        try:
            ca_pem = ca.read_bytes()
        except OSError as exc:
            raise OperatorError(f"--ca {ca}: {exc.strerror or exc}", code="bad_ca") from None
        if b"-----BEGIN CERTIFICATE-----" not in ca_pem:
            raise OperatorError(f"--ca {ca}: not a PEM certificate", code="bad_ca")
    if sso:
        text = sso_login(server, ca.resolve() if ca else None, provider_ca=provider_ca)
    else:
        text = _token(token)
    hubs = Api(server, text, ca.resolve() if ca else None).get("/v1/hubs")  # needs a token
    saved = profiles.save(name, server.rstrip("/"), text, ca_pem)
    count = len(hubs.get("items", []))
    output.line(f"logged in to {saved.server} as profile {name!r} ({count} hub(s) visible)")


def _token(given: str | None) -> str:
    if given == "-" or (given is None and not sys.stdin.isatty()):
        text = sys.stdin.readline().strip()
    elif given is None:
        text = click.prompt("API token", hide_input=True).strip()
    else:
        text = given.strip()
    if not text:
        raise OperatorError("no token given (--token, or on stdin)", code="no_token")
    return text


@click.command()
@click.option("--profile", metavar="NAME", help="Profile to forget (default as for login).")
def logout(profile: str | None) -> None:
    """Forget a profile: its token and its copy of the CA (the token stays valid on the server;
    revoke it with ``elysium token revoke``)."""
    name, found = profiles.remove(profile)
    output.line(f"logged out of profile {name!r}" if found else f"no profile {name!r}")

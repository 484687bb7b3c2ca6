"""compose.yaml, the Containerfile and the systemd units run commands that exist.

There is no container engine here; these tests check what `docker compose config` cannot:
that every command the deployment files run parses as an `elysium` command line.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
import yaml

from cli.main import cli

ROOT = Path(__file__).resolve().parents[2]


def parse_elysium(args: list[str]) -> click.Command:
    """Parse ``elysium ARGS`` as click would, without running it; return the command."""
    group: click.Command = cli
    while isinstance(group, click.Group):
        name, args = args[0], args[1:]
        sub = group.get_command(click.Context(group), name)
        assert sub is not None, f"elysium has no command {name!r}"
        group = sub
    group.make_context(group.name or "", list(args))
    return group


def compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def elysium_services() -> list[tuple[str, list[str]]]:
    return [
        (name, svc["command"])
        for name, svc in compose()["services"].items()
        if svc.get("image") == "localhost/elysium:latest"
    ]


@pytest.mark.parametrize(("service", "command"), elysium_services())
def test_each_compose_service_runs_a_real_elysium_command(service: str, command: list[str]) -> None:
    parse_elysium(command)


def test_compose_has_the_whole_stack_and_a_privileged_hub_worker() -> None:
    services = compose()["services"]
    assert {"postgres", "redis", "migrate", "api", "control-worker", "beat", "hub-worker"} <= set(
        services
    )
    hub = services["hub-worker"]
    assert "NET_ADMIN" in hub["cap_add"] and "/dev/net/tun:/dev/net/tun" in hub["devices"]


def test_the_containerfile_copies_every_package_of_the_distribution() -> None:
    text = (ROOT / "deploy" / "containers" / "Containerfile").read_text()
    copied = set(re.findall(r"^COPY (\w+) ", text, re.M))
    pyproject = (ROOT / "pyproject.toml").read_text()
    packages = set(re.findall(r'"(\w+)\*"', pyproject))
    assert packages <= copied


@pytest.mark.parametrize(
    "unit", sorted((ROOT / "deploy" / "systemd").glob("*.service")), ids=lambda p: p.name
)
def test_each_systemd_unit_runs_a_real_elysium_command(unit: Path) -> None:
    lines = [
        line.split("=", 1)[1]
        for line in unit.read_text().splitlines()
        if line.startswith(("ExecStart=", "ExecStartPre="))
    ]
    assert lines
    for line in lines:
        argv = shlex.split(line.replace("%i", "hub-a"))
        if argv[0].endswith("/elysium-client"):
            from client.cli import cli as client_cli

            command = client_cli.commands[argv[1]]
            command.make_context(argv[1], argv[2:])
            continue
        assert argv[0].endswith("/elysium")
        parse_elysium(argv[1:])
    if unit.name.startswith("elysium-hub@"):
        text = unit.read_text()
        assert (
            "CAP_NET_ADMIN" in text and "ProtectSystem=strict" in text and "PrivateTmp=yes" in text
        )

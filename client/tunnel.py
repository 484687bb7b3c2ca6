"""The peer's tunnel to its hub, with the same WireGuard drivers the hubs use.

The interface gets the assigned addresses (their networks are reachable directly); every
other allowed IP (the subnets of other peers) gets a route through the interface.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from client import exit_routing
from client.direct import peer_paths
from client.exit_routing import ExitRouting
from client.state import Enrollment, StateDir
from dataplane import Dataplane, InterfaceSpec, PeerSpec
from elysium.errors import ConfigError

WG_DRIVER_ENV = "ELYSIUM_WG_DRIVER"
WIREGUARD_GO_ENV = "ELYSIUM_WIREGUARD_GO"
WG_DRIVERS = ("auto", "kernel", "userspace")


@dataclass(frozen=True)
class TunnelOptions:
    """What the tunnel's WireGuard driver needs of this host, and nothing of the server's."""

    state_dir: Path  # where the driver keeps device state (UAPI sockets, pid files)
    netns: str | None  # the namespace the interface lives in; None: this one
    wg_driver: str = "auto"  # auto (kernel if it speaks WireGuard) | kernel | userspace
    wireguard_go: str = "wireguard-go"  # the userspace daemon
    routing: ExitRouting = field(
        default_factory=ExitRouting
    )  # the table and mark of an exit through the hub

    @classmethod
    def from_env(
        cls, state_dir: Path, netns: str | None, environ: Mapping[str, str] | None = None
    ) -> TunnelOptions:
        """The driver choice from ``$ELYSIUM_WG_DRIVER`` and ``$ELYSIUM_WIREGUARD_GO``."""
        env = os.environ if environ is None else environ
        driver = env.get(WG_DRIVER_ENV) or "auto"
        if driver not in WG_DRIVERS:
            raise ConfigError(f"{WG_DRIVER_ENV} must be auto, kernel or userspace", "wg_driver")
        wg_go = env.get(WIREGUARD_GO_ENV) or "wireguard-go"
        return cls(state_dir, netns, driver, wg_go, ExitRouting.from_env(env))


@dataclass(frozen=True)
class TunnelStatus:
    interface: str
    netns: str | None
    up: bool
    addresses: tuple[str, ...]
    public_key: str | None
    endpoint: str | None
    latest_handshake_at: datetime | None
    rx_bytes: int
    tx_bytes: int
    paths: tuple[dict[str, Any], ...] = ()  # other peers, direct or relayed (client/direct.py)

    def handshake_age_s(self, now: datetime | None = None) -> float | None:
        if self.latest_handshake_at is None:
            return None
        return ((now or datetime.now(UTC)) - self.latest_handshake_at).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        at = self.latest_handshake_at
        age = self.handshake_age_s()
        return {
            "interface": self.interface,
            "netns": self.netns,
            "up": self.up,
            "addresses": list(self.addresses),
            "public_key": self.public_key,
            "endpoint": self.endpoint,
            "latest_handshake_at": at.isoformat().replace("+00:00", "Z") if at else None,
            "handshake_age_s": round(age, 1) if age is not None else None,
            "rx_bytes": self.rx_bytes,
            "tx_bytes": self.tx_bytes,
            "paths": list(self.paths),
        }


def interface_spec(
    state: StateDir, enrollment: Enrollment, routing: ExitRouting | None = None
) -> InterfaceSpec:
    """Our interface; through an exit its UDP socket carries the exit's mark."""
    config = enrollment.config
    exits = exit_routing.exit_families(config.get("allowed_ips") or ())
    return InterfaceSpec(
        name=enrollment.interface,
        private_key_file=state.wg_key,
        listen_port=None,
        addresses=tuple(config["addresses"]),
        mtu=config.get("mtu"),
        fwmark=(routing or ExitRouting()).fwmark if exits else 0,
    )


def hub_peer(config: dict[str, Any]) -> PeerSpec:
    """The hub as the one peer of the client's interface."""
    allowed = tuple(config["allowed_ips"])
    return PeerSpec(
        public_key=config["hub_public_key"],
        allowed_ips=allowed,
        routes=tuple(routed_subnets(config["addresses"], allowed)),
        endpoint=config["endpoint"],
        keepalive=config.get("keepalive") or None,
    )


# An exit's default routes live in a table of their own (client/exit_routing.py), not here.
DEFAULTS = ("0.0.0.0/0", "::/0")


def routed_subnets(addresses: list[str], allowed_ips: tuple[str, ...]) -> list[str]:
    """Allowed IPs outside the interface's own networks: these need a route of ours."""
    own = [ipaddress.ip_interface(a).network for a in addresses]
    out: list[str] = []
    for text in allowed_ips:
        net = ipaddress.ip_network(text, strict=False)
        if str(net) in DEFAULTS:
            continue
        if not any(net.version == o.version and net.subnet_of(o) for o in own):  # type: ignore[arg-type]
            out.append(str(net))
    return out


@contextmanager
def dataplane(options: TunnelOptions) -> Iterator[Dataplane]:
    """The driver for ``options.netns`` (auto: kernel if available, else wireguard-go)."""
    from dataplane import make_dataplane

    driver = make_dataplane(
        options.wg_driver, options.state_dir, options.netns, options.wireguard_go
    )
    try:
        yield driver
    finally:
        driver.close()


def up(state: StateDir, enrollment: Enrollment, options: TunnelOptions) -> str:
    """Create or repair the interface and set the hub as its peer; returns our public key."""
    exits = exit_routing.exit_families(enrollment.config.get("allowed_ips") or ())
    if exits:  # refused before anything changes: the tunnel stays as it was
        exit_routing.check(options.netns, enrollment.interface, options.routing)
    with dataplane(options) as dp:
        public, _ = dp.ensure_interface(interface_spec(state, enrollment, options.routing))
        dp.converge(enrollment.interface, [hub_peer(enrollment.config)])
    exit_routing.apply(options.netns, enrollment.interface, exits, options.routing)
    return public


def is_up(enrollment: Enrollment, options: TunnelOptions) -> bool:
    with dataplane(options) as dp:
        return enrollment.interface in dp.list_interfaces()


def down(enrollment: Enrollment, options: TunnelOptions) -> bool:
    """Remove the interface, its device process, socket and routes; False if it was down."""
    exit_routing.remove(options.netns, options.routing)
    with dataplane(options) as dp:
        return dp.remove_interface(enrollment.interface)


def status(enrollment: Enrollment, options: TunnelOptions) -> TunnelStatus:
    config = enrollment.config
    with dataplane(options) as dp:
        running = enrollment.interface in dp.list_interfaces()
        stats = dp.dump(enrollment.interface) if running else []
    hub = next((s for s in stats if s.public_key == config.get("hub_public_key")), None)
    return TunnelStatus(
        interface=enrollment.interface,
        netns=options.netns,
        up=running,
        addresses=tuple(config.get("addresses", ())),
        public_key=config.get("public_key"),
        endpoint=(hub.endpoint if hub and hub.endpoint else config.get("endpoint")),
        latest_handshake_at=hub.last_handshake_at if hub else None,
        rx_bytes=hub.rx_bytes if hub else 0,
        tx_bytes=hub.tx_bytes if hub else 0,
        paths=tuple(peer_paths(config, stats)),
    )

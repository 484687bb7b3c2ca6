"""The peer's tunnel to its hub, with the same WireGuard drivers the hubs use.

The interface gets the assigned addresses (their networks are reachable directly); every
other allowed IP (the subnets of other peers) gets a route through the interface.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from client.state import Enrollment, StateDir
from elysium.settings import Settings
from elysium.wireguard import Dataplane, InterfaceSpec, PeerSpec


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
        }


def interface_spec(state: StateDir, enrollment: Enrollment) -> InterfaceSpec:
    config = enrollment.config
    return InterfaceSpec(
        name=enrollment.interface,
        private_key_file=state.wg_key,
        listen_port=None,
        addresses=tuple(config["addresses"]),
        mtu=config.get("mtu"),
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


def routed_subnets(addresses: list[str], allowed_ips: tuple[str, ...]) -> list[str]:
    """Allowed IPs outside the interface's own networks: these need a route of ours."""
    own = [ipaddress.ip_interface(a).network for a in addresses]
    out = []
    for text in allowed_ips:
        net = ipaddress.ip_network(text, strict=False)
        if not any(net.version == o.version and net.subnet_of(o) for o in own):  # type: ignore[arg-type]
            out.append(str(net))
    return out


@contextmanager
def dataplane(state: StateDir, netns: str | None, settings: Settings) -> Iterator[Dataplane]:
    """The driver for ``netns`` (auto: kernel if available, else wireguard-go)."""
    from elysium.wireguard import make_dataplane

    driver = make_dataplane(settings.wg_driver, state.path, netns, settings.wireguard_go)
    try:
        yield driver
    finally:
        driver.close()


def up(state: StateDir, enrollment: Enrollment, settings: Settings) -> str:
    """Create or repair the interface and set the hub as its peer; returns our public key."""
    with dataplane(state, enrollment.netns, settings) as dp:
        public, _ = dp.ensure_interface(interface_spec(state, enrollment))
        dp.converge(enrollment.interface, [hub_peer(enrollment.config)])
    return public


def is_up(state: StateDir, enrollment: Enrollment, settings: Settings) -> bool:
    with dataplane(state, enrollment.netns, settings) as dp:
        return enrollment.interface in dp.list_interfaces()


def down(state: StateDir, enrollment: Enrollment, settings: Settings) -> bool:
    """Remove the interface, its device process, socket and routes; False if it was down."""
    with dataplane(state, enrollment.netns, settings) as dp:
        return dp.remove_interface(enrollment.interface)


def status(state: StateDir, enrollment: Enrollment, settings: Settings) -> TunnelStatus:
    config = enrollment.config
    with dataplane(state, enrollment.netns, settings) as dp:
        running = enrollment.interface in dp.list_interfaces()
        stats = dp.dump(enrollment.interface) if running else []
    hub = next((s for s in stats if s.public_key == config.get("hub_public_key")), None)
    return TunnelStatus(
        interface=enrollment.interface,
        netns=enrollment.netns,
        up=running,
        addresses=tuple(config.get("addresses", ())),
        public_key=config.get("public_key"),
        endpoint=(hub.endpoint if hub and hub.endpoint else config.get("endpoint")),
        latest_handshake_at=hub.last_handshake_at if hub else None,
        rx_bytes=hub.rx_bytes if hub else 0,
        tx_bytes=hub.tx_bytes if hub else 0,
    )

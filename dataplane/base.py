"""The protocol every WireGuard driver implements, and the values it speaks in.

Keys travel as standard base64 text. A driver acts on interfaces inside one network
namespace (``None``: the caller's own) and keeps its private keys under its state directory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import NamedTuple, Protocol


@dataclass(frozen=True)
class InterfaceSpec:
    """What an interface must look like (peers aside)."""

    name: str  # "wg0"
    private_key_file: Path  # made (0600) on first use; never leaves the host
    listen_port: int | None  # None: let the device pick (clients)
    addresses: tuple[str, ...]  # interface addresses with prefix: ("10.8.0.1/24", "fd00::1/64")
    mtu: int | None = None
    fwmark: int | None = None


@dataclass(frozen=True)
class PeerSpec:
    """What one peer must look like on an interface."""

    public_key: str
    allowed_ips: tuple[str, ...]
    # Subnets routed via the interface for this peer (on a hub: the peer's site subnets).
    routes: tuple[str, ...] = ()
    endpoint: str | None = None  # "host:port"
    keepalive: int | None = None
    preshared_key: str | None = None


class PeerStats(NamedTuple):
    """One peer as a dump reports it (a tuple: a dump makes 10k of them at once)."""

    public_key: str
    endpoint: str | None
    last_handshake_at: datetime | None
    rx_bytes: int
    tx_bytes: int
    allowed_ips: tuple[str, ...] = ()


@dataclass
class ChangeSet:
    """What a converge or apply changed on the host."""

    added: list[str] = field(default_factory=list)  # peer public keys
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    routes_added: list[str] = field(default_factory=list)
    routes_removed: list[str] = field(default_factory=list)
    interface_created: bool = False
    interface_changed: list[str] = field(default_factory=list)  # e.g. ["listen_port", "mtu"]
    transactions: int = 0  # UAPI set transactions / netlink batches used

    @property
    def changed(self) -> bool:
        return bool(
            self.added
            or self.updated
            or self.removed
            or self.routes_added
            or self.routes_removed
            or self.interface_created
            or self.interface_changed
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "added": len(self.added),
            "updated": len(self.updated),
            "removed": len(self.removed),
            "routes_added": self.routes_added,
            "routes_removed": self.routes_removed,
            "interface_created": self.interface_created,
            "interface_changed": self.interface_changed,
            "transactions": self.transactions,
        }


class Dataplane(Protocol):
    """One host's WireGuard, as seen by a hub worker or the client."""

    def ensure_interface(self, spec: InterfaceSpec) -> tuple[str, ChangeSet]:
        """Create or repair the interface (device, key, port, addresses, MTU, link up).

        Returns the interface public key and what changed. Peers are left as they are.
        """
        ...

    def converge(self, name: str, peers: Sequence[PeerSpec]) -> ChangeSet:
        """Make the interface hold exactly ``peers`` (and their routes), in one batch."""
        ...

    def apply_peers(
        self, name: str, upsert: Sequence[PeerSpec], remove: Sequence[str]
    ) -> ChangeSet:
        """Set or update some peers and remove others, touching only those: O(k), one batch."""
        ...

    def dump(self, name: str) -> list[PeerStats]:
        """Every peer's endpoint, latest handshake and transfer counters, in one call."""
        ...

    def listen_port(self, name: str) -> int:
        """The UDP port the interface listens on (a client's is picked by the device)."""
        ...

    def remove_interface(self, name: str) -> bool:
        """Remove the interface, its device process and routes; False when it was not there."""
        ...

    def list_interfaces(self) -> list[str]:
        """Names of WireGuard interfaces this driver manages in its namespace."""
        ...

    def close(self) -> None:
        """Release what the driver holds open (netlink sockets); devices keep running."""
        ...

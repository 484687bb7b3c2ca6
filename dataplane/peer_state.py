"""What a WireGuard device holds, what we want it to hold, and the smallest update between them.

Both drivers read the device into a :class:`DeviceState`, diff it against the desired peers,
and write one :class:`DeviceUpdate` (one UAPI ``set`` or one netlink batch).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

ZERO_KEY_HEX = "0" * 64


class PeerState(NamedTuple):
    """One peer's configuration, normalized so that equal configurations compare equal.

    Tuples, not dataclasses, for this and :class:`PeerUpdate`: a 10k-peer converge makes
    10k of each, and a tuple is built in less than half the time.
    """

    public_key: str  # base64
    allowed_ips: frozenset[str]  # canonical CIDRs (host bits cleared)
    endpoint: str | None = None  # "1.2.3.4:51820" or "[fd00::1]:51820"; None: leave as it is
    keepalive: int = 0
    preshared_key: str | None = None  # base64; None: no preshared key
    routes: frozenset[str] = frozenset()  # canonical CIDRs routed via the interface


@dataclass
class DeviceState:
    """A device's settings and peers as read back from it."""

    private_key: str | None = None  # base64
    listen_port: int = 0
    fwmark: int = 0
    peers: dict[str, PeerState] = field(default_factory=dict)


class PeerUpdate(NamedTuple):
    """One peer entry of a set transaction."""

    public_key: str
    remove: bool = False
    update_only: bool = False
    replace_allowed_ips: bool = False
    allowed_ips: tuple[str, ...] = ()
    endpoint: str | None = None
    keepalive: int | None = None
    preshared_key: str | None = None  # base64; "" clears it


@dataclass
class DeviceUpdate:
    """One set transaction: device settings first, then peers."""

    listen_port: int | None = None
    private_key: str | None = None
    fwmark: int | None = None
    peers: list[PeerUpdate] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return (
            self.listen_port is None
            and self.private_key is None
            and self.fwmark is None
            and not self.peers
        )


def peer_update(want: PeerState, have: PeerState | None) -> PeerUpdate | None:
    """The entry that turns ``have`` into ``want`` (None when they already agree)."""
    if have is None:
        return PeerUpdate(
            public_key=want.public_key,
            allowed_ips=tuple(sorted(want.allowed_ips)),
            endpoint=want.endpoint,
            keepalive=want.keepalive or None,
            preshared_key=want.preshared_key,
        )
    ips_changed = want.allowed_ips != have.allowed_ips
    endpoint = want.endpoint if want.endpoint not in (None, have.endpoint) else None
    keepalive = want.keepalive if want.keepalive != have.keepalive else None
    psk = (want.preshared_key or "") if want.preshared_key != have.preshared_key else None
    if not ips_changed and endpoint is None and keepalive is None and psk is None:
        return None
    return PeerUpdate(
        public_key=want.public_key,
        update_only=True,
        replace_allowed_ips=ips_changed,
        allowed_ips=tuple(sorted(want.allowed_ips)) if ips_changed else (),
        endpoint=endpoint,
        keepalive=keepalive,
        preshared_key=psk,
    )


@dataclass
class PeerDiff:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    updates: list[PeerUpdate] = field(default_factory=list)


def diff_peers(have: dict[str, PeerState], want: dict[str, PeerState]) -> PeerDiff:
    """Entries that make a device holding ``have`` hold exactly ``want``."""
    diff = PeerDiff()
    for key, peer in want.items():
        current = have.get(key)
        update = peer_update(peer, current)
        if update is None:
            continue
        diff.updates.append(update)
        (diff.added if current is None else diff.updated).append(key)
    for key in have.keys() - want.keys():
        diff.removed.append(key)
        diff.updates.append(PeerUpdate(public_key=key, remove=True))
    return diff


class PeerIndex:
    """What we last knew to be on a device, so that touching one peer needs no full read.

    Kept by the driver between calls; rebuilt from the device whenever it is read in full.
    """

    def __init__(self, peers: dict[str, PeerState]) -> None:
        self.peers = peers
        self.owner: dict[str, str] = {
            ip: p.public_key for p in peers.values() for ip in p.allowed_ips
        }

    def put(self, peer: PeerState) -> None:
        """Record ``peer``; allowed IPs it takes over leave their previous owner, as on a device."""
        old = self.peers.get(peer.public_key)
        if old is not None:
            for ip in old.allowed_ips - peer.allowed_ips:
                self.owner.pop(ip, None)
        for ip in peer.allowed_ips:
            previous = self.owner.get(ip)
            if previous is not None and previous != peer.public_key:
                prev = self.peers[previous]
                self.peers[previous] = _without_ips(prev, {ip})
            self.owner[ip] = peer.public_key
        self.peers[peer.public_key] = peer

    def drop(self, key: str) -> PeerState | None:
        old = self.peers.pop(key, None)
        if old is not None:
            for ip in old.allowed_ips:
                if self.owner.get(ip) == key:
                    del self.owner[ip]
        return old


def _without_ips(peer: PeerState, ips: Iterable[str]) -> PeerState:
    gone = set(ips)
    return PeerState(
        public_key=peer.public_key,
        allowed_ips=peer.allowed_ips - gone,
        endpoint=peer.endpoint,
        keepalive=peer.keepalive,
        preshared_key=peer.preshared_key,
        routes=peer.routes - gone,
    )

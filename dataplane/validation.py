"""Checks of interface and peer specs, done in full before anything is sent to a device.

Every failure is a :class:`DataplaneError` with a code and the offending field, so that a
bad request leaves the device exactly as it was.
"""

from __future__ import annotations

import binascii
import ipaddress
import re
import socket
from collections.abc import Sequence

from dataplane.base import InterfaceSpec, PeerSpec
from dataplane.peer_state import PeerState
from elysium.errors import DataplaneError, ValidationError
from elysium.keys import normalize_key

IFNAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,15}$")
# A host route written the canonical way ("10.8.0.2/32"): the common case, checked fast.
_IPV4_HOST_RE = re.compile(
    r"^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}"
    r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)/32$"
)
_NO_ROUTES: frozenset[str] = frozenset()


def invalid(field: str, reason: str, code: str = "invalid") -> DataplaneError:
    """A caller error about one field (not retryable: the same request fails again)."""
    return DataplaneError(f"{field}: {reason}", code=code, fields={field: reason})


def check_ifname(name: object) -> str:
    if not isinstance(name, str) or not IFNAME_RE.match(name) or name in (".", ".."):
        raise invalid(
            "name", "must be 1-15 characters of letters, digits, '_', '-', '.'", "invalid_interface"
        )
    return name


def check_key(text: object, field: str) -> str:
    """The canonical base64 of a 32-byte key, or ``invalid_key``."""
    if isinstance(text, str) and len(text) == 44:  # fast path for keys already canonical
        try:
            raw = binascii.a2b_base64(text, strict_mode=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) == 32 and binascii.b2a_base64(raw, newline=False).decode() == text:
            return text
    try:
        return normalize_key(text, field)
    except ValidationError as exc:
        raise invalid(field, exc.fields.get(field, exc.message), "invalid_key") from None


def check_interface(spec: InterfaceSpec) -> None:
    """Reject an interface spec with a bad name, port, address, MTU or fwmark."""
    check_ifname(spec.name)
    port = spec.listen_port
    if port is not None and (not isinstance(port, int) or not 0 <= port <= 65535):
        raise invalid("listen_port", "must be 0-65535", "invalid_interface")
    if spec.mtu is not None and (not isinstance(spec.mtu, int) or not 576 <= spec.mtu <= 65535):
        raise invalid("mtu", "must be 576-65535", "invalid_interface")
    if spec.fwmark is not None and (
        not isinstance(spec.fwmark, int) or not 0 <= spec.fwmark <= 0xFFFFFFFF
    ):
        raise invalid("fwmark", "must be a 32-bit unsigned integer", "invalid_interface")
    for text in spec.addresses:
        parse_interface_address(text)


def parse_interface_address(text: object) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    if not isinstance(text, str) or "/" not in text:
        raise invalid("addresses", f"{text!r} must be an address with prefix", "invalid_address")
    try:
        return ipaddress.ip_interface(text)
    except ValueError as exc:
        raise invalid("addresses", str(exc), "invalid_address") from None


def canonical_cidr(text: object, field: str) -> str:
    """``10.1.2.3/24`` -> ``10.1.2.0/24``; a bare address gets its full prefix."""
    if not isinstance(text, str):
        raise invalid(field, f"{text!r} is not a CIDR string", "invalid_address")
    if _IPV4_HOST_RE.match(text):
        return text
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError as exc:
        raise invalid(field, str(exc), "invalid_address") from None


def canonical_endpoint(text: str) -> str:
    """``host:port`` as the ``ip:port`` / ``[ip6]:port`` a device reports (resolving a name)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) <= 65535 or not host:
        raise invalid("endpoint", f"{text!r} must be host:port", "invalid_endpoint")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, int(port_text), type=socket.SOCK_DGRAM)
        except OSError as exc:
            raise invalid(
                "endpoint", f"cannot resolve {host!r}: {exc}", "invalid_endpoint"
            ) from None
        infos.sort(key=lambda info: info[0] != socket.AF_INET)
        ip = ipaddress.ip_address(infos[0][4][0])
    return f"[{ip}]:{port_text}" if ip.version == 6 else f"{ip}:{port_text}"


def peer_state(spec: PeerSpec) -> PeerState:
    """A validated, canonical :class:`PeerState` for ``spec``."""
    key = check_key(spec.public_key, "public_key")
    ips = frozenset(canonical_cidr(ip, "allowed_ips") for ip in spec.allowed_ips)
    routes = _NO_ROUTES
    if spec.routes:  # most peers have none: skip building ip_network objects for them
        routes = frozenset(canonical_cidr(r, "routes") for r in spec.routes)
        _check_routes_covered(routes, ips)
    keepalive = spec.keepalive or 0
    if not isinstance(keepalive, int) or not 0 <= keepalive <= 65535:
        raise invalid("keepalive", "must be 0-65535", "invalid_peer")
    psk = check_key(spec.preshared_key, "preshared_key") if spec.preshared_key else None
    endpoint = canonical_endpoint(spec.endpoint) if spec.endpoint else None
    return PeerState(key, ips, endpoint, keepalive, psk, routes)


def _check_routes_covered(routes: frozenset[str], ips: frozenset[str]) -> None:
    """A route must lead into the peer: inside one of its allowed IPs (an exit's default
    route is installed as two halves of 0.0.0.0/0)."""
    nets = [ipaddress.ip_network(ip) for ip in ips]
    uncovered = sorted(
        r
        for r in routes
        if not any(
            n.version == (rn := ipaddress.ip_network(r)).version and rn.subnet_of(n)  # type: ignore[arg-type]
            for n in nets
        )
    )
    if uncovered:
        raise invalid("routes", f"{uncovered} must also be in allowed_ips", "invalid_address")


def desired_peers(
    peers: Sequence[PeerSpec], checked: dict[PeerSpec, PeerState] | None = None
) -> dict[str, PeerState]:
    """Validated peers keyed by public key; a key twice or an allowed IP twice is an error.

    ``checked`` holds specs validated by an earlier call (a converge usually repeats the last
    one's peers); an equal spec reuses its state. On success it is refilled with these peers.
    """
    out: dict[str, PeerState] = {}
    owner: dict[str, str] = {}
    reusable: dict[PeerSpec, PeerState] = {}
    known = checked.get if checked is not None else None
    for spec in peers:
        peer = None
        cacheable = False
        # 1.0 == True == 1 as dict keys: only an int keepalive may match or enter the cache.
        if known is not None and (spec.keepalive is None or type(spec.keepalive) is int):
            try:
                peer = known(spec)
                cacheable = True
            except TypeError:  # a list where a tuple belongs: unhashable, so checked in full
                peer = None
        if peer is None:
            peer = peer_state(spec)
        if peer.public_key in out:
            raise invalid("public_key", f"{peer.public_key} appears twice", "duplicate_peer")
        for ip in peer.allowed_ips:
            other = owner.setdefault(ip, peer.public_key)
            if other != peer.public_key:
                raise invalid("allowed_ips", f"{ip} is given to two peers", "duplicate_address")
        out[peer.public_key] = peer
        # An endpoint given by host name was resolved: that state may not hold next time.
        if cacheable and peer.endpoint == spec.endpoint:
            reusable[spec] = peer
    if checked is not None:
        checked.clear()
        checked.update(reusable)
    return out

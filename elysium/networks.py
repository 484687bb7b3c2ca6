"""Address plans: interface networks, routed subnets, and the allowed IPs each side gets."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Sequence

from elysium.errors import ValidationError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MIN_HOSTS = 4  # hub + at least one peer + network/broadcast

# Ranges no hub routes into a tunnel, and no interface network may touch: a routed subnet or
# an interface network overlapping one of them is refused (README, "Networks and subnets").
SPECIAL_RANGES: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(cidr), what)
    for cidr, what in (
        ("0.0.0.0/8", "unspecified ('this network')"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved (with the broadcast address 255.255.255.255)"),
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::ffff:0:0/96", "IPv4-mapped"),
        ("fe80::/10", "link-local"),
        ("ff00::/8", "multicast"),
    )
)


def special_range(net: IPNetwork) -> str | None:
    """Why ``net`` is no network to route or number an interface in, or None if it is fine."""
    for special, what in SPECIAL_RANGES:
        if special.version == net.version and net.overlaps(special):
            if net.subnet_of(special):  # type: ignore[arg-type]
                return f"is {what} ({special})"
            return f"overlaps {special}, which is {what}"
    return None


def parse_network(text: object, field: str, version: int) -> IPNetwork:
    """A CIDR of the given IP version, strict (no host bits), with room for peers."""
    if not isinstance(text, str):
        raise ValidationError(field, "must be a CIDR string such as 10.8.0.0/24")
    try:
        net = ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise ValidationError(field, f"is not a valid network: {exc}") from None
    if net.version != version:
        raise ValidationError(field, f"must be an IPv{version} network")
    if net.num_addresses < MIN_HOSTS:
        raise ValidationError(field, "is too small: it needs room for the hub and a peer")
    if version == 6 and net.prefixlen < 64:
        raise ValidationError(field, "must be /64 or longer")
    reason = special_range(net)
    if reason:
        raise ValidationError(field, f"{reason}: it cannot be an interface network")
    return net


def parse_subnets(values: object, field: str = "subnets") -> list[IPNetwork]:
    """Routed subnets a peer sits in front of: valid, strict, without duplicates, and none
    that no hub should route into a tunnel (default route, loopback, link-local, multicast,
    unspecified, reserved; see :data:`SPECIAL_RANGES`)."""
    if values is None:
        return []
    if not isinstance(values, list | tuple):
        raise ValidationError(field, "must be a list of CIDRs")
    if len(values) > 64:
        raise ValidationError(field, "at most 64 subnets")
    nets: list[IPNetwork] = []
    for i, text in enumerate(values):
        if not isinstance(text, str):
            raise ValidationError(f"{field}.{i}", "must be a CIDR string")
        try:
            net = ipaddress.ip_network(text, strict=True)
        except ValueError as exc:
            raise ValidationError(f"{field}.{i}", f"is not a valid network: {exc}") from None
        if net.prefixlen == 0:
            raise ValidationError(f"{field}.{i}", "a default route cannot be a routed subnet")
        reason = special_range(net)
        if reason:
            raise ValidationError(f"{field}.{i}", f"{reason}: no hub routes it into a tunnel")
        if net in nets:
            raise ValidationError(f"{field}.{i}", "is listed twice")
        nets.append(net)
    return nets


def check_subnets_outside(
    subnets: Iterable[IPNetwork], networks: Iterable[IPNetwork | None], field: str = "subnets"
) -> None:
    """Routed subnets must not overlap the interface's own networks."""
    own = [n for n in networks if n is not None]
    for i, sub in enumerate(subnets):
        for net in own:
            if sub.version == net.version and sub.overlaps(net):
                raise ValidationError(f"{field}.{i}", f"overlaps the interface network {net}")


def check_subnets_clear_of(
    subnets: Iterable[IPNetwork],
    addresses: Iterable[tuple[str, str]],
    field: str = "subnets",
) -> None:
    """Routed subnets must not cover the hub's own addresses (``(address, what)`` pairs, such
    as its endpoint or its underlay): routing them into the tunnel cuts the hub off."""
    own = [(ipaddress.ip_address(a), what) for a, what in addresses]
    for i, sub in enumerate(subnets):
        for addr, what in own:
            if addr.version == sub.version and addr in sub:
                raise ValidationError(f"{field}.{i}", f"covers {addr}, {what}")


def endpoint_address(endpoint: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address of a hub endpoint (host[:port], [v6]:port, bare v6); None for a name."""
    host = endpoint
    if host.startswith("["):
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def check_subnets_allowed(
    subnets: Iterable[IPNetwork], allowed: Sequence[IPNetwork], field: str = "subnets"
) -> None:
    """Every requested subnet must lie inside one an enrollment token allows."""
    for i, sub in enumerate(subnets):
        if not any(sub.version == a.version and sub.subnet_of(a) for a in allowed):  # type: ignore[arg-type]
            raise ValidationError(f"{field}.{i}", "is not allowed by the enrollment token")


def hub_address(net: IPNetwork) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    """The hub keeps the first host address, with the network's prefix."""
    return ipaddress.ip_interface(f"{net.network_address + 1}/{net.prefixlen}")


def hub_addresses(network: str, network6: str | None) -> list[str]:
    """The hub's own tunnel addresses on an interface, each with its network's prefix
    (``10.0.0.1/24``): the IPv4 one, then the IPv6 one when the interface has that network."""
    return list(_hub_addresses(network, network6))


# Pure functions of short strings that every config a fan-out answers computes again: kept.
@functools.lru_cache(maxsize=4096)
def _hub_addresses(network: str, network6: str | None) -> tuple[str, ...]:
    return tuple(str(hub_address(ipaddress.ip_network(n))) for n in (network, network6) if n)


@functools.lru_cache(maxsize=65536)
def _normal_network(text: str) -> str:
    return str(ipaddress.ip_network(text))


def last_offset(net: IPNetwork) -> int:
    """The highest usable host offset (IPv4 skips broadcast; IPv6 /64s are capped)."""
    size = net.num_addresses
    if net.version == 4:
        return size - 2
    return min(size - 1, 2**62)


def peer_allowed_ips(address: str, address6: str | None, subnets: Iterable[str]) -> list[str]:
    """What the hub accepts from a peer: its address(es) as host routes plus routed subnets."""
    out = [f"{ipaddress.ip_address(address)}/32"]
    if address6:
        out.append(f"{ipaddress.ip_address(address6)}/128")
    out.extend(str(ipaddress.ip_network(s)) for s in subnets)
    return out


def client_allowed_ips(
    network: str,
    network6: str | None,
    other_subnets: Iterable[str],
    routes: Iterable[str] = (),
    exit: bool = False,
) -> list[str]:
    """What a peer routes into the tunnel: the interface networks, other peers' subnets, the
    networks behind the hub (``routes``) and, through an exit hub, everything."""
    out = [_normal_network(network)]
    if network6:
        out.append(_normal_network(network6))
    for s in (*other_subnets, *routes, *(("0.0.0.0/0", "::/0") if exit else ())):
        text = _normal_network(s)
        if text not in out:
            out.append(text)
    return out


def endpoint_with_port(endpoint: str, port: int) -> str:
    """A hub endpoint as peers dial it: host:port, [v6]:port; the port added when missing."""
    if endpoint.startswith("["):
        return endpoint if "]:" in endpoint else f"{endpoint}:{port}"
    if endpoint.count(":") == 1:
        return endpoint
    if endpoint.count(":") > 1:  # a bare IPv6 address
        return f"[{endpoint}]:{port}"
    return f"{endpoint}:{port}"

"""Many hubs, one network: which meshed hubs are linked, what a mesh endpoint may look like,
and the rule that the networks of linked hubs never overlap.

A hub joins the mesh with a listen port and an endpoint the other hubs dial. By default it
links to every other meshed hub; ``peers`` narrows that to the hubs named (a link needs both
ends to agree). Each link is a WireGuard peer on the hub's mesh device, programmed by the
hub's own worker; the keys stay on their hubs.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from elysium.errors import Conflict, ValidationError
from elysium.networks import IPNetwork
from elysium.policy import IPAddress, Policy

MESH_DEVICE = "elymesh"  # the WireGuard device every meshed hub runs for its links
MESH_KEEPALIVE_S = 25  # links keep their NAT mappings open and handshake promptly
HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class MeshMember:
    """A meshed hub as the link rule sees it."""

    name: str
    peers: tuple[str, ...] | None = None  # None: every other meshed hub


def linked(a: MeshMember, b: MeshMember) -> bool:
    """Whether hubs ``a`` and ``b`` share a link: both meshed, and neither leaves out the other."""
    if a.name == b.name:
        return False
    return (a.peers is None or b.name in a.peers) and (b.peers is None or a.name in b.peers)


def links_of(hub: str, members: Iterable[MeshMember]) -> list[str]:
    """The names of the hubs ``hub`` is linked to, sorted (empty when it is not meshed)."""
    by_name = {m.name: m for m in members}
    me = by_name.get(hub)
    if me is None:
        return []
    return sorted(n for n, m in by_name.items() if linked(me, m))


def split_endpoint(endpoint: str, default_port: int) -> tuple[str, int]:
    """``host:port``, ``[v6]:port``, a bare host or IPv6 address: ``(host, port)``."""
    if endpoint.startswith("["):
        host, bracket, rest = endpoint[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"{endpoint!r}: a bracketed address needs ] and then :port")
        port = rest.removeprefix(":")
        return host, int(port) if port else default_port
    if endpoint.count(":") == 1:
        host, port = endpoint.split(":")
        return host, int(port)
    return endpoint, default_port


def parse_mesh_endpoint(value: object, listen_port: int, field: str = "endpoint") -> str:
    """A mesh endpoint other hubs can dial, written ``host:port`` (the listen port added when
    it has none); a :class:`ValidationError` names ``field`` otherwise."""
    why = "must be host[:port], [v6addr]:port or an IP address, with a port 1-65535"
    if not isinstance(value, str) or not value or len(value) > 255 or value != value.strip():
        raise ValidationError(field, why)
    try:
        host, port = split_endpoint(value, listen_port)
    except ValueError:
        raise ValidationError(field, why) from None
    if not 1 <= port <= 65535:
        raise ValidationError(field, why)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if not HOSTNAME.match(host) or host.replace(".", "").isdigit():
            raise ValidationError(field, why) from None
        return f"{host.lower()}:{port}"
    if address.is_unspecified or address.is_multicast:
        raise ValidationError(field, "must be an address other hubs can dial")
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"


def check_peers(hub: str, value: object, known: set[str], field: str = "peers") -> tuple[str, ...]:
    """The hubs a hub links to, when it names them: existing hubs, never itself."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationError(field, "must be a list of hub names")
    for i, name in enumerate(value):
        if name == hub:
            raise ValidationError(f"{field}.{i}", "a hub cannot be meshed with itself")
        if name not in known:
            raise ValidationError(f"{field}.{i}", f"no hub is named {name!r}")
    return tuple(sorted(set(value)))


def check_no_overlap(
    hub: str,
    mine: Sequence[tuple[str, str]],
    others: Mapping[str, Sequence[tuple[str, str]]],
    field: str = "mesh",
) -> None:
    """Linked hubs route each other's interface networks, so none may overlap: ``mine`` and
    each of ``others`` are ``(network, interface name)`` pairs. Raises 409 naming both."""
    parsed = [(ipaddress.ip_network(n), what) for n, what in mine]
    for other, nets in sorted(others.items()):
        for text, their in nets:
            net = ipaddress.ip_network(text)
            for own, what in parsed:
                if own.version == net.version and own.overlaps(net):
                    raise Conflict(
                        f"{hub}'s {what} network {own} overlaps {other}'s {their} network {net}",
                        code="mesh_networks_overlap",
                        fields={field: f"{what} {own} overlaps {other}/{their} {net}"},
                    )


def may_reach(
    policy: Policy, peer_id: int, tags: Iterable[str], addresses: Iterable[str], network: str
) -> bool:
    """Whether an interface's policy can let this peer reach anything in ``network`` (a
    network behind another hub), so the peer's allowed IPs should include it.

    Read from the rules in order, generously: a tag or peer on the far side, or a port
    limit, may allow something, so such rules count as allowing; only a rule that drops all
    of ``network`` for this peer before any rule allows part of it leaves it out. The hubs'
    firewalls decide each packet; this only keeps denied networks out of the peer's routes.
    """
    net = ipaddress.ip_network(network)
    own = [ipaddress.ip_address(a) for a in addresses]
    mine = {f"tag:{t}" for t in tags} | {f"peer:{peer_id}", "any"}
    for rule in policy.rules:
        if rule.dst in ("hub", "routes") or not _source_is(rule.src, mine, own):
            continue
        reach = _destination(rule.dst, net)
        if reach == "none":
            continue
        if rule.action == "accept":
            return True
        if reach == "all" and rule.proto is None:
            return False
    return policy.default == "accept"


def _source_is(selector: str, mine: set[str], own: list[IPAddress]) -> bool:
    if selector in mine:
        return True
    if selector.startswith(("tag:", "peer:")) or selector in ("hub", "routes"):
        return False
    src = ipaddress.ip_network(selector)
    return any(a.version == src.version and a in src for a in own)


def _destination(selector: str, net: IPNetwork) -> str:
    """How much of ``net`` a destination selector covers: all, some (maybe) or none."""
    if selector == "any":
        return "all"
    if selector.startswith(("tag:", "peer:")):
        return "some"
    dst = ipaddress.ip_network(selector)
    if dst.version != net.version or not dst.overlaps(net):
        return "none"
    return "all" if net.subnet_of(dst) else "some"  # type: ignore[arg-type]

"""Direct peer-to-peer paths: which candidates a peer may report, and which pairs of peers an
interface's policy lets exchange traffic (so that each learns the other's key and candidates).

Both read the same compiled policy the hub loads (``elysium.policy``): a pair the policy keeps
apart in both directions never learns each other's key or endpoint.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Any

from elysium.errors import ValidationError
from elysium.networks import IPNetwork, special_range
from elysium.policy import CompiledPolicy, Operand, SetIndex, SetMembers

MAX_CANDIDATES = 8


def parse_candidates(
    addresses: object,
    listen_port: object,
    networks: Sequence[IPNetwork],
    tunnel_addresses: Iterable[str],
) -> tuple[list[str], int]:
    """A peer's own addresses and WireGuard listen port as it reports them: at most
    :data:`MAX_CANDIDATES` addresses, none loopback, multicast, link-local, unspecified or
    reserved, none inside the interface's ``networks`` nor another peer's tunnel address
    (a 400 naming ``addresses.N`` or ``listen_port``)."""
    if not isinstance(listen_port, int) or isinstance(listen_port, bool):
        raise ValidationError("listen_port", "must be a port number")
    if not 1 <= listen_port <= 65535:
        raise ValidationError("listen_port", "must be 1 to 65535")
    if not isinstance(addresses, list):
        raise ValidationError("addresses", "must be a list of IP addresses")
    if len(addresses) > MAX_CANDIDATES:
        raise ValidationError("addresses", f"at most {MAX_CANDIDATES} addresses")
    tunnels = {ipaddress.ip_address(a) for a in tunnel_addresses}
    out: list[str] = []
    for i, text in enumerate(addresses):
        field = f"addresses.{i}"
        try:
            addr = ipaddress.ip_address(text) if isinstance(text, str) else None
        except ValueError:
            addr = None
        if addr is None:
            raise ValidationError(field, "must be an IP address")
        why = special_range(ipaddress.ip_network(addr))
        if why:
            raise ValidationError(field, why)
        if any(addr.version == n.version and addr in n for n in networks):
            raise ValidationError(field, "is inside the interface's tunnel network")
        if addr in tunnels:
            raise ValidationError(field, "is another peer's tunnel address")
        if str(addr) not in out:
            out.append(str(addr))
    return out, listen_port


def candidate_endpoints(
    hub_seen: str | None, addresses: Sequence[str], port: int | None
) -> list[str]:
    """The endpoints to try, in order: where the hub saw the peer, then its own addresses."""
    out = [hub_seen] if hub_seen else []
    if port:
        for text in addresses:
            addr = ipaddress.ip_address(text)
            endpoint = f"[{addr}]:{port}" if addr.version == 6 else f"{addr}:{port}"
            if endpoint not in out:
                out.append(endpoint)
    return out


def may_flow(compiled: CompiledPolicy, sets: SetIndex, src: str, dst: str) -> bool:
    """Whether the policy can let any traffic go from peer address ``src`` to ``dst``.

    Generous, like ``elysium.mesh.may_reach``: the first matching rule that accepts (any
    protocol or port) allows; a matching drop of every protocol and port denies; a drop of some
    protocols or ports leaves the rest to later rules and the default."""
    src_ip, dst_ip = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    if src_ip.version != dst_ip.version:
        return False
    for rule in compiled.chain_rules("forward"):
        if rule.family not in (None, src_ip.version):
            continue
        if not (sets.matches(rule.src, src_ip) and sets.matches(rule.dst, dst_ip)):
            continue
        if rule.action == "accept":
            return True
        if rule.proto is None and not rule.ports:
            return False
    return compiled.default == "accept"


def may_talk(compiled: CompiledPolicy, sets: SetIndex, a: Sequence[str], b: Sequence[str]) -> bool:
    """Whether two peers (their tunnel addresses) may exchange any traffic, either way
    (``sets``: the policy's set members, indexed once for every pair)."""
    return any(
        may_flow(compiled, sets, x, y) or may_flow(compiled, sets, y, x) for x in a for y in b
    )


def rule_sources(compiled: CompiledPolicy, members: SetMembers) -> list[list[str] | None]:
    """Each compiled rule's source as set elements (``None``: any), in rule order: host
    addresses bare, networks as CIDRs, unique, in :func:`element_key` order. The same for
    every peer of the interface, so resolved once."""
    return [_elements(members, rule.src) for rule in compiled.rules]


def source_set(position: int) -> str:
    """The name of the set of addresses a peer's inbound rule at ``position`` (of the
    compiled rules) lets in: a join changes its elements, never the rules."""
    return f"src_{position}"


def inbound_rules(
    compiled: CompiledPolicy,
    sets: SetIndex,
    sources: Sequence[list[str] | None],
    own: Sequence[str],
    hub: Sequence[str],
) -> dict[str, Any]:
    """What a peer enforces itself on what reaches it (a direct path passes no hub): the
    compiled rules whose destination may be one of its ``own`` addresses, in order, each with
    its source from :func:`rule_sources` as a named set (``sets``: name -> elements; ``src``:
    its name, or ``None`` for any), so a peer joining a source changes set elements only.
    ``from_hub`` rules are the hub's output chain (default accept); the others its forward
    chain (the policy's default). ``hub``: the hub's tunnel addresses, so the peer tells the
    two apart."""
    mine = [ipaddress.ip_address(a) for a in own]
    rules: list[dict[str, Any]] = []
    named: dict[str, list[str]] = {}
    for position, (rule, src) in enumerate(zip(compiled.rules, sources, strict=True)):
        if rule.chain == "input":
            continue
        if not any(rule.family in (None, a.version) and sets.matches(rule.dst, a) for a in mine):
            continue
        name = None
        if src is not None:  # an empty set stays: it matches nobody until someone joins
            name = source_set(position)
            named[name] = src
        rules.append(
            {
                "index": rule.index,
                "from_hub": rule.chain == "output",
                "family": rule.family,
                "src": name,
                "proto": rule.proto,
                "ports": list(rule.ports),
                "action": rule.action,
            }
        )
    return {"default": compiled.default, "hub": [str(h) for h in hub], "sets": named,
            "rules": rules}  # fmt: skip


def element_key(element: str) -> tuple[int, int, int]:
    """The order of a source set's elements: family, then address, then prefix length."""
    net = ipaddress.ip_network(element, strict=False)
    return (net.version, int(net.network_address), net.prefixlen)


def _elements(members: SetMembers, operand: Operand | None) -> list[str] | None:
    if operand is None:
        return None
    texts = [operand.cidr] if operand.cidr is not None else [
        e for name in operand.sets for e in members.get(name, ())
    ]  # fmt: skip
    out = set()
    for text in texts:
        net = ipaddress.ip_network(text, strict=False)
        out.add(str(net.network_address) if net.num_addresses == 1 else str(net))
    return sorted(out, key=element_key)


class PeerClasses:
    """Peers grouped by how the policy sees their tunnel addresses: two peers of one class
    match the same side of the same rules, so they may talk with the same others and enforce
    the same inbound rules. Made once per state of an interface, it answers who gets whom
    with O(classes) policy checks per class instead of O(peers) per peer."""

    def __init__(
        self, compiled: CompiledPolicy, sets: SetIndex, tunnels: dict[int, Sequence[str]]
    ) -> None:
        self.compiled, self.sets = compiled, sets
        self.of: dict[int, int] = {}  # peer id -> its class
        self.members: list[list[int]] = []  # class -> its peers, in id order
        self.addresses: list[Sequence[str]] = []  # class -> one member's tunnel addresses
        found: dict[tuple[Any, ...], int] = {}
        for peer_id in sorted(tunnels):
            sig = tuple(self._signature(a) for a in tunnels[peer_id])
            cls = found.get(sig)
            if cls is None:
                cls = found[sig] = len(self.members)
                self.members.append([])
                self.addresses.append(tunnels[peer_id])
            self.of[peer_id] = cls
            self.members[cls].append(peer_id)

    def _signature(self, address: str) -> tuple[Any, ...]:
        addr = ipaddress.ip_address(address)
        rules = self.compiled.rules
        return (
            addr.version,
            tuple(self.sets.matches(r.src, addr) for r in rules),
            tuple(self.sets.matches(r.dst, addr) for r in rules),
        )

    def talks_with(self, cls: int) -> list[int]:
        """The peers (ids, in order; the class's own members too) a peer of ``cls`` may
        exchange any traffic with (:func:`may_talk`)."""
        mine = self.addresses[cls]
        return sorted(
            peer_id
            for other, members in enumerate(self.members)
            if may_talk(self.compiled, self.sets, mine, self.addresses[other])
            for peer_id in members
        )

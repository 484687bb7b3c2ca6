"""Access policy: tags, ordered rules, and the one compiled form that both the hub's firewall
loads and ``policy/check`` answers from, so the explanation never disagrees with the firewall.

A rule says ``from`` → ``to`` (``proto``, ``ports``) → ``accept``/``drop``. Selectors are
``tag:NAME``, ``peer:ID``, ``hub`` (the hub's tunnel addresses on the interface), ``routes``
(the networks the interface pushes to peers), ``any``, or a CIDR. Compiled, each selector is a
named set of addresses (or a literal CIDR), per IP family, so a peer joining a tag changes set
elements, never rules. Peers' host addresses live in hash sets (``wg0_t_ops_4``), their routed
subnets in interval sets (``wg0_t_ops_4n``): nft reads every interval set of the table before
it changes any element, so keeping the 10,000 host addresses out of interval sets keeps a
peer join O(1).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from elysium.errors import ValidationError
from elysium.networks import IPNetwork
from elysium.tags import check_tag

PROTOS = ("tcp", "udp", "icmp")
ACTIONS = ("accept", "drop")
MAX_RULES = 5_000
MAX_PORTS = 64
CHAINS = ("forward", "input", "output")
DEFAULT_RULE = -1  # the counter key of an interface's default verdict

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
SetMembers = dict[str, list[str]]


@dataclass(frozen=True)
class Rule:
    """One policy rule; ``src``/``dst`` are selectors in their canonical text form."""

    src: str
    dst: str
    proto: str | None
    ports: tuple[str, ...]
    action: str


@dataclass(frozen=True)
class Policy:
    """An interface's ordered rules and the verdict when none matches."""

    rules: tuple[Rule, ...] = ()
    default: str = "drop"


DEFAULT_POLICY = Policy()


@dataclass(frozen=True)
class PeerMembership:
    """What the firewall needs of a peer: its tags and its addresses (tunnel + routed)."""

    peer_id: int
    tags: tuple[str, ...]
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class SetSpec:
    """A named set the compiled policy needs: hash of addresses, or interval of networks."""

    name: str
    family: int
    interval: bool


@dataclass(frozen=True)
class Operand:
    """One side of a compiled match: the address is in any of ``sets``, or in ``cidr``."""

    sets: tuple[str, ...] = ()
    cidr: str | None = None


@dataclass(frozen=True)
class CompiledRule:
    """One policy rule for one IP family (``None``: both, when neither side names one);
    ``None`` operands match any address."""

    index: int
    chain: str
    family: int | None
    src: Operand | None
    dst: Operand | None
    proto: str | None
    ports: tuple[str, ...]
    action: str


@dataclass(frozen=True)
class CompiledPolicy:
    """What a hub loads for one interface; ``prefix`` starts every set and counter name."""

    interface: str
    prefix: str
    default: str
    rules: tuple[CompiledRule, ...]
    sets: tuple[SetSpec, ...]

    def chain_rules(self, chain: str) -> tuple[CompiledRule, ...]:
        return tuple(r for r in self.rules if r.chain == chain)

    def default_for(self, chain: str) -> str:
        """Forwarded traffic gets the policy's default; traffic to or from the hub passes."""
        return self.default if chain == "forward" else "accept"


@dataclass(frozen=True)
class Decision:
    """The verdict for one flow and the rule that gave it (``None``: the default did)."""

    action: str
    rule: int | None


# ---------------------------------------------------------------- parsing the API body


def parse_policy(body: object, *, known_tags: set[str], known_peers: set[int]) -> Policy:
    """The API body ``{"default", "rules": [{"from", "to", "proto", "ports", "action"}]}`` as
    a :class:`Policy`; a :class:`ValidationError` names the first wrong field."""
    if not isinstance(body, dict):
        raise ValidationError("body", "must be an object with default and rules")
    _no_unknown_keys(body, {"default", "rules"}, "")
    default = body.get("default", "drop")
    if default not in ACTIONS:
        raise ValidationError("default", "must be accept or drop")
    rules = body.get("rules", [])
    if not isinstance(rules, list):
        raise ValidationError("rules", "must be a list of rules")
    if len(rules) > MAX_RULES:
        raise ValidationError("rules", f"at most {MAX_RULES} rules")
    parsed = tuple(
        _parse_rule(r, f"rules.{i}", known_tags, known_peers) for i, r in enumerate(rules)
    )
    return Policy(rules=parsed, default=default)


def policy_to_json(policy: Policy) -> dict[str, Any]:
    """The API form of a policy (what :func:`parse_policy` reads back to the same value)."""
    return {
        "default": policy.default,
        "rules": [
            {
                "from": r.src,
                "to": r.dst,
                "proto": r.proto,
                "ports": list(r.ports),
                "action": r.action,
            }
            for r in policy.rules
        ],
    }


def policy_from_json(data: dict[str, Any]) -> Policy:
    """A policy as stored (``policy_to_json``'s form, validated when it was written). Tags
    and peers it names need not exist any more: their sets are then empty."""
    rules = tuple(
        Rule(
            src=r["from"],
            dst=r["to"],
            proto=r.get("proto"),
            ports=tuple(r.get("ports") or ()),
            action=r["action"],
        )
        for r in data.get("rules", [])
    )
    return Policy(rules=rules, default=data.get("default", "drop"))


def _no_unknown_keys(body: dict[str, Any], allowed: set[str], where: str) -> None:
    for key in body:
        if key not in allowed:
            raise ValidationError(f"{where}{key}", "is not a known field")


def _parse_rule(raw: object, at: str, known_tags: set[str], known_peers: set[int]) -> Rule:
    if not isinstance(raw, dict):
        raise ValidationError(at, "must be an object with from, to, proto, ports, action")
    _no_unknown_keys(raw, {"from", "to", "proto", "ports", "action"}, f"{at}.")
    src = parse_selector(raw.get("from"), f"{at}.from", known_tags, known_peers)
    dst = parse_selector(raw.get("to"), f"{at}.to", known_tags, known_peers)
    proto = raw.get("proto")
    if proto == "any":
        proto = None
    if proto is not None and proto not in PROTOS:
        raise ValidationError(f"{at}.proto", "must be tcp, udp, icmp or any")
    ports = _parse_ports(raw.get("ports"), f"{at}.ports", proto)
    action = raw.get("action")
    if action not in ACTIONS:
        raise ValidationError(f"{at}.action", "must be accept or drop")
    _check_can_match(src, dst, f"{at}.to")
    return Rule(src=src, dst=dst, proto=proto, ports=ports, action=action)


def parse_selector(value: object, field: str, known_tags: set[str], known_peers: set[int]) -> str:
    """A selector's canonical text: ``tag:ops``, ``peer:42``, ``hub``, ``routes``, ``any``, or
    a CIDR written as :mod:`ipaddress` writes it (``10.0.0.5`` becomes ``10.0.0.5/32``)."""
    if not isinstance(value, str):
        raise ValidationError(field, "must be tag:NAME, peer:ID, hub, routes, any or a CIDR")
    if value in ("hub", "routes", "any"):
        return value
    if value.startswith("tag:"):
        tag = check_tag(field, value[4:])
        if tag not in known_tags:
            raise ValidationError(
                field, f"no peer or token of this interface or a linked hub has the tag {tag!r}"
            )
        return f"tag:{tag}"
    if value.startswith("peer:"):
        text = value[5:]
        if not text.isdigit() or int(text) not in known_peers:
            raise ValidationError(field, f"is not a peer of this interface: {text!r}")
        return f"peer:{int(text)}"
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError as exc:
        raise ValidationError(
            field, f"is not tag:NAME, peer:ID, hub, routes, any or a valid CIDR ({exc})"
        ) from None


def _parse_ports(raw: object, field: str, proto: str | None) -> tuple[str, ...]:
    if raw is None or raw == []:
        return ()
    if proto not in ("tcp", "udp"):
        raise ValidationError(field, "ports need proto tcp or udp")
    if not isinstance(raw, list):
        raise ValidationError(field, 'must be a list such as ["22", "8000-8100"]')
    if len(raw) > MAX_PORTS:
        raise ValidationError(field, f"at most {MAX_PORTS} entries")
    spans = [_parse_port(p, f"{field}.{i}") for i, p in enumerate(raw)]
    return tuple(f"{lo}" if lo == hi else f"{lo}-{hi}" for lo, hi in _merge(spans))


def _parse_port(raw: object, field: str) -> tuple[int, int]:
    text = str(raw) if isinstance(raw, int) and not isinstance(raw, bool) else raw
    if not isinstance(text, str):
        raise ValidationError(field, 'must be a port or a range such as "8000-8100"')
    lo_text, dash, hi_text = text.partition("-")
    if not lo_text.isdigit() or (dash and not hi_text.isdigit()):
        raise ValidationError(field, 'must be a port or a range such as "8000-8100"')
    lo, hi = int(lo_text), int(hi_text or lo_text)
    if not (1 <= lo <= 65535 and 1 <= hi <= 65535):
        raise ValidationError(field, "ports are 1 to 65535")
    if hi < lo:
        raise ValidationError(field, "the range is reversed")
    return lo, hi


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Overlapping or adjacent port ranges as one (nft refuses overlapping set elements)."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(spans):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _check_can_match(src: str, dst: str, field: str) -> None:
    """Refuse rules that no packet through this interface's chains can ever match."""
    if src in ("hub", "routes") and dst in ("hub", "routes"):
        raise ValidationError(field, f"traffic from {src} to {dst} never crosses the interface")
    if src.startswith("peer:") and src == dst:
        raise ValidationError(field, "a peer's traffic to itself never crosses the hub")
    src_net, dst_net = _cidr(src), _cidr(dst)
    if src_net is not None and dst_net is not None:
        if src_net.version != dst_net.version:
            raise ValidationError(
                field, f"is IPv{dst_net.version} but from is IPv{src_net.version}: never matches"
            )
        if src_net == dst_net and src_net.num_addresses == 1:
            raise ValidationError(field, "an address's traffic to itself never crosses the hub")


def _cidr(selector: str) -> IPNetwork | None:
    if ":" in selector and selector.split(":", 1)[0] in ("tag", "peer"):
        return None
    if selector in ("hub", "routes", "any"):
        return None
    return ipaddress.ip_network(selector)


# ---------------------------------------------------------------- compiling


def set_prefix(interface: str) -> str:
    """The start of every nft name for an interface: the interface name, made a valid nft
    identifier (letters first; interface names may start with a digit)."""
    return interface if interface[:1].isalpha() else f"_{interface}"


def tag_sets(prefix: str, tag: str, family: int) -> tuple[str, str]:
    return f"{prefix}_t_{tag}_{family}", f"{prefix}_t_{tag}_{family}n"


def peer_sets(prefix: str, peer_id: int, family: int) -> tuple[str, str]:
    return f"{prefix}_p_{peer_id}_{family}", f"{prefix}_p_{peer_id}_{family}n"


def hub_set(prefix: str, family: int) -> str:
    return f"{prefix}_hub_{family}"


def routes_set(prefix: str, family: int) -> str:
    return f"{prefix}_routes_{family}"


def counter_name(prefix: str, index: int) -> str:
    """The named counter of a rule (shared by its IPv4 and IPv6 forms), or of the default."""
    return f"{prefix}_default" if index == DEFAULT_RULE else f"{prefix}_r{index}"


def _operand(prefix: str, selector: str, family: int) -> tuple[Operand | None, bool]:
    """The operand of ``selector`` for ``family`` and whether the selector has that family."""
    if selector == "any":
        return None, True
    if selector == "hub":
        return Operand(sets=(hub_set(prefix, family),)), True
    if selector == "routes":
        return Operand(sets=(routes_set(prefix, family),)), True
    if selector.startswith("tag:"):
        return Operand(sets=tag_sets(prefix, selector[4:], family)), True
    if selector.startswith("peer:"):
        return Operand(sets=peer_sets(prefix, int(selector[5:]), family)), True
    net = ipaddress.ip_network(selector)
    return Operand(cidr=str(net)), net.version == family


def _set_specs(selector: str, operand: Operand | None, family: int) -> list[SetSpec]:
    """Host sets are hashes; routed subnets and routes go in interval sets."""
    if operand is None:
        return []
    return [
        SetSpec(name=name, family=family, interval=selector == "routes" or name.endswith("n"))
        for name in operand.sets
    ]


def _chain(rule: Rule) -> str:
    if rule.dst == "hub":
        return "input"
    if rule.src == "hub":
        return "output"
    return "forward"


def compile_policy(interface: str, policy: Policy) -> CompiledPolicy:
    """The policy as nft-shaped data: per rule and family, set names or literals to match."""
    prefix = set_prefix(interface)
    compiled: list[CompiledRule] = []
    sets: dict[str, SetSpec] = {}
    for index, rule in enumerate(policy.rules):
        chain = _chain(rule)
        if rule.src == "any" and rule.dst == "any":
            forms: list[tuple[int | None, Operand | None, Operand | None]] = [(None, None, None)]
        else:
            forms = []
            for family in (4, 6):
                src, src_ok = _operand(prefix, rule.src, family)
                dst, dst_ok = _operand(prefix, rule.dst, family)
                if src_ok and dst_ok:
                    forms.append((family, src, dst))
                    for spec in [
                        *_set_specs(rule.src, src, family),
                        *_set_specs(rule.dst, dst, family),
                    ]:
                        sets[spec.name] = spec
        compiled.extend(
            CompiledRule(index, chain, family, src, dst, rule.proto, rule.ports, rule.action)
            for family, src, dst in forms
        )
    return CompiledPolicy(
        interface=interface,
        prefix=prefix,
        default=policy.default,
        rules=tuple(compiled),
        sets=tuple(sorted(sets.values(), key=lambda s: s.name)),
    )


# ---------------------------------------------------------------- set members


def members_for(
    interface: str,
    peers: Iterable[PeerMembership],
    routes: list[str],
    hub_addresses: list[str],
) -> SetMembers:
    """Every set's elements: tag and peer sets from the peers (host addresses apart from
    routed subnets), ``routes`` (merged), and the hub's tunnel addresses (``10.0.0.1/24``
    or bare). Sets no rule names are listed too; the firewall loads only the ones it needs."""
    prefix = set_prefix(interface)
    out: SetMembers = {}
    for peer in peers:
        for text in peer.addresses:
            net = ipaddress.ip_network(text, strict=False)
            host = net.num_addresses == 1
            element = str(net.network_address) if host else str(net)
            slot = 0 if host else 1
            for tag in peer.tags:
                out.setdefault(tag_sets(prefix, tag, net.version)[slot], []).append(element)
            out.setdefault(peer_sets(prefix, peer.peer_id, net.version)[slot], []).append(element)
    nets = [ipaddress.ip_network(r, strict=False) for r in routes]
    for family in (4, 6):
        merged = ipaddress.collapse_addresses(n for n in nets if n.version == family)  # type: ignore[type-var]
        elements = [str(n) for n in merged]
        if elements:
            out[routes_set(prefix, family)] = elements
    for text in hub_addresses:
        addr = ipaddress.ip_interface(text).ip
        out.setdefault(hub_set(prefix, addr.version), []).append(str(addr))
    return out


# ---------------------------------------------------------------- explaining a verdict


def check(
    compiled: CompiledPolicy,
    members: SetMembers,
    src: str,
    dst: str,
    proto: str | None,
    port: int | None,
) -> Decision:
    """The verdict the hub's firewall gives a new flow ``src`` → ``dst`` (addresses), read
    from the same compiled rules it loads: first match wins, else the chain's default."""
    src_ip = _address(src, "from")
    dst_ip = _address(dst, "to")
    if proto is not None and proto not in PROTOS:
        raise ValidationError("proto", "must be tcp, udp, icmp or empty for any")
    if port is not None and (proto not in ("tcp", "udp") or not 1 <= port <= 65535):
        raise ValidationError("port", "is 1 to 65535 and needs proto tcp or udp")
    if src_ip.version != dst_ip.version:
        raise ValidationError("to", "is not of the same IP family as from")
    sets = SetIndex(members)
    hub = hub_set(compiled.prefix, dst_ip.version)
    if sets.contains(hub, dst_ip):
        chain = "input"
    elif sets.contains(hub, src_ip):
        chain = "output"
    else:
        chain = "forward"
    for rule in compiled.chain_rules(chain):
        if rule.family not in (None, src_ip.version):
            continue
        if rule.proto is not None and rule.proto != proto:
            continue
        if rule.ports and (port is None or not _port_in(port, rule.ports)):
            continue
        if sets.matches(rule.src, src_ip) and sets.matches(rule.dst, dst_ip):
            return Decision(action=rule.action, rule=rule.index)
    return Decision(action=compiled.default_for(chain), rule=None)


def _address(text: str, field: str) -> IPAddress:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise ValidationError(field, "must be an IP address") from None


def _port_in(port: int, ports: tuple[str, ...]) -> bool:
    for span in ports:
        lo, _, hi = span.partition("-")
        if int(lo) <= port <= int(hi or lo):
            return True
    return False


class SetIndex:
    """Set members parsed once, on first use: host addresses in a hash set (a lookup is
    O(1) however many peers a tag holds), networks in a list."""

    def __init__(self, members: SetMembers) -> None:
        self._members = members
        self._parsed: dict[str, tuple[set[IPAddress], list[IPNetwork]]] = {}

    def contains(self, name: str, addr: IPAddress) -> bool:
        parsed = self._parsed.get(name)
        if parsed is None:
            hosts: set[IPAddress] = set()
            nets: list[IPNetwork] = []
            for m in self._members.get(name, ()):
                net = ipaddress.ip_network(m, strict=False)
                if net.num_addresses == 1:
                    hosts.add(net.network_address)
                else:
                    nets.append(net)
            parsed = self._parsed[name] = (hosts, nets)
        hosts, nets = parsed
        return addr in hosts or any(addr.version == n.version and addr in n for n in nets)

    def matches(self, operand: Operand | None, addr: IPAddress) -> bool:
        if operand is None:
            return True
        if operand.cidr is not None:
            return addr in ipaddress.ip_network(operand.cidr)
        return any(self.contains(name, addr) for name in operand.sets)

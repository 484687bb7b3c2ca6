"""Elysium's nftables table as ``nft -f`` text, rendered from each interface's compiled policy.

Per interface ``wg0``: a base chain ``wg0_forward`` on the forward hook (``ct state
established,related accept``, the rules in order, the default), ``wg0_input``/``wg0_output``
for rules to and from ``hub`` (default accept), ``wg0_nat`` masquerading what leaves through
the NAT device, named sets of addresses, and a named counter per policy rule. One chain
``mss_clamp`` for all of them clamps the MSS of forwarded TCP to the route's MTU: a tunnel's
MTU is smaller than the LANs' behind it, and ICMP "fragmentation needed" is often dropped on
the way. The text replaces the table in one transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from elysium.policy import (
    DEFAULT_RULE,
    CompiledPolicy,
    CompiledRule,
    Operand,
    SetMembers,
    SetSpec,
    counter_name,
)

TABLE = "inet elysium"


@dataclass
class InterfaceFirewall:
    """What the hub enforces on one interface: its compiled policy, the elements of its sets,
    its networks (what NAT masquerades) and the NAT egress device, if any."""

    name: str
    compiled: CompiledPolicy
    members: SetMembers
    networks: tuple[str, ...]
    nat_egress: str | None = None


def rule_indexes(compiled: CompiledPolicy) -> list[int]:
    """The indexes that have a counter: every rule's, and the default's."""
    return sorted({r.index for r in compiled.rules} | {DEFAULT_RULE})


def render_table(
    interfaces: Iterable[InterfaceFirewall], counts: dict[str, tuple[int, int]] | None = None
) -> str:
    """The ``nft -f`` text that replaces the table: create if missing, delete, recreate.
    ``counts``: counters that start where the replaced table's left off."""
    interfaces = list(interfaces)
    out = [f"add table {TABLE}", f"delete table {TABLE}", f"table {TABLE} {{"]
    for ifw in interfaces:
        out.extend(render_interface(ifw, counts or {}))
    out.extend(render_mss_clamp([ifw.name for ifw in interfaces]))
    out.append("}")
    return "\n".join(out) + "\n"


def render_mss_clamp(names: list[str]) -> list[str]:
    """SYNs forwarded into or out of Elysium's interfaces announce at most the MSS the route's
    MTU allows (both directions: the LAN host's SYN and the peer's)."""
    if not names:
        return []
    devices = ", ".join(json.dumps(n) for n in names)
    syn = "tcp flags syn / syn,rst tcp option maxseg size set rt mtu"
    return [
        "chain mss_clamp {",
        "type filter hook forward priority mangle; policy accept;",
        f"iifname {{ {devices} }} {syn}",
        f"oifname {{ {devices} }} {syn}",
        "}",
    ]


def render_interface(
    ifw: InterfaceFirewall, counts: dict[str, tuple[int, int]] | None = None
) -> list[str]:
    c = ifw.compiled
    out = []
    for i in rule_indexes(c):
        name = counter_name(c.prefix, i)
        packets, octets = (counts or {}).get(name, (0, 0))
        start = f" packets {packets} bytes {octets}" if packets or octets else ""
        out.append(f"counter {name} {{{start}\n}}")
    for spec in c.sets:
        kind = "ipv4_addr" if spec.family == 4 else "ipv6_addr"
        flags = " flags interval;" if spec.interval else ""
        elements = ifw.members.get(spec.name)
        body = f" elements = {{ {element_text(spec, elements)} }}" if elements else ""
        out.append(f"set {spec.name} {{ type {kind};{flags}{body}\n}}")
    name = json.dumps(ifw.name)
    out.append(f"chain {c.prefix}_forward {{")
    out.append("type filter hook forward priority filter; policy accept;")
    out.append(f"iifname != {name} oifname != {name} return")
    out.append("ct state established,related accept")
    out.extend(render_rule(c.prefix, r) for r in c.chain_rules("forward"))
    out.append(f'counter name "{counter_name(c.prefix, DEFAULT_RULE)}" {c.default}')
    out.append("}")
    for chain, hook, match in (("input", "input", "iifname"), ("output", "output", "oifname")):
        rules = c.chain_rules(chain)
        if rules:
            out.append(f"chain {c.prefix}_{chain} {{")
            out.append(f"type filter hook {hook} priority filter; policy accept;")
            out.append(f"{match} != {name} return")
            out.append("ct state established,related accept")
            out.extend(render_rule(c.prefix, r) for r in rules)
            out.append("}")
    if ifw.nat_egress:
        out.extend(_render_nat(c.prefix, ifw))
    return out


def _render_nat(prefix: str, ifw: InterfaceFirewall) -> list[str]:
    device = json.dumps(ifw.nat_egress)
    out = [f"chain {prefix}_nat {{", "type nat hook postrouting priority srcnat; policy accept;"]
    for family, keyword in ((4, "ip"), (6, "ip6")):
        nets = [n for n in ifw.networks if (":" in n) == (family == 6)]
        if nets:
            out.append(f"oifname {device} {keyword} saddr {{ {', '.join(nets)} }} masquerade")
    out.append("}")
    return out


def render_rule(prefix: str, rule: CompiledRule) -> str:
    """One policy rule for one family; a selector with two sets (hosts and subnets) becomes
    one nft rule per combination, all sharing the rule's counter."""
    keyword = "ip" if rule.family == 4 else "ip6"
    tail = f'{_l4(rule)}counter name "{counter_name(prefix, rule.index)}" {rule.action}'
    lines = [
        f"{src}{dst}{tail}"
        for src in _matches(keyword, "saddr", rule.src)
        for dst in _matches(keyword, "daddr", rule.dst)
    ]
    return "\n".join(lines)


def _matches(keyword: str, field: str, operand: Operand | None) -> list[str]:
    if operand is None:
        return [""]
    if operand.cidr is not None:
        return [f"{keyword} {field} {operand.cidr} "]
    return [f"{keyword} {field} @{name} " for name in operand.sets]


def _l4(rule: CompiledRule) -> str:
    if rule.proto is None:
        return ""
    if rule.proto == "icmp":
        return {4: "meta l4proto icmp ", 6: "meta l4proto ipv6-icmp "}.get(
            rule.family or 0, "meta l4proto { icmp, ipv6-icmp } "
        )
    if not rule.ports:
        return f"meta l4proto {rule.proto} "
    ports = rule.ports[0] if len(rule.ports) == 1 else f"{{ {', '.join(rule.ports)} }}"
    return f"{rule.proto} dport {ports} "


def element_text(spec: SetSpec, elements: Iterable[str]) -> str:
    """Set elements as nft reads them: bare addresses in hash sets."""
    if spec.interval:
        return ", ".join(elements)
    return ", ".join(e.split("/", 1)[0] for e in elements)

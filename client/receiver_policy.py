"""The policy where traffic lands: on a direct interface the peer enforces, in an nftables
table of its own (``inet elysium_peer``), the interface's rules whose destination is this
peer (the config's ``inbound``, from the same compiled form the hub loads), on what comes in
through its tunnel: established and related first, then what the hub may send (the hub's
output rules, default accept), then the rules in order, then the policy's default. A direct
path passes no hub; traffic the hub relays meets the same rules twice and the same verdict.
One ``nft -f`` transaction replaces the table whole; ``remove`` deletes it.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
from typing import Any

from elysium.errors import DataplaneError
from elysium.netns import netns_exec

TABLE = "elysium_peer"
DEFAULT_COUNTER = "default"


def counter(index: int) -> str:
    return f"rule_{index}"


def _family_sources(rule: dict[str, Any]) -> list[tuple[str, str]]:
    """(keyword, match) pairs for the rule's sources: ``("", "")`` for any source."""
    src = rule["src"]
    families = (4, 6) if rule["family"] is None else (rule["family"],)
    if src is None:
        if rule["family"] is None:
            return [("", "")]
        keyword = "ip" if rule["family"] == 4 else "ip6"
        return [(keyword, f"meta nfproto {'ipv4' if keyword == 'ip' else 'ipv6'} ")]
    out = []
    for family in families:
        nets = [n for n in src if ipaddress.ip_network(n).version == family]
        if nets:
            keyword = "ip" if family == 4 else "ip6"
            out.append((keyword, f"{keyword} saddr {{ {', '.join(nets)} }} "))
    return out


def _l4(rule: dict[str, Any], keyword: str) -> str:
    proto, ports = rule["proto"], rule["ports"]
    if proto is None:
        return ""
    if proto == "icmp":
        return {"ip": "meta l4proto icmp ", "ip6": "meta l4proto ipv6-icmp "}.get(
            keyword, "meta l4proto { icmp, ipv6-icmp } "
        )
    if not ports:
        return f"meta l4proto {proto} "
    return f"{proto} dport {{ {', '.join(ports)} }} "


def render_rule(rule: dict[str, Any]) -> list[str]:
    tail = f'counter name "{counter(rule["index"])}" {rule["action"]}'
    return [f"{match}{_l4(rule, keyword)}{tail}" for keyword, match in _family_sources(rule)]


def render(interface: str, inbound: dict[str, Any]) -> str:
    """The whole table as one ``nft -f`` script (it replaces any table of that name)."""
    name = json.dumps(interface)
    rules = inbound["rules"]
    lines = [f"table inet {TABLE} {{}}", f"delete table inet {TABLE}", f"table inet {TABLE} {{"]
    for index in sorted({r["index"] for r in rules}):
        lines.append(f"counter {counter(index)} {{ }}")
    lines.append(f"counter {DEFAULT_COUNTER} {{ }}")
    lines += ["chain from_hub {"]
    for rule in (r for r in rules if r["from_hub"]):
        lines += render_rule(rule)
    lines += ["accept", "}"]
    lines += [
        "chain input {",
        "type filter hook input priority filter; policy accept;",
        f"iifname != {name} return",
        "ct state established,related accept",
    ]
    for hub in inbound["hub"]:
        keyword = "ip" if ipaddress.ip_address(hub).version == 4 else "ip6"
        lines.append(f"{keyword} saddr {hub} jump from_hub")
    for rule in (r for r in rules if not r["from_hub"]):
        lines += render_rule(rule)
    lines += [f'counter name "{DEFAULT_COUNTER}" {inbound["default"]}', "}", "}"]
    return "\n".join(lines) + "\n"


def _nft(netns: str | None, script: str) -> None:
    done = subprocess.run(
        [*netns_exec(netns), "nft", "-f", "-"],
        input=script,
        capture_output=True,
        text=True,
        timeout=30,
    )
    if done.returncode != 0:
        raise DataplaneError(
            f"nft refused the peer's table: {done.stderr.strip()[:300]}", code="nft_failed"
        )


def apply(netns: str | None, interface: str, inbound: dict[str, Any] | None) -> None:
    """Put the table in place for ``inbound`` (one transaction), or remove it (None)."""
    if inbound is None:
        remove(netns)
        return
    _nft(netns, render(interface, inbound))


def remove(netns: str | None) -> None:
    """The table gone (nothing to do when there is none, or no nftables on this host)."""
    if shutil.which("nft") is None:
        return
    _nft(netns, f"table inet {TABLE} {{}}\ndelete table inet {TABLE}\n")

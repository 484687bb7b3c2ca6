"""The policy where traffic lands: on a direct interface the peer enforces, in an nftables
table of its own (``inet elysium_peer``), the interface's rules whose destination is this
peer (the config's ``inbound``, from the same compiled form the hub loads), on what comes in
through its tunnel: established and related first, then what the hub may send (the hub's
output rules, default accept), then the rules in order, then the policy's default. A direct
path passes no hub; traffic the hub relays meets the same rules twice and the same verdict.
Each rule's sources are named sets of the table (``inbound["sets"]``; per family, host
addresses in a hash set, networks in an interval set), so a peer joining or leaving a source
is one ``add``/``delete element`` transaction, not a new table. Anything else that moves
replaces the table whole in one ``nft -f`` transaction; ``remove`` deletes it.
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


def set_name(name: str, family: int, interval: bool) -> str:
    """The table's set holding a source's host addresses (or networks) of one family."""
    return f"{name}_{family}{'n' if interval else ''}"


def _slot(element: str) -> tuple[int, bool]:
    net = ipaddress.ip_network(element, strict=False)
    return net.version, "/" in element


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
        keyword = "ip" if family == 4 else "ip6"
        for interval in (False, True):
            out.append((keyword, f"{keyword} saddr @{set_name(src, family, interval)} "))
    return out


def _sets(inbound: dict[str, Any]) -> list[str]:
    """The declarations of every source set, with its elements."""
    lines = []
    for name, elements in sorted(inbound.get("sets", {}).items()):
        for family in (4, 6):
            for interval in (False, True):
                kind = "ipv4_addr" if family == 4 else "ipv6_addr"
                flags = " flags interval;" if interval else ""
                mine = [e for e in elements if _slot(e) == (family, interval)]
                body = f" elements = {{ {', '.join(mine)} }};" if mine else ""
                lines.append(
                    f"set {set_name(name, family, interval)} {{ type {kind};{flags}{body} }}"
                )
    return lines


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
    lines += _sets(inbound)
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


def element_changes(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """The ``nft -f`` script that turns the table of ``old`` into that of ``new`` by set
    elements alone ("" when nothing moves), or None when more than elements moved."""
    if {k: v for k, v in old.items() if k != "sets"} != {
        k: v for k, v in new.items() if k != "sets"
    } or set(old.get("sets", {})) != set(new.get("sets", {})):
        return None
    lines = []
    for name, elements in sorted(new.get("sets", {}).items()):
        before, after = set(old["sets"][name]), set(elements)
        for verb, moved in (("delete", before - after), ("add", after - before)):
            by_set: dict[str, list[str]] = {}
            for e in sorted(moved):
                by_set.setdefault(set_name(name, *_slot(e)), []).append(e)
            for target, items in sorted(by_set.items()):
                lines.append(f"{verb} element inet {TABLE} {target} {{ {', '.join(items)} }}")
    return "\n".join(lines) + "\n" if lines else ""


def apply(
    netns: str | None,
    interface: str,
    inbound: dict[str, Any] | None,
    previous: dict[str, Any] | None = None,
) -> None:
    """Put the table in place for ``inbound`` (one transaction), or remove it (None).
    ``previous``: what the table holds now; when only source sets' elements moved from it,
    only they change (a table not as expected is replaced whole)."""
    if inbound is None:
        remove(netns)
        return
    script = element_changes(previous, inbound) if previous is not None else None
    if script == "":
        return
    if script is not None:
        try:
            _nft(netns, script)
            return
        except DataplaneError:
            pass  # the table is not what previous says (changed or gone): put it whole
    _nft(netns, render(interface, inbound))


def remove(netns: str | None) -> None:
    """The table gone (nothing to do when there is none, or no nftables on this host)."""
    if shutil.which("nft") is None:
        return
    _nft(netns, f"table inet {TABLE} {{}}\ndelete table inet {TABLE}\n")

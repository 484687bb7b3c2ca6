"""A peer's exit through its hub without capturing the tunnel's own packets, as wg-quick does
on Linux: the tunnel's UDP socket carries a firewall mark; the default route goes into a
routing table of Elysium's; ``not fwmark M lookup T`` sends everything else there, and
``lookup main suppress_prefixlength 0`` before it keeps the peer's own LAN routes (anything
more specific than a default route) in use. The marked packets to the hub's endpoint miss
the rule and leave by the peer's own default route, so a hub that is not on-link works.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pyroute2 import IPRoute

from client.errors import EXIT_FAILED, ClientError
from dataplane.links import open_iproute
from elysium.netns import netns_exec

TABLE_ENV = "ELYSIUM_CLIENT_ROUTE_TABLE"
FWMARK_ENV = "ELYSIUM_CLIENT_FWMARK"
DEFAULT_TABLE = 51820  # wg-quick's choice too: the listen port it would use
DEFAULT_FWMARK = 0xCA6C  # 51820
SUPPRESS_PRIORITY = 5210  # first: the main table without its default routes
EXIT_PRIORITY = 5211  # then: everything not marked goes to our table
FIB_RULE_INVERT = 0x2  # "not fwmark"
DEFAULTS: dict[int, str] = {socket.AF_INET: "0.0.0.0/0", socket.AF_INET6: "::/0"}


@dataclass(frozen=True)
class ExitRouting:
    """The routing table and firewall mark of a peer's exit."""

    table: int = DEFAULT_TABLE
    fwmark: int = DEFAULT_FWMARK

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ExitRouting:
        env = os.environ if environ is None else environ
        return cls(_number(env, TABLE_ENV, DEFAULT_TABLE), _number(env, FWMARK_ENV, DEFAULT_FWMARK))


def _number(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = int(raw, 0)
    except ValueError:
        value = 0
    if not 1 <= value <= 0xFFFFFFFF or (name == TABLE_ENV and value in (253, 254, 255)):
        raise ClientError(f"{name}={raw!r}: not a usable number", code="bad_setting", exit_code=2)
    return value


def exit_families(allowed_ips: list[str] | tuple[str, ...]) -> list[int]:
    """The address families the hub is this peer's exit for."""
    return [family for family, default in DEFAULTS.items() if default in allowed_ips]


def _ours(rule: Any, routing: ExitRouting) -> bool:
    prio = rule.get_attr("FRA_PRIORITY")
    return prio in (SUPPRESS_PRIORITY, EXIT_PRIORITY) and rule.get_attr("FRA_TABLE") in (
        routing.table,
        254,
    )


def check_free(ipr: IPRoute, routing: ExitRouting, ifindex: int) -> None:
    """Refuse (one line naming it) a table or mark that someone else's rules or routes use."""
    for family in DEFAULTS:
        for rule in ipr.get_rules(family=family):
            if _ours(rule, routing):
                continue
            if rule.get_attr("FRA_TABLE") == routing.table:
                raise _taken(f"routing table {routing.table} (an ip rule uses it)")
            if rule.get_attr("FRA_FWMARK") == routing.fwmark:
                raise _taken(f"firewall mark {routing.fwmark:#x} (an ip rule matches it)")
        for route in ipr.get_routes(family=family, table=routing.table):
            if (
                route.get_attr("RTA_TABLE") == routing.table
                and route.get_attr("RTA_OIF") != ifindex
            ):
                raise _taken(f"routing table {routing.table} (it holds routes of another device)")


def check(netns: str | None, ifname: str, routing: ExitRouting) -> None:
    """``check_free`` on its own socket, before the tunnel is touched."""
    ipr = open_iproute(netns)
    try:
        found = ipr.link_lookup(ifname=ifname)
        check_free(ipr, routing, found[0] if found else -1)
    finally:
        ipr.close()


def _taken(what: str) -> ClientError:
    return ClientError(
        f"{what} is taken; choose free ones with {TABLE_ENV} and {FWMARK_ENV}",
        code="exit_routing_taken",
        exit_code=EXIT_FAILED,
    )


def apply(netns: str | None, ifname: str, families: list[int], routing: ExitRouting) -> None:
    """Route the default of each family in ``families`` through ``ifname`` (exit on), and
    remove ours for the others; idempotent, so ``up``, ``run`` and an adopted tunnel share it."""
    ipr = open_iproute(netns)
    try:
        ifindex = ipr.link_lookup(ifname=ifname)[0]
        if families:
            check_free(ipr, routing, ifindex)
        for family, default in DEFAULTS.items():
            if family in families:
                ipr.route("replace", dst=default, family=family, oif=ifindex, table=routing.table)
                _rules(ipr, family, routing, present=True)
            else:
                _rules(ipr, family, routing, present=False)
                _flush(ipr, family, routing.table)
    finally:
        ipr.close()
    if socket.AF_INET in families:  # the reply to a marked packet passes reverse-path checks
        _sysctl(netns, "net/ipv4/conf/all/src_valid_mark", "1")


def remove(netns: str | None, routing: ExitRouting) -> None:
    """Take out our rules and our table's routes, and nothing else (``down``, exit off)."""
    ipr = open_iproute(netns)
    try:
        for family in DEFAULTS:
            _rules(ipr, family, routing, present=False)
            _flush(ipr, family, routing.table)
    finally:
        ipr.close()


def _rules(ipr: IPRoute, family: int, routing: ExitRouting, *, present: bool) -> None:
    have = {r.get_attr("FRA_PRIORITY") for r in ipr.get_rules(family=family) if _ours(r, routing)}
    wanted = {
        SUPPRESS_PRIORITY: {"table": 254, "suppress_prefixlen": 0},
        EXIT_PRIORITY: {"table": routing.table, "fwmark": routing.fwmark, "flags": FIB_RULE_INVERT},
    }
    for priority, spec in wanted.items():
        if present and priority not in have:
            ipr.rule("add", family=family, priority=priority, **spec)
        elif not present and priority in have:
            ipr.rule("del", family=family, priority=priority, **spec)


def _flush(ipr: IPRoute, family: int, table: int) -> None:
    for route in ipr.get_routes(family=family, table=table):
        if route.get_attr("RTA_TABLE") == table:
            ipr.route(
                "del",
                family=family,
                table=table,
                dst=_dst(route, family),
                oif=route.get_attr("RTA_OIF"),
            )


def _dst(route: Any, family: int) -> str:
    return f"{route.get_attr('RTA_DST') or DEFAULTS[family].split('/')[0]}/{route['dst_len']}"


def _sysctl(netns: str | None, key: str, value: str) -> None:
    subprocess.run(
        [*netns_exec(netns), "sh", "-c", f"echo {value} > /proc/sys/{key}"],
        capture_output=True,
        timeout=10,
        check=False,
    )

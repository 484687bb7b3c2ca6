"""The hub's firewall: each interface's compiled policy loaded into nftables, in one table
``inet elysium`` that Elysium owns. Nothing outside it is read or touched, and every command
names the table: nft then fetches only that table from the kernel, so loading, updating and
listing cost the same whatever other tables (Docker, firewalld, kube-proxy) hold. (A command
such as ``list counters`` or ``list ruleset`` would make nft read every table's rules first.)

A load replaces the whole table in one ``nft`` transaction, so a refused load leaves the old
one in force. The text comes from :mod:`workers.firewall_rules`; :mod:`workers.nft` runs it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from elysium.errors import DataplaneError
from elysium.policy import DEFAULT_RULE, CompiledPolicy, SetMembers, SetSpec, counter_name
from workers.firewall_rules import (
    TABLE,
    InterfaceFirewall,
    element_text,
    render_table,
    rule_indexes,
)
from workers.nft import NFT_CTX_OUTPUT_STATELESS, NftFailed, open_nft

__all__ = ["Firewall", "InterfaceFirewall", "render_table"]

# A named counter as nft lists it: "counter NAME {" then "packets P bytes B" on the next line.
_COUNTER = re.compile(r"^\s*counter (\S+) \{\s*packets (\d+) bytes (\d+)", re.MULTILINE)


class Firewall:
    """Elysium's nftables table in one namespace (or the caller's own when ``netns`` is None)."""

    def __init__(self, netns: str | None, *, backend: str = "auto") -> None:
        self.netns = netns
        self._nft = open_nft(netns, backend)
        self.backend = self._nft.name
        self._sets: dict[str, SetSpec] = {}
        self._counters: dict[str, tuple[str, int]] = {}
        self._loaded: dict[str, CompiledPolicy] = {}  # per interface, what the table holds

    def apply(self, interfaces: list[InterfaceFirewall]) -> bool:
        """Replace the whole table in one transaction; whether it differed from what was
        loaded before (a changed policy, or a hand edit now undone)."""
        _check_unique_prefixes(interfaces)
        for ifw in interfaces:
            if ifw.nat_egress and not self._nft.has_device(ifw.nat_egress):
                raise DataplaneError(
                    f"{ifw.name}: NAT device {ifw.nat_egress!r} does not exist on the hub",
                    code="nat_device_missing",
                    fields={"nat.egress": "no such device"},
                )
        before = self.listing()
        carried = self._carried_counts(interfaces)
        try:
            self._nft.run(render_table(interfaces, carried))
        except NftFailed as exc:
            raise DataplaneError(
                f"nft refused the firewall: {exc}", code="firewall_rejected"
            ) from None
        self._sets = {s.name: s for ifw in interfaces for s in ifw.compiled.sets}
        self._loaded = {ifw.name: ifw.compiled for ifw in interfaces}
        self._counters = {
            counter_name(ifw.compiled.prefix, index): (ifw.name, index)
            for ifw in interfaces
            for index in rule_indexes(ifw.compiled)
        }
        return self.listing() != before

    def _carried_counts(self, interfaces: list[InterfaceFirewall]) -> dict[str, tuple[int, int]]:
        """Counts of the rules a reload keeps as they were (same index, same rule): a
        reconcile, or a change to other rules, must not reset what operators watch."""
        if not self._loaded:
            return {}
        now = self._counter_values()
        carried: dict[str, tuple[int, int]] = {}
        for ifw in interfaces:
            old = self._loaded.get(ifw.name)
            if old is None or old.prefix != ifw.compiled.prefix:
                continue
            for index in rule_indexes(ifw.compiled):
                name = counter_name(ifw.compiled.prefix, index)
                if name in now and _same_rule(old, ifw.compiled, index):
                    carried[name] = now[name]
        return carried

    def _counter_values(self) -> dict[str, tuple[int, int]]:
        """Packets and bytes of each named counter, read from the table's own listing: nft
        1.0.6 answers ``list counters table T`` only after fetching every table's rules."""
        try:
            text = self._nft.run(f"list table {TABLE}")
        except NftFailed:
            return {}
        return {m[1]: (int(m[2]), int(m[3])) for m in _COUNTER.finditer(text)}

    def listing(self) -> str:
        """The table as nft lists it without counter values ("" when it is missing)."""
        try:
            return self._nft.run(f"list table {TABLE}", NFT_CTX_OUTPUT_STATELESS)
        except NftFailed:
            return ""

    def update_members(self, add: SetMembers, remove: SetMembers) -> None:
        """Add and remove set elements, one transaction per set; no rule is touched. Sets the
        last :meth:`apply` did not load (tags no rule names) are skipped; removing an element
        that is not there is fine. Should a later set's transaction be refused, the earlier
        ones stay: the next full load (reconcile) puts every set right."""
        batches: dict[str, list[str]] = {}
        for name, elements in remove.items():
            spec = self._sets.get(name)
            if spec and elements:
                body = element_text(spec, elements)
                # nft has no "delete if present": adding first makes the delete always succeed.
                batches.setdefault(name, []).append(f"add element {TABLE} {name} {{ {body} }}")
                batches[name].append(f"delete element {TABLE} {name} {{ {body} }}")
        for name, elements in add.items():
            spec = self._sets.get(name)
            if spec and elements:
                body = element_text(spec, elements)
                batches.setdefault(name, []).append(f"add element {TABLE} {name} {{ {body} }}")
        for name, lines in batches.items():
            # Why the listing: for an element change nft 1.0.6 fetches the elements of every
            # interval set of every table (a foreign blocklist of 50,000 ranges: 0.4 s a join);
            # a batch that ends listing one set makes it fetch only that set of our table.
            # The listing (the set as it was before the batch) is not used.
            lines.append(f"list set {TABLE} {name}")
            try:
                self._nft.run("\n".join(lines) + "\n")
            except NftFailed as exc:
                raise DataplaneError(
                    f"nft refused the set update: {exc}", code="firewall_rejected"
                ) from None

    def counters(self) -> dict[str, dict[int, int]]:
        """Packets per rule index, per interface (``-1``: the interface's default verdict)."""
        found: dict[str, dict[int, int]] = {}
        for name, (packets, _) in self._counter_values().items():
            if name in self._counters:
                interface, index = self._counters[name]
                found.setdefault(interface, {})[index] = packets
        return found

    def remove(self) -> None:
        """Delete Elysium's table (teardown); nothing else is touched."""
        self._nft.run(f"add table {TABLE}\ndelete table {TABLE}\n")
        self._sets.clear()
        self._counters.clear()
        self._loaded.clear()

    def close(self) -> None:
        self._nft.close()

    def __enter__(self) -> Firewall:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_unique_prefixes(interfaces: Iterable[InterfaceFirewall]) -> None:
    seen: dict[str, str] = {}
    for ifw in interfaces:
        other = seen.setdefault(ifw.compiled.prefix, ifw.name)
        if other != ifw.name:
            raise DataplaneError(
                f"interfaces {other!r} and {ifw.name!r} map to the same nft names",
                code="firewall_rejected",
            )


def _same_rule(old: CompiledPolicy, new: CompiledPolicy, index: int) -> bool:
    if index == DEFAULT_RULE:
        return old.default == new.default
    return [r for r in old.rules if r.index == index] == [r for r in new.rules if r.index == index]

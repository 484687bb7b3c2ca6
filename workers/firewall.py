"""The hub's firewall: each interface's compiled policy loaded into nftables, in one table
``inet elysium`` that Elysium owns (nothing outside it is touched).

Per interface ``wg0``: a base chain ``wg0_forward`` on the forward hook (``ct state
established,related accept``, the rules in order, the default), ``wg0_input``/``wg0_output``
for rules to and from ``hub`` (default accept), ``wg0_nat`` masquerading what leaves through
the NAT device, named sets of addresses, and a named counter per policy rule. A load replaces
the whole table in one ``nft`` transaction, so a refused load leaves the old one in force.

nft runs through libnftables (ctypes) on a worker thread that entered the namespace with
``setns``, so the caller's threads never change namespace; where the library cannot be loaded,
``ip netns exec NS nft -f -`` does the same more slowly (a process per call).
"""

from __future__ import annotations

import ctypes
import json
import os
import queue
import socket
import subprocess
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from elysium.errors import DataplaneError
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
CLONE_NEWNET = 0x40000000
NFT_CTX_OUTPUT_STATELESS = 1 << 2
NFT_CTX_OUTPUT_JSON = 1 << 4
T = TypeVar("T")


@dataclass
class InterfaceFirewall:
    """What the hub enforces on one interface: its compiled policy, the elements of its sets,
    its networks (what NAT masquerades) and the NAT egress device, if any."""

    name: str
    compiled: CompiledPolicy
    members: SetMembers
    networks: tuple[str, ...]
    nat_egress: str | None = None


# ---------------------------------------------------------------- talking to nftables


class NftFailed(Exception):
    """nft refused a command; the message is nft's own."""

    def __init__(self, text: str) -> None:
        # nft echoes the offending line under each error; the error lines say what is wrong.
        errors = [line for line in text.splitlines() if "Error:" in line]
        super().__init__("; ".join(errors) or text)


class _NamespaceThread:
    """One long-lived thread inside a network namespace that runs what it is handed."""

    def __init__(self, netns: str | None) -> None:
        self._jobs: queue.Queue[tuple[Callable[[], Any], queue.Queue[Any]] | None] = queue.Queue()
        ready: queue.Queue[BaseException | None] = queue.Queue()
        self._thread = threading.Thread(
            target=self._main, args=(netns, ready), name=f"nft-{netns or 'own'}", daemon=True
        )
        self._thread.start()
        error = ready.get()
        if error is not None:
            raise error

    def _main(self, netns: str | None, ready: queue.Queue[BaseException | None]) -> None:
        try:
            if netns is not None:
                _enter_netns(netns)
        except BaseException as exc:
            ready.put(exc)
            return
        ready.put(None)
        while (job := self._jobs.get()) is not None:
            fn, reply = job
            try:
                reply.put((True, fn()))
            except BaseException as exc:
                reply.put((False, exc))

    def call(self, fn: Callable[[], T]) -> T:
        reply: queue.Queue[tuple[bool, Any]] = queue.Queue()
        self._jobs.put((fn, reply))
        ok, value = reply.get()
        if not ok:
            raise value
        return value

    def stop(self) -> None:
        if self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join(timeout=5)


def _enter_netns(netns: str) -> None:
    """Move the calling thread (only it) into ``/run/netns/NETNS``."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{netns}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into {netns}: {os.strerror(err)}")
    finally:
        os.close(fd)


class LibNft:
    """libnftables through ctypes, every call on a thread inside the namespace."""

    name = "libnftables"

    def __init__(self, netns: str | None) -> None:
        self._lib = ctypes.CDLL("libnftables.so.1")
        lib = self._lib
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        for fn in ("nft_ctx_buffer_output", "nft_ctx_buffer_error", "nft_ctx_free"):
            getattr(lib, fn).argtypes = [ctypes.c_void_p]
        for fn in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
            getattr(lib, fn).argtypes = [ctypes.c_void_p]
            getattr(lib, fn).restype = ctypes.c_char_p
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        self._thread = _NamespaceThread(netns)
        self._ctx: int = self._thread.call(self._new_ctx)

    def _new_ctx(self) -> int:
        ctx = self._lib.nft_ctx_new(0)
        if not ctx:
            raise OSError("nft_ctx_new failed")
        self._lib.nft_ctx_buffer_output(ctx)
        self._lib.nft_ctx_buffer_error(ctx)
        return int(ctx)

    def run(self, commands: str, flags: int = 0) -> str:
        """Run ``commands`` as one transaction (like ``nft -f``); nft's output."""
        return self._thread.call(lambda: self._run(commands, flags))

    def _run(self, commands: str, flags: int) -> str:
        lib, ctx = self._lib, self._ctx
        lib.nft_ctx_output_set_flags(ctx, flags)
        rc = lib.nft_run_cmd_from_buffer(ctx, commands.encode())
        out = (lib.nft_ctx_get_output_buffer(ctx) or b"").decode()
        err = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode()
        if rc != 0:
            raise NftFailed(err.strip() or f"nft failed ({rc})")
        return out

    def has_device(self, name: str) -> bool:
        def look() -> bool:
            try:
                socket.if_nametoindex(name)
            except OSError:
                return False
            return True

        return self._thread.call(look)

    def close(self) -> None:
        if self._ctx:
            ctx, self._ctx = self._ctx, 0
            self._thread.call(lambda: self._lib.nft_ctx_free(ctx))
        self._thread.stop()


class NftCommand:
    """The ``nft`` program, through ``ip netns exec`` when a namespace is named."""

    name = "nft"

    def __init__(self, netns: str | None) -> None:
        self._netns = netns
        self._prefix = ["ip", "netns", "exec", netns] if netns else []

    def run(self, commands: str, flags: int = 0) -> str:
        opts = ["-s"] if flags & NFT_CTX_OUTPUT_STATELESS else []
        opts += ["-j"] if flags & NFT_CTX_OUTPUT_JSON else []
        # With -j, -f reads JSON: the listings we ask for with flags go on the command line.
        args = [*opts, *commands.split()] if flags else ["-f", "-"]
        proc = subprocess.run(
            [*self._prefix, "nft", *args],
            input=None if flags else commands,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if proc.returncode != 0:
            raise NftFailed(proc.stderr.strip() or f"nft failed ({proc.returncode})")
        return proc.stdout

    def has_device(self, name: str) -> bool:
        ns = ["-n", self._netns] if self._netns else []
        cmd = ["ip", *ns, "link", "show", "dev", name]
        return subprocess.run(cmd, capture_output=True, timeout=30).returncode == 0

    def close(self) -> None:
        pass


def open_nft(netns: str | None, backend: str = "auto") -> LibNft | NftCommand:
    """libnftables when it loads (``auto``/``libnftables``), else the ``nft`` program."""
    if backend in ("auto", "libnftables"):
        try:
            return LibNft(netns)
        except OSError:
            if backend == "libnftables":
                raise
    return NftCommand(netns)


# ---------------------------------------------------------------- the firewall


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
            for index in _rule_indexes(ifw.compiled)
        }
        return self.listing() != before

    def _carried_counts(self, interfaces: list[InterfaceFirewall]) -> dict[str, tuple[int, int]]:
        """Counts of the rules a reload keeps as they were (same index, same rule): a
        reconcile, or a change to other rules, must not reset what operators watch."""
        if not self._loaded:
            return {}
        try:
            out = self._nft.run(f"list counters table {TABLE}", NFT_CTX_OUTPUT_JSON)
        except NftFailed:
            return {}
        now = {
            c["name"]: (int(c["packets"]), int(c["bytes"]))
            for item in json.loads(out).get("nftables", [])
            if (c := item.get("counter"))
        }
        carried: dict[str, tuple[int, int]] = {}
        for ifw in interfaces:
            old = self._loaded.get(ifw.name)
            if old is None or old.prefix != ifw.compiled.prefix:
                continue
            for index in _rule_indexes(ifw.compiled):
                name = counter_name(ifw.compiled.prefix, index)
                if name in now and _same_rule(old, ifw.compiled, index):
                    carried[name] = now[name]
        return carried

    def listing(self) -> str:
        """The table as nft lists it without counter values ("" when it is missing)."""
        try:
            return self._nft.run(f"list table {TABLE}", NFT_CTX_OUTPUT_STATELESS)
        except NftFailed:
            return ""

    def update_members(self, add: SetMembers, remove: SetMembers) -> None:
        """Add and remove set elements in one transaction; no rule is touched. Sets the last
        :meth:`apply` did not load (tags no rule names) are skipped; removing an element that
        is not there is fine."""
        lines: list[str] = []
        for name, elements in remove.items():
            spec = self._sets.get(name)
            if spec and elements:
                body = _elements(spec, elements)
                # nft has no "delete if present": adding first makes the delete always succeed.
                lines.append(f"add element {TABLE} {name} {{ {body} }}")
                lines.append(f"delete element {TABLE} {name} {{ {body} }}")
        for name, elements in add.items():
            spec = self._sets.get(name)
            if spec and elements:
                lines.append(f"add element {TABLE} {name} {{ {_elements(spec, elements)} }}")
        if not lines:
            return
        try:
            self._nft.run("\n".join(lines) + "\n")
        except NftFailed as exc:
            raise DataplaneError(
                f"nft refused the set update: {exc}", code="firewall_rejected"
            ) from None

    def counters(self) -> dict[str, dict[int, int]]:
        """Packets per rule index, per interface (``-1``: the interface's default verdict)."""
        try:
            out = self._nft.run(f"list counters table {TABLE}", NFT_CTX_OUTPUT_JSON)
        except NftFailed:
            return {}
        found: dict[str, dict[int, int]] = {}
        for item in json.loads(out).get("nftables", []):
            counter = item.get("counter")
            if counter and counter.get("name") in self._counters:
                interface, index = self._counters[counter["name"]]
                found.setdefault(interface, {})[index] = int(counter["packets"])
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


def _rule_indexes(compiled: CompiledPolicy) -> list[int]:
    return sorted({r.index for r in compiled.rules} | {DEFAULT_RULE})


# ---------------------------------------------------------------- rendering nft text


def render_table(
    interfaces: Iterable[InterfaceFirewall], counts: dict[str, tuple[int, int]] | None = None
) -> str:
    """The ``nft -f`` text that replaces the table: create if missing, delete, recreate.
    ``counts``: counters that start where the replaced table's left off."""
    out = [f"add table {TABLE}", f"delete table {TABLE}", f"table {TABLE} {{"]
    for ifw in interfaces:
        out.extend(render_interface(ifw, counts or {}))
    out.append("}")
    return "\n".join(out) + "\n"


def render_interface(
    ifw: InterfaceFirewall, counts: dict[str, tuple[int, int]] | None = None
) -> list[str]:
    c = ifw.compiled
    out = []
    for i in _rule_indexes(c):
        name = counter_name(c.prefix, i)
        packets, octets = (counts or {}).get(name, (0, 0))
        start = f" packets {packets} bytes {octets}" if packets or octets else ""
        out.append(f"counter {name} {{{start}\n}}")
    for spec in c.sets:
        kind = "ipv4_addr" if spec.family == 4 else "ipv6_addr"
        flags = " flags interval;" if spec.interval else ""
        elements = ifw.members.get(spec.name)
        body = f" elements = {{ {_elements(spec, elements)} }}" if elements else ""
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


def _elements(spec: SetSpec, elements: Iterable[str]) -> str:
    """Set elements as nft reads them: bare addresses in hash sets."""
    if spec.interval:
        return ", ".join(elements)
    return ", ".join(e.split("/", 1)[0] for e in elements)

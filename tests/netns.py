"""A throwaway network topology for tests: hub and peer namespaces on a bridged underlay.

::

    underlay ns "ely-u-<sfx>": bridge br0 (198.18.0.254/24)
      ├─ veth ─ hub ns  "ely-h-<sfx>"  eth0 198.18.0.1/24
      ├─ veth ─ peer ns "ely-p1-<sfx>" eth0 198.18.0.11/24
      └─ veth ─ peer ns "ely-p2-<sfx>" eth0 198.18.0.12/24

Names carry a random suffix so parallel runs never collide; :meth:`Topology.destroy` kills
whatever still runs inside these namespaces (only ever our own processes) and deletes them.
All traffic stays inside the namespaces; nothing is sent from the host namespace.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

UNDERLAY_PREFIX = "198.18.0"  # RFC 2544 benchmark range, used only inside the namespaces


def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=30)


def in_ns(ns: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command inside a namespace."""
    return run("ip", "netns", "exec", ns, *cmd, check=check)


def ping(ns: str, address: str, tries: int = 5) -> bool:
    """Whether ``address`` answers one ping sent from inside ``ns`` (a few tries)."""
    for _ in range(tries):
        if in_ns(ns, "ping", "-c1", "-W1", "-n", address, check=False).returncode == 0:
            return True
    return False


def can_run() -> str | None:
    """Why namespace tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("ip", "wireguard-go", "ping"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    if not os.path.exists("/dev/net/tun"):
        return "needs /dev/net/tun"
    return None


@dataclass
class Topology:
    """The namespaces of one test run and their underlay addresses."""

    suffix: str = field(default_factory=lambda: secrets.token_hex(3))
    peer_count: int = 2
    created: list[str] = field(default_factory=list)

    @property
    def underlay(self) -> str:
        return f"ely-u-{self.suffix}"

    @property
    def hub(self) -> str:
        return f"ely-h-{self.suffix}"

    @property
    def peers(self) -> list[str]:
        return [f"ely-p{i}-{self.suffix}" for i in range(1, self.peer_count + 1)]

    @property
    def hub_ip(self) -> str:
        return f"{UNDERLAY_PREFIX}.1"

    def peer_ip(self, index: int) -> str:
        """Underlay address of ``peers[index]``."""
        return f"{UNDERLAY_PREFIX}.{11 + index}"

    def create(self) -> Topology:
        try:
            self._add_ns(self.underlay)
            u = self.underlay
            run("ip", "-n", u, "link", "add", "br0", "type", "bridge")
            run("ip", "-n", u, "addr", "add", f"{UNDERLAY_PREFIX}.254/24", "dev", "br0")
            run("ip", "-n", u, "link", "set", "br0", "up")
            self._attach(self.hub, "vh", self.hub_ip)
            for i, ns in enumerate(self.peers):
                self._attach(ns, f"vp{i + 1}", self.peer_ip(i))
        except BaseException:
            self.destroy()
            raise
        return self

    def _add_ns(self, ns: str) -> None:
        run("ip", "netns", "add", ns)
        self.created.append(ns)
        run("ip", "-n", ns, "link", "set", "lo", "up")

    def _attach(self, ns: str, bridge_port: str, address: str) -> None:
        self._add_ns(ns)
        u = self.underlay
        run(
            "ip",
            "-n",
            u,
            "link",
            "add",
            bridge_port,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            ns,
        )
        run("ip", "-n", u, "link", "set", bridge_port, "master", "br0", "up")
        run("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
        run("ip", "-n", ns, "link", "set", "eth0", "up")

    def add_hub(self, number: int) -> tuple[str, str]:
        """Another hub namespace on the underlay: ``(namespace, underlay address)``, the
        address ending in ``number`` (the first hub has 1)."""
        ns, address = f"ely-h{number}-{self.suffix}", f"{UNDERLAY_PREFIX}.{number}"
        self._attach(ns, f"vh{number}", address)
        return ns, address

    def add_behind_hub(
        self, name: str, hub_address: str, address: str, *, route: bool, hub: str | None = None
    ) -> str:
        """A namespace joined to the hub (``hub``: another hub's namespace) by its own link
        (the hub's device is ``name``): ``hub_address``/``address`` with prefix on each end.
        ``route``: its default route goes back through the hub (a LAN behind the hub);
        without one it answers only what comes from the hub's own address (the far side of
        a NAT, "the internet")."""
        hub = hub or self.hub
        ns = f"ely-{name}-{self.suffix}"
        self._add_ns(ns)
        far = f"x{name}"  # the hub has an eth0 already: renamed once it is in ``ns``
        run("ip", "-n", hub, "link", "add", name, "type", "veth", "peer", "name", far)
        run("ip", "-n", hub, "link", "set", far, "netns", ns)
        run("ip", "-n", ns, "link", "set", far, "name", "eth0")
        run("ip", "-n", hub, "addr", "add", hub_address, "dev", name)
        run("ip", "-n", hub, "link", "set", name, "up")
        run("ip", "-n", ns, "addr", "add", address, "dev", "eth0")
        run("ip", "-n", ns, "link", "set", "eth0", "up")
        if route:
            gateway = hub_address.split("/")[0]
            run("ip", "-n", ns, "route", "add", "default", "via", gateway)
        return ns

    def add_nat_router(
        self,
        name: str,
        number: int,
        lan: str,
        *,
        upstream: str | None = None,
        firewall: bool = False,
        random_ports: bool = False,
    ) -> str:
        """A home router: its WAN on the underlay (``<prefix>.<number>``) or, with
        ``upstream``, on that router's LAN (``.<number>`` there, a router behind a router); a
        LAN bridge with the first address of ``lan`` (``192.168.77.0/24``), forwarding on and
        masquerade out of its WAN, all inside its own namespace. Hosts join with
        :meth:`add_behind_router`. ``firewall``: like a real home router, it drops what comes
        to itself from its WAN unasked (so an unanswered packet leaves no conntrack entry);
        ``random_ports``: masquerade ``random,fully-random`` (a port per destination, the NAT
        no direct path gets through)."""
        if upstream is None:
            ns = f"ely-{name}-{self.suffix}"
            self._attach(ns, f"v{name}", f"{UNDERLAY_PREFIX}.{number}")
        else:
            up_lan = run("ip", "-n", upstream, "-4", "-o", "addr", "show", "brlan").stdout
            up_prefix = up_lan.split()[3].rsplit(".", 1)[0]
            ns = self.add_behind_router(upstream, name, f"{up_prefix}.{number}")
        prefix = lan.rsplit(".", 1)[0]
        run("ip", "-n", ns, "link", "add", "brlan", "type", "bridge")
        run("ip", "-n", ns, "addr", "add", f"{prefix}.1/24", "dev", "brlan")
        run("ip", "-n", ns, "link", "set", "brlan", "up")
        in_ns(ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        in_ns(ns, "nft", "add", "table", "ip", "nat")
        chain = "{ type nat hook postrouting priority srcnat ; }"
        in_ns(ns, "nft", "add", "chain", "ip", "nat", "post", chain)
        flags = ["random,fully-random"] if random_ports else []
        in_ns(ns, "nft", "add", "rule", "ip", "nat", "post", "oifname", "eth0", "ip", "saddr", lan,
              "masquerade", *flags)  # fmt: skip
        if firewall:
            in_ns(ns, "nft", "add", "table", "inet", "home")
            chain = "{ type filter hook input priority 0 ; }"
            in_ns(ns, "nft", "add", "chain", "inet", "home", "input", chain)
            in_ns(ns, "nft", "add", "rule", "inet", "home", "input", "iifname", "eth0", "ct",
                  "state", "new", "drop")  # fmt: skip
        return ns

    def add_behind_router(self, router: str, name: str, address: str) -> str:
        """A host on ``router``'s LAN at ``address`` (its default route via the router)."""
        ns = f"ely-{name}-{self.suffix}"
        self._add_ns(ns)
        port = f"l{name}"[:15]
        run("ip", "-n", router, "link", "add", port, "type", "veth", "peer", "name", "eth0",
            "netns", ns)  # fmt: skip
        run("ip", "-n", router, "link", "set", port, "master", "brlan", "up")
        run("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
        run("ip", "-n", ns, "link", "set", "eth0", "up")
        gateway = address.rsplit(".", 1)[0] + ".1"
        run("ip", "-n", ns, "route", "add", "default", "via", gateway)
        return ns

    def destroy(self) -> None:
        """Kill what runs in our namespaces (all started by this run) and delete them."""
        for ns in reversed(self.created):
            pids = run("ip", "netns", "pids", ns, check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            deadline = time.monotonic() + 3
            while pids and time.monotonic() < deadline:
                if not run("ip", "netns", "pids", ns, check=False).stdout.split():
                    break
                time.sleep(0.02)
            run("ip", "netns", "del", ns, check=False)
        self.created.clear()


@contextlib.contextmanager
def topology(peer_count: int = 2) -> Iterator[Topology]:
    """A :class:`Topology` for the ``with`` block, destroyed afterwards even on failure."""
    topo = Topology(peer_count=peer_count).create()
    try:
        yield topo
    finally:
        topo.destroy()

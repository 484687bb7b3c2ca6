"""A hub's gateway settings: on while it has WireGuard interfaces, as they were before when not.

A hub forwards between its peers, the networks behind it and (as an exit) the internet, so
converge sets what a careful gateway sets in the namespace the hub acts in, and repairs it when
it drifts:

- IPv4 and IPv6 forwarding on;
- no ICMP redirects sent: peers talk to each other through the hub's one tunnel interface, and
  a redirect ("Redirect Host, new nexthop 10.99.0.x") names a next hop a peer cannot reach
  directly (namespace-wide ``all`` and ``default``, and each WireGuard interface, since the
  kernel sends them when either the ``all`` or the interface's switch is on);
- no ICMP redirects accepted (IPv4 and IPv6): the hub's routes are Elysium's, not a neighbour's.

``rp_filter`` is left as found: WireGuard already drops what arrives from a source outside the
sending peer's allowed IPs, and the strict mode some distributions set does not apply to a
source the hub routes back through the same interface.

The namespace-wide values found before Elysium first changed them are kept in the hub's state
directory, and teardown (the hub's last interface gone) puts them back; an interface's own
switches go with the interface.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from collections.abc import Iterable
from pathlib import Path

from elysium.errors import DataplaneError
from elysium.files import write_atomic
from elysium.netns import netns_exec

# Namespace-wide switch -> the value a hub wants.
SYSCTLS = {
    "net/ipv4/ip_forward": "1",
    "net/ipv6/conf/all/forwarding": "1",
    "net/ipv4/conf/all/send_redirects": "0",
    "net/ipv4/conf/default/send_redirects": "0",
    "net/ipv4/conf/all/accept_redirects": "0",
    "net/ipv4/conf/default/accept_redirects": "0",
    "net/ipv6/conf/all/accept_redirects": "0",
    "net/ipv6/conf/default/accept_redirects": "0",
}
# Per WireGuard interface -> the value a hub wants.
INTERFACE_SYSCTLS = {"send_redirects": "0", "accept_redirects": "0"}


def interface_sysctls(name: str) -> dict[str, str]:
    """The switches of one of the hub's interfaces, with the values a hub wants."""
    return {f"net/ipv4/conf/{name}/{key}": value for key, value in INTERFACE_SYSCTLS.items()}


class Forwarding:
    """The gateway switches of one namespace (``None``: the worker's own)."""

    def __init__(self, state_dir: Path, netns: str | None) -> None:
        self.netns = netns
        self.saved = state_dir / "forwarding.json"  # what Elysium found before it changed them

    def _run(self, script: str) -> str:
        command = [*netns_exec(self.netns), "sh", "-c", script]
        done = subprocess.run(command, capture_output=True, text=True, timeout=10)
        if done.returncode != 0:
            raise DataplaneError(
                f"gateway sysctls: {done.stderr.strip() or done.returncode}",
                code="forwarding_failed",
                retryable=True,
            )
        return done.stdout

    def read(self, keys: Iterable[str] = SYSCTLS) -> dict[str, str]:
        """The current value of each switch."""
        keys = list(keys)
        out = self._run("; ".join(f"cat {shlex.quote('/proc/sys/' + key)}" for key in keys))
        return dict(zip(keys, out.split(), strict=True))

    def _write(self, values: dict[str, str]) -> None:
        self._run(
            "; ".join(f"echo {v} > {shlex.quote('/proc/sys/' + k)}" for k, v in values.items())
        )

    def ensure(self, interfaces: Iterable[str] = ()) -> list[str]:
        """The hub's values in place for the namespace and ``interfaces``; returns the switches
        that differed (drift repaired, or first use)."""
        wanted = dict(SYSCTLS)
        for name in interfaces:
            wanted.update(interface_sysctls(name))
        now = self.read(wanted)
        off = [key for key, value in now.items() if value != wanted[key]]
        if off:
            self._save({k: v for k, v in now.items() if k in SYSCTLS})
            self._write({key: wanted[key] for key in off})
        return off

    def _save(self, found: dict[str, str]) -> None:
        """Keep the first value found of each switch (a file of an older version may lack some
        of today's switches: those are added, the others stay as first found)."""
        saved = json.loads(self.saved.read_text()) if self.saved.exists() else {}
        merged = {**found, **saved}
        if merged != saved:
            self.saved.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.saved, json.dumps(merged).encode())

    def restore(self) -> bool:
        """Put back what Elysium found; False when it had changed nothing."""
        if not self.saved.exists():
            return False
        self._write(json.loads(self.saved.read_text()))
        self.saved.unlink()
        return True

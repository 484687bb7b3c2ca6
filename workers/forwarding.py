"""IP forwarding on a hub: on while it has WireGuard interfaces, as it was before when not.

A hub forwards between its peers, the networks behind it and (as an exit) the internet, so
converge turns on IPv4 and IPv6 forwarding in the namespace the hub acts in and repairs it
when it drifts. The values found before Elysium first changed them are kept in the hub's
state directory, and teardown (the hub's last interface gone) puts them back.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from elysium.errors import DataplaneError
from elysium.files import write_atomic

# The switches that make a Linux host forward: IPv4, and IPv6 (which needs "all").
SYSCTLS = ("net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding")


class Forwarding:
    """The forwarding switches of one namespace (``None``: the worker's own)."""

    def __init__(self, state_dir: Path, netns: str | None) -> None:
        self.netns = netns
        self.saved = state_dir / "forwarding.json"  # what Elysium found before it changed them

    def _run(self, script: str) -> str:
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        done = subprocess.run(
            [*prefix, "sh", "-c", script], capture_output=True, text=True, timeout=10
        )
        if done.returncode != 0:
            raise DataplaneError(
                f"forwarding sysctls: {done.stderr.strip() or done.returncode}",
                code="forwarding_failed",
                retryable=True,
            )
        return done.stdout

    def read(self) -> dict[str, str]:
        out = self._run("; ".join(f"cat /proc/sys/{key}" for key in SYSCTLS))
        return dict(zip(SYSCTLS, out.split(), strict=True))

    def _write(self, values: dict[str, str]) -> None:
        self._run("; ".join(f"echo {v} > /proc/sys/{k}" for k, v in values.items()))

    def ensure(self) -> list[str]:
        """Forwarding on; returns the switches that were off (drift repaired, or first use)."""
        now = self.read()
        off = [key for key, value in now.items() if value != "1"]
        if off:
            if not self.saved.exists():
                self.saved.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(self.saved, json.dumps(now).encode())
            self._write(dict.fromkeys(off, "1"))
        return off

    def restore(self) -> bool:
        """Put back what Elysium found; False when it had changed nothing."""
        if not self.saved.exists():
            return False
        self._write(json.loads(self.saved.read_text()))
        self.saved.unlink()
        return True

"""The interface's DNS servers on this host while the tunnel is up, and the old ones back after.

In a network namespace: ``/etc/netns/<ns>/resolv.conf`` (what ``ip netns exec`` shows as
``/etc/resolv.conf``). Otherwise systemd-resolved when it runs (per-link servers, reverted at
``down``), else ``resolvconf`` (a record of the interface's own), else ``/etc/resolv.conf``
itself. Whatever was there before is kept under the state directory and put back by
``restore``; a file that was not there is removed again.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from elysium.errors import DataplaneError
from elysium.files import write_atomic

NETNS_ETC = Path("/etc/netns")
RESOLV_CONF = Path("/etc/resolv.conf")
RESOLVED_RUN = Path("/run/systemd/resolve")
SAVED = "dns.json"  # what ``apply`` changed, so ``restore`` undoes exactly that


def resolv_conf_text(servers: list[str]) -> str:
    return "# written by elysium-client\n" + "".join(f"nameserver {s}\n" for s in servers)


def apply(state_dir: Path, netns: str | None, interface: str, servers: list[str]) -> str | None:
    """Point this host (or namespace) at ``servers``; returns how, or None with no servers."""
    try:
        return _apply(state_dir, netns, interface, servers)
    except (OSError, subprocess.SubprocessError) as exc:
        raise DataplaneError(f"cannot set the DNS servers: {exc}", code="dns_failed") from None


def _apply(state_dir: Path, netns: str | None, interface: str, servers: list[str]) -> str | None:
    if not servers:
        restore(state_dir)
        return None
    saved = _load(state_dir)
    if netns:
        method, target = "file", NETNS_ETC / netns / "resolv.conf"
    elif RESOLVED_RUN.is_dir() and shutil.which("resolvectl"):
        method, target = "resolved", None
    elif shutil.which("resolvconf"):
        method, target = "resolvconf", None
    else:
        method, target = "file", RESOLV_CONF
    if method == "file":
        assert target is not None
        if saved is None:
            before = target.read_text() if target.exists() else None
            made_dir = not target.parent.exists()
            saved = {"method": "file", "path": str(target), "before": before, "dir": made_dir}
            _save(state_dir, saved)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, resolv_conf_text(servers), 0o644)
    elif method == "resolved":
        subprocess.run(["resolvectl", "dns", interface, *servers], check=True, timeout=10)
        subprocess.run(["resolvectl", "domain", interface, "~."], check=True, timeout=10)
        _save(state_dir, {"method": "resolved", "interface": interface})
    else:
        subprocess.run(
            ["resolvconf", "-a", f"{interface}.elysium"],
            input=resolv_conf_text(servers),
            text=True,
            check=True,
            timeout=10,
        )
        _save(state_dir, {"method": "resolvconf", "interface": interface})
    return method


def restore(state_dir: Path) -> bool:
    """Undo what ``apply`` did; False when it had done nothing."""
    saved = _load(state_dir)
    if saved is None:
        return False
    if saved["method"] == "file":
        path = Path(saved["path"])
        if saved.get("before") is not None:
            write_atomic(path, saved["before"], 0o644)
        else:
            path.unlink(missing_ok=True)
            if saved.get("dir"):
                with contextlib.suppress(OSError):  # not empty: not ours alone
                    path.parent.rmdir()
    elif saved["method"] == "resolved":
        subprocess.run(["resolvectl", "revert", saved["interface"]], check=False, timeout=10)
    else:
        subprocess.run(
            ["resolvconf", "-d", f"{saved['interface']}.elysium"], check=False, timeout=10
        )
    (state_dir / SAVED).unlink(missing_ok=True)
    return True


def _load(state_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((state_dir / SAVED).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _save(state_dir: Path, data: dict[str, Any]) -> None:
    write_atomic(state_dir / SAVED, json.dumps(data) + "\n", 0o600)

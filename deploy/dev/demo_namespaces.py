"""The demo's network namespaces: an underlay bridge, the hub's and the demo peer's (no
address, link or rule of the demo is ever made outside them)."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from demo_processes import wait_gone
from demo_settings import UNDERLAY, Demo, log, run


def netns_exists(ns: str) -> bool:
    return Path("/run/netns", ns).exists()


def make_namespaces(demo: Demo) -> None:
    ul, hub, peer = demo.ns("ul"), demo.ns("hub"), demo.ns("peer")
    if all(netns_exists(n) for n in (ul, hub, peer)):
        return
    remove_namespaces(demo)
    for ns in (ul, hub, peer):
        run("ip", "netns", "add", ns)
        run("ip", "-n", ns, "link", "set", "lo", "up")
    run("ip", "-n", ul, "link", "add", "br0", "type", "bridge")
    run("ip", "-n", ul, "addr", "add", f"{UNDERLAY}.254/24", "dev", "br0")
    run("ip", "-n", ul, "link", "set", "br0", "up")
    for ns, port, host in ((hub, "vhub", 1), (peer, "vpeer", 11)):
        run(
            "ip", "-n", ul, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns
        )
        run("ip", "-n", ul, "link", "set", port, "master", "br0", "up")
        run("ip", "-n", ns, "addr", "add", f"{UNDERLAY}.{host}/24", "dev", "eth0")
        run("ip", "-n", ns, "link", "set", "eth0", "up")
    log(f"namespaces {ul}, {hub}, {peer} created")


def remove_namespaces(demo: Demo) -> None:
    """Kill what runs in the demo's namespaces, wait until it has exited, delete them."""
    for role in ("peer", "hub", "ul"):
        ns = demo.ns(role)
        if not netns_exists(ns):
            continue
        # Whatever still runs in our namespace was started by this demo (wireguard-go).
        pids = [int(p) for p in run("ip", "netns", "pids", ns, check=False).stdout.split()]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        left = wait_gone(pids)
        if left:
            raise SystemExit(f"down: pid {', '.join(map(str, left))} in {ns} does not exit")
        run("ip", "netns", "del", ns, check=False)

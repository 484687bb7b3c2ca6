"""Direct paths to other peers (``elysium-client run`` on a direct interface).

For each peer the config lists (``direct_peers``: those the policy lets this one talk with),
the daemon puts the peer on its WireGuard device with a candidate as endpoint and a short
keepalive, and no allowed IP: the hub still carries the traffic. When the peer answers (its
counters move) the peer's tunnel address (/32, /128) becomes its allowed IP — more specific
than the hub's network, so traffic goes direct. A candidate silent for :data:`TRY_S` gives way
to the next; when none answers, or a direct path falls silent for :data:`STALE_S`, the peer
leaves the device (its address routes through the hub again) and is tried again later, at
wall-clock slots that both ends of a pair share (5 s doubling to 60 s), so they try together
and a NAT that maps endpoint-independently lets the pair through.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import math
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dataplane import PeerSpec, PeerStats
from elysium.errors import ElysiumError

TICK_S = 1.0  # how often paths are looked at
TRY_S = 3.0  # one candidate's chance to answer
STALE_S = 5.0  # a direct path silent this long goes back to the hub
RETRY_FIRST_S = 5.0
RETRY_MAX_S = 60.0
REPORT_EVERY_S = 30.0  # local addresses and listen port, sent again when they changed
MAX_ADDRESSES = 8


@dataclass
class Path:
    """One other peer and where its traffic goes: ``trying`` (a candidate, traffic via the
    hub), ``direct`` or ``relayed`` (not on the device; tried again at ``retry_at``)."""

    peer: dict[str, Any]
    state: str = "relayed"
    index: int = 0  # the candidate being tried
    since: float = 0.0  # when this try began (monotonic)
    rx: int = 0  # bytes received from the peer, as last read
    heard_at: float = 0.0  # when they last moved (monotonic)
    failures: int = 0
    retry_at: float = 0.0  # wall-clock time of the next try
    why: str = "not tried yet"

    @property
    def key(self) -> str:
        return str(self.peer["public_key"])

    @property
    def endpoints(self) -> list[str]:
        return list(self.peer.get("endpoints") or [])


@dataclass
class Actions:
    """What one round changes on the device: peers to (re)add, to update, to remove."""

    fresh: list[PeerSpec] = field(default_factory=list)  # removed first: a new try, sent now
    update: list[PeerSpec] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.fresh or self.update or self.remove)


def retry_slot(wall: float, failures: int) -> float:
    """The next wall-clock slot to try again: multiples of a period both ends agree on."""
    period = min(RETRY_MAX_S, RETRY_FIRST_S * 2 ** max(0, failures - 1))
    return (math.floor(wall / period) + 1) * period


def trying_spec(path: Path) -> PeerSpec:
    return PeerSpec(
        public_key=path.key,
        allowed_ips=(),
        endpoint=path.endpoints[path.index],
        keepalive=int(path.peer.get("keepalive") or 1),
    )


def direct_spec(path: Path, endpoint: str | None) -> PeerSpec:
    return PeerSpec(
        public_key=path.key,
        allowed_ips=tuple(path.peer["addresses"]),
        endpoint=endpoint or path.endpoints[path.index],
        keepalive=int(path.peer.get("keepalive") or 1),
    )


class PathTable:
    """The paths and the decisions on them; no I/O (``step`` says what to change)."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self.log = log
        self.paths: dict[str, Path] = {}

    def update(self, peers: Sequence[dict[str, Any]], now: float, actions: Actions) -> None:
        """The config's ``direct_peers``: new ones are tried now, as are known ones whose
        candidates moved (unless direct); gone ones leave the device."""
        wanted = {str(p["public_key"]): p for p in peers}
        for key in list(self.paths):
            if key not in wanted:
                path = self.paths.pop(key)
                if path.state != "relayed":
                    actions.remove.append(key)
                self.log(f"peer {path.peer['peer_id']}: no longer listed, relayed by the hub")
        for key, peer in wanted.items():
            known = self.paths.get(key)
            if known is None:
                self.paths[key] = Path(peer)
                self._try(self.paths[key], now, actions)
                continue
            path = known
            moved = peer.get("endpoints") != path.peer.get("endpoints")
            readdressed = peer.get("addresses") != path.peer.get("addresses")
            path.peer = peer
            if path.state == "direct" and readdressed:
                actions.update.append(direct_spec(path, None))
            elif path.state != "direct" and moved:
                path.failures = 0
                self._try(path, now, actions)

    def step(
        self,
        stats: dict[str, PeerStats],
        now: float,
        wall: float,
        skip: frozenset[str] = frozenset(),
    ) -> Actions:
        """One round: what each path's counters say, and what to change for it (not for the
        paths in ``skip``: a new config just set them)."""
        actions = Actions()
        for path in self.paths.values():
            if path.key in skip:
                continue
            stat = stats.get(path.key)
            if path.state == "relayed":
                if wall >= path.retry_at and path.endpoints:
                    self._try(path, now, actions)
            elif stat is None:  # the device lost it (a repair): start again
                self._try(path, now, actions)
            elif path.state == "trying":
                self._trying(path, stat, now, wall, actions)
            elif stat.rx_bytes > path.rx:
                path.rx, path.heard_at = stat.rx_bytes, now
            elif now - path.heard_at >= STALE_S:
                self._relay(path, wall, actions, f"silent for {now - path.heard_at:.0f}s")
        return actions

    def _try(self, path: Path, now: float, actions: Actions) -> None:
        if not path.endpoints:
            path.state, path.why = "relayed", "no candidate"
            path.retry_at = math.inf  # until the config brings one
            return
        path.state, path.index, path.since, path.rx = "trying", 0, now, 0
        actions.fresh.append(trying_spec(path))

    def _trying(
        self, path: Path, stat: PeerStats, now: float, wall: float, actions: Actions
    ) -> None:
        if stat.rx_bytes > 0:  # it answered: the path works
            path.state, path.rx, path.heard_at, path.failures = "direct", stat.rx_bytes, now, 0
            path.why = ""
            actions.update.append(direct_spec(path, stat.endpoint))
            self.log(f"peer {path.peer['peer_id']}: direct via {stat.endpoint}")
            return
        if now - path.since < TRY_S:
            return
        if path.index + 1 < len(path.endpoints):
            path.index, path.since = path.index + 1, now
            actions.fresh.append(trying_spec(path))
            return
        self._relay(path, wall, actions, "no candidate answered")

    def _relay(self, path: Path, wall: float, actions: Actions, why: str) -> None:
        path.failures += 1
        path.state, path.why = "relayed", why
        path.retry_at = retry_slot(wall, path.failures)
        actions.remove.append(path.key)
        self.log(
            f"peer {path.peer['peer_id']}: relayed by the hub ({why});"
            f" next try in {path.retry_at - wall:.0f}s"
        )


def _endpoint(path: Path, stat: PeerStats | None) -> str | None:
    if path.state == "direct":
        return stat.endpoint if stat else None
    if path.state == "trying":
        return path.endpoints[path.index]
    return None


def local_addresses(netns: str | None, tunnel: str) -> list[str]:
    """This host's global addresses (not the tunnel's, not loopback or link-local)."""
    cmd = ["ip", *(["-n", netns] if netns else []), "-j", "addr", "show"]
    try:
        links = json.loads(subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout)
    except (OSError, ValueError, subprocess.SubprocessError):
        return []
    out: list[str] = []
    for link in links:
        if link.get("ifname") in (tunnel, "lo"):
            continue
        for info in link.get("addr_info", []):
            addr = ipaddress.ip_address(info.get("local", "::"))
            if info.get("scope") != "global" or addr.is_loopback or addr.is_link_local:
                continue
            out.append(str(addr))
    return out[:MAX_ADDRESSES]


class DirectPaths:
    """The thread that keeps direct paths: it owns the device's other peers (never the hub),
    reads the device each :data:`TICK_S`, and reports our candidates to the server."""

    def __init__(
        self,
        interface: str,
        netns: str | None,
        open_dataplane: Callable[[], Any],
        report: Callable[[list[str], int], Any],
        log: Callable[[str], None],
        report_paths: Callable[[list[dict[str, Any]]], Any] | None = None,
    ) -> None:
        self.interface, self.netns = interface, netns
        self.open_dataplane, self.report, self.log = open_dataplane, report, log
        self.report_paths = report_paths
        self._paths_reported: list[dict[str, Any]] | None = None
        self.table = PathTable(log)
        self._pending: list[dict[str, Any]] | None = None
        self._direct = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reported: tuple[list[str], int] | None = None
        self._reported_at = -math.inf
        self._thread: threading.Thread | None = None
        self._stack = contextlib.ExitStack()
        self._reader_dp: Any = None
        self._last_failure = ""

    def follow(self, config: dict[str, Any]) -> None:
        """A new config: its ``direct_peers`` (none when direct is off) for the next round."""
        with self._lock:
            self._pending = list(config.get("direct_peers") or [])
            self._direct = bool(config.get("direct"))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="direct-paths", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self._stack.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.round()
                self._last_failure = ""
            except ElysiumError as exc:  # the device is being repaired: next round
                self._failed(exc.message)
            except Exception as exc:  # the thread must outlive a bad round
                self._failed(f"{type(exc).__name__}: {exc}")
            self._stop.wait(TICK_S)

    def _failed(self, why: str) -> None:
        """One line per kind of failure, not one a second; the reader is opened again."""
        if why != self._last_failure:
            self.log(f"direct paths: {why}")
        self._last_failure = why
        self._stack.close()
        self._stack, self._reader_dp = contextlib.ExitStack(), None

    def round(self) -> None:
        """Take a new config's peers, read the device, apply what the paths decide. Without
        listed peers nothing is read (a hub-only ``run`` costs nothing here)."""
        now, wall = time.monotonic(), time.time()
        actions = Actions()
        with self._lock:
            pending, self._pending = self._pending, None
            direct = self._direct
        if pending is None and not self.table.paths:
            if direct and now - self._reported_at >= REPORT_EVERY_S:
                with self.open_dataplane() as dp:
                    self._report(dp, now)
            return
        if pending is not None:
            self.table.update(pending, now, actions)
        stats = {s.public_key: s for s in self._reader().dump(self.interface)}
        touched = frozenset([s.public_key for s in actions.fresh + actions.update] + actions.remove)
        step = self.table.step(stats, now, wall, touched)
        actions.fresh += step.fresh
        actions.update += step.update
        actions.remove += step.remove
        if actions or direct:
            with self.open_dataplane() as dp:  # fresh: the daemon's own changes are not in
                if actions:  # a long-lived driver's view of the device
                    self._apply(dp, actions)
                if direct:
                    self._report(dp, now)
        self._report_paths(stats)

    def _reader(self) -> Any:
        """The driver the rounds read the device with, opened once (dumps keep no state)."""
        if self._reader_dp is None:
            self._reader_dp = self._stack.enter_context(self.open_dataplane())
        return self._reader_dp

    def _report_paths(self, stats: dict[str, PeerStats]) -> None:
        """Tell the server when a path changed (it shows them with the peer)."""
        now = [
            {
                "peer_id": path.peer["peer_id"],
                "path": path.state,
                "endpoint": _endpoint(path, stats.get(path.key)),
                "why": path.why or None,
            }
            for path in sorted(self.table.paths.values(), key=lambda p: p.peer["peer_id"])
        ]
        if self.report_paths is None or now == self._paths_reported:
            return
        if self._paths_reported is None and not now:
            self._paths_reported = now
            return
        self.report_paths(now)
        self._paths_reported = now

    def _apply(self, dp: Any, actions: Actions) -> None:
        fresh = [s.public_key for s in actions.fresh]
        if fresh or actions.remove:  # a fresh try starts from a new peer: it sends at once
            dp.apply_peers(self.interface, [], [*fresh, *actions.remove])
        if actions.fresh or actions.update:
            dp.apply_peers(self.interface, [*actions.fresh, *actions.update], [])

    def _report(self, dp: Any, now: float) -> None:
        if now - self._reported_at < REPORT_EVERY_S and self._reported is not None:
            return
        found = (local_addresses(self.netns, self.interface), dp.listen_port(self.interface))
        self._reported_at = now
        if found != self._reported:
            self.report(*found)
            self._reported = found
            self.log(f"candidates reported: {', '.join(found[0]) or 'none'} port {found[1]}")


def peer_paths(config: dict[str, Any], stats: Sequence[PeerStats]) -> list[dict[str, Any]]:
    """For ``status``: each listed peer direct (its address routes to it), trying, or
    relayed (through the hub), with the endpoint in use and the last handshake."""
    by_key = {s.public_key: s for s in stats}
    out = []
    for peer in config.get("direct_peers") or []:
        stat = by_key.get(peer["public_key"])
        path = "relayed" if stat is None else ("direct" if stat.allowed_ips else "trying")
        at = stat.last_handshake_at if stat else None
        out.append(
            {
                "peer_id": peer["peer_id"],
                "addresses": peer["addresses"],
                "path": path,
                "endpoint": stat.endpoint if stat else None,
                "latest_handshake_at": at.isoformat().replace("+00:00", "Z") if at else None,
            }
        )
    return out

"""``elysium-client run``: keep the tunnel up and follow the network live.

The daemon brings the tunnel up (or adopts the one already up: a restart carries no gap),
then long-polls ``GET /v1/peer/config?version=V&wait=N``. Each new version is applied as the
smallest change on the one hub peer (allowed IPs and their routes, endpoint, keepalive, hub
key) or on the interface (addresses, MTU, our own key), never by taking the tunnel down; one
log line says what moved. The interface's DNS servers are applied too (``client/dns.py``).
When the server cannot be reached the last config keeps working
and the daemon retries with backoff; a server that no longer knows this peer ends it.
On a direct interface a thread keeps direct paths to the peers the config lists
(``client/direct.py``); ``up`` alone stays hub-only.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime
from types import FrameType
from typing import Any

from client import certificate, dns, exit_routing, receiver_policy, tunnel
from client.api import Api
from client.direct import DirectPaths
from client.errors import EXIT_FAILED, EXIT_TLS, EXIT_UNREACHABLE, ClientError
from client.rotation import api_for
from client.state import Enrollment, StateDir
from elysium.config_delta import apply_delta
from elysium.errors import ElysiumError

WAIT_S = 55  # one long poll; the server caps it (ELYSIUM_CONFIG_WAIT_MAX_S, 60 by default)
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 10.0
INTERFACE_KEYS = ("addresses", "mtu", "public_key")
DIRECT_KEYS = ("direct", "direct_peers", "inbound")
PEER_KEYS = ("allowed_ips", "endpoint", "keepalive", "hub_public_key")


class Stopped(Exception):
    """SIGTERM or SIGINT: leave the loop, and the tunnel up."""


def now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def describe(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What moved between two configs, as a person reads it."""
    out = []
    before, after = set(old.get("allowed_ips") or ()), set(new.get("allowed_ips") or ())
    if before != after:
        moved = [f"+{a}" for a in sorted(after - before)] + [
            f"-{a}" for a in sorted(before - after)
        ]
        out.append("allowed IPs " + " ".join(moved))
    if old.get("direct_peers") != new.get("direct_peers"):
        count = len(new.get("direct_peers") or [])
        out.append(f"direct peers: {count} listed" if new.get("direct") else "direct off")
    for key, label in (
        ("hub_public_key", "hub key"),
        ("endpoint", "endpoint"),
        ("keepalive", "keepalive"),
        ("dns", "DNS"),
        ("addresses", "addresses"),
        ("mtu", "MTU"),
        ("public_key", "our key"),
    ):
        if old.get(key) != new.get(key):
            out.append(f"{label} {_short(old.get(key))} -> {_short(new.get(key))}")
    return out


def _short(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "none"
    text = str(value) if value is not None else "none"
    return text[:8] + "…" if len(text) == 44 and text.endswith("=") else text  # a key


def merged(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The stored config moved to ``new``; the direct-path keys go when ``new`` has none
    (direct switched off: the server leaves them out)."""
    out = {**old, **new}
    for key in DIRECT_KEYS:
        if key not in new:
            out.pop(key, None)
    return out


def apply_config(
    state: StateDir,
    enrollment: Enrollment,
    options: tunnel.TunnelOptions,
    old: dict[str, Any],
    new: dict[str, Any],
) -> None:
    """Move the tunnel from ``old`` to ``new``, touching only what differs."""
    exits = exit_routing.exit_families(new.get("allowed_ips") or ())
    exit_moved = exits != exit_routing.exit_families(old.get("allowed_ips") or ())
    if exit_moved and exits:  # refused before anything changes
        exit_routing.check(options.netns, enrollment.interface, options.routing)
    interface_moved = exit_moved or any(old.get(k) != new.get(k) for k in INTERFACE_KEYS)
    peer_moved = any(old.get(k) != new.get(k) for k in PEER_KEYS)
    enrollment.config = merged(enrollment.config, new)
    with tunnel.dataplane(options) as dp:
        if interface_moved:  # an exit switched marks the tunnel's socket, or no longer
            dp.ensure_interface(tunnel.interface_spec(state, enrollment, options.routing))
        if peer_moved:
            old_key = old.get("hub_public_key")
            gone = [old_key] if old_key and old_key != new.get("hub_public_key") else []
            dp.apply_peers(enrollment.interface, [tunnel.hub_peer(new)], gone)
    if exit_moved:
        exit_routing.apply(options.netns, enrollment.interface, exits, options.routing)


class Follower:
    """One peer's daemon: its state, its tunnel, its server."""

    def __init__(
        self,
        state: StateDir,
        enrollment: Enrollment,
        options: tunnel.TunnelOptions,
        log: Callable[[str], None],
        *,
        wait_s: float = WAIT_S,
        api: Api | None = None,
    ) -> None:
        self.state, self.enrollment, self.options = state, enrollment, options
        self.log, self.wait_s = log, wait_s
        self.api = api or api_for(state, enrollment)
        self.failures = 0
        self.paths = DirectPaths(
            enrollment.interface,
            options.netns,
            lambda: tunnel.dataplane(options),
            self._report_candidates,
            log,
            self._report_paths,
        )

    def _report_paths(self, paths: list[dict[str, Any]]) -> None:
        try:
            api_for(self.state, self.enrollment).put_paths(paths)
        except ClientError as exc:
            self.log(f"could not report paths ({exc.message})")

    def _report_candidates(self, addresses: list[str], listen_port: int) -> None:
        # The paths thread's own client: a requests session is not shared across threads.
        try:
            api_for(self.state, self.enrollment).put_candidates(addresses, listen_port)
        except ClientError as exc:
            self.log(f"could not report candidates ({exc.message}); trying again later")

    @property
    def version(self) -> str | None:
        return self.enrollment.config.get("version")

    def start(self) -> None:
        """Bring the tunnel up, or adopt it as it runs (no gap), with the freshest config."""
        try:
            self._take(self.api.peer_config(), apply=False)
        except ClientError as exc:
            if exc.exit_code == EXIT_TLS:
                raise
            self.log(f"server unreachable ({exc.message}); starting from the stored config")
        adopted = tunnel.is_up(self.enrollment, self.options)
        tunnel.up(self.state, self.enrollment, self.options)
        self._apply_dns()
        self._apply_inbound()
        where = f" in netns {self.enrollment.netns}" if self.enrollment.netns else ""
        self.log(
            f"{self.enrollment.interface}{where} {'adopted' if adopted else 'up'}:"
            f" {', '.join(self.enrollment.config.get('addresses', []))}, config {self.version}"
        )

    def run(self) -> None:
        """Follow until stopped (SIGTERM/SIGINT); expected failures raise ClientError."""
        global _main_pid
        _main_pid = os.getpid()
        previous = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.start()
            self.paths.follow(self.enrollment.config)
            self.paths.start()
            while True:
                self.step()
        except Stopped:
            self.log("stopped; the tunnel stays up (elysium-client down removes it)")
        finally:
            self.paths.stop()
            for s, handler in previous.items():
                signal.signal(s, handler)

    def step(self) -> None:
        """One long poll, and the change it brings (or one backoff after a failure); first a
        new client certificate when ours has lived 2/3 of its life."""
        if certificate.renewal_due(self.state):
            self._renew()
        try:
            answer = self.api.peer_config(self.version, self.wait_s, delta=True)
            if "base" in answer:  # only what moved since our version
                whole = apply_delta(self.enrollment.config, answer)
                if whole is None:
                    self.log(f"delta to {answer['version']} did not apply; reading it whole")
                    whole = self.api.peer_config()
                answer = whole
        except ClientError as exc:
            if not _retryable(exc):
                raise
            self._backoff(f"server unreachable ({exc.message})")
            return
        if self.failures:
            self.log(f"server back after {self.failures} failed attempt(s)")
            self.failures = 0
        try:
            self._take(answer, apply=True)
        except ElysiumError as exc:  # the dataplane said no: repair it whole, then go on
            self.log(f"could not apply config {answer.get('version')}: {exc.message}; repairing")
            self._repair()

    def _renew(self) -> None:
        try:
            until = certificate.renew(self.state, self.api)
        except ClientError as exc:  # the old certificate still works: try again next time
            if exc.exit_code == EXIT_TLS:
                raise
            self.log(f"certificate renewal failed ({exc.message}); the old one is kept")
            return
        self.log(f"client certificate renewed, valid until {until:%Y-%m-%d %H:%M}Z")

    def _take(self, answer: dict[str, Any], *, apply: bool) -> None:
        old = dict(self.enrollment.config)
        self.enrollment.checked_at = now_text()
        if answer.get("version") == old.get("version"):
            self.state.save(self.enrollment)
            return
        moved = describe(old, answer)
        if apply:
            apply_config(self.state, self.enrollment, self.options, old, answer)
            if old.get("dns") != answer.get("dns"):
                self._apply_dns()
            if old.get("inbound") != answer.get("inbound"):
                self._apply_inbound(old.get("inbound"))
        else:
            self.enrollment.config = merged(old, answer)
        self.enrollment.config_at = self.enrollment.checked_at
        self.state.save(self.enrollment)
        if apply:
            self.paths.follow(self.enrollment.config)
            what = "; ".join(moved) or "nothing the tunnel uses"
            self.log(f"config {old.get('version')} -> {answer.get('version')}: {what}")

    def _apply_dns(self) -> None:
        config = self.enrollment.config
        dns.apply(
            self.state.path, self.options.netns, self.enrollment.interface, config.get("dns") or []
        )

    def _apply_inbound(self, previous: dict[str, Any] | None = None) -> None:
        """The peer's own table for what reaches it on a direct interface, or none;
        ``previous``: the inbound it enforced until now (a join then only adds an element)."""
        receiver_policy.apply(
            self.options.netns,
            self.enrollment.interface,
            self.enrollment.config.get("inbound"),
            previous,
        )

    def _repair(self) -> None:
        try:
            tunnel.up(self.state, self.enrollment, self.options)
            self._apply_dns()
        except ElysiumError as exc:
            self._backoff(f"tunnel repair failed ({exc.message})")

    def _backoff(self, why: str) -> None:
        self.failures += 1
        delay = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (self.failures - 1))
        delay *= random.uniform(0.5, 1.0)  # a thousand peers do not come back at once
        if self.failures == 1 or self.failures % 10 == 0:  # one line, not one per try
            self.log(f"{why}; keeping config {self.version}, retrying")
        time.sleep(delay)


def _retryable(exc: ClientError) -> bool:
    """The server is away or busy (not: it refuses us)."""
    if exc.exit_code == EXIT_UNREACHABLE:
        return True
    if exc.exit_code == EXIT_FAILED and exc.code.startswith("http_5"):
        return True
    return exc.code in ("database_unavailable", "too_many_waiting", "unavailable", "bad_answer")


_main_pid = 0


def _stop(signum: int, frame: FrameType | None) -> None:
    if os.getpid() != _main_pid:  # a forked helper (pyroute2 in a netns) ends as by default
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    raise Stopped()

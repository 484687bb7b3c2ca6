"""What both drivers share: validate, read the device, diff, write one batch, fix routes.

A backend (``UapiDriver``, ``KernelDriver``) only knows how to start, read, write and stop a
device; everything about *what* to write lives here, once.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import json
import socket
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path

from pyroute2 import netns as pyroute2_netns

from dataplane.base import ChangeSet, InterfaceSpec, PeerSpec, PeerStats
from dataplane.links import InterfaceLinks, require_netns
from dataplane.peer_state import (
    DeviceState,
    DeviceUpdate,
    PeerIndex,
    PeerState,
    PeerUpdate,
    diff_peers,
    peer_update,
)
from dataplane.validation import check_ifname, check_interface, check_key, desired_peers
from elysium.errors import DataplaneError, ValidationError
from elysium.keys import load_or_create_private_key, public_key


class ConvergingDriver(ABC):
    """The :class:`~dataplane.base.Dataplane` protocol on top of a device backend."""

    def __init__(self, state_dir: Path, netns: str | None) -> None:
        self.state_dir = Path(state_dir)
        self.netns = netns
        self.dir = self.state_dir / "netns" / (netns or "host")
        self.links = InterfaceLinks(netns)
        self._index: dict[str, PeerIndex] = {}
        self._checked: dict[str, dict[PeerSpec, PeerState]] = {}  # last converge's valid specs

    # -- what a backend provides ------------------------------------------------------------
    @abstractmethod
    def _running(self, name: str) -> bool: ...

    @abstractmethod
    def _create(self, name: str) -> None: ...

    @abstractmethod
    def _destroy(self, name: str) -> bool: ...

    @abstractmethod
    def _read(self, name: str) -> DeviceState: ...

    @abstractmethod
    def _write(self, name: str, update: DeviceUpdate) -> None: ...

    @abstractmethod
    def _stats(self, name: str) -> list[PeerStats]: ...

    @abstractmethod
    def _names(self) -> list[str]: ...

    # -- the protocol -----------------------------------------------------------------------
    def ensure_interface(self, spec: InterfaceSpec) -> tuple[str, ChangeSet]:
        """Create or repair the interface (device, key, port, addresses, MTU, link up)."""
        check_interface(spec)
        require_netns(self.netns)
        private = self._private_key(spec)
        changes = ChangeSet()
        state = self._start_or_read(spec, changes)
        update = DeviceUpdate()
        try:
            self._plan_interface(spec, private, state, update, changes)
            if not update.empty:
                self._write(spec.name, update)
                changes.transactions += 1
            changes.interface_changed += self.links.configure(spec.name, spec.addresses, spec.mtu)
        except Exception:
            if changes.interface_created:
                self._destroy(spec.name)
            raise
        self._save_spec(spec)
        return public_key(private), changes

    def converge(self, name: str, peers: Sequence[PeerSpec]) -> ChangeSet:
        """Make the interface hold exactly ``peers`` and their routes: one read, one write."""
        with gc_paused():
            return self._converge(name, peers)

    def _converge(self, name: str, peers: Sequence[PeerSpec]) -> ChangeSet:
        check_ifname(name)
        want = desired_peers(peers, self._checked.setdefault(name, {}))
        require_netns(self.netns)
        changes = ChangeSet()
        spec = self._load_spec(name)
        update = DeviceUpdate()
        if spec is not None:
            state = self._start_or_read(spec, changes)
            self._plan_interface(spec, self._private_key(spec), state, update, changes)
            changes.interface_changed += self.links.configure(name, spec.addresses, spec.mtu)
        else:
            self._require_running(name)
            state = self._read(name)
        diff = diff_peers(state.peers, want)
        update.peers = diff.updates
        want_routes = {r for p in want.values() for r in p.routes}
        have_routes = self.links.routes(name)
        changes.routes_added = self.links.add_routes(name, sorted(want_routes - have_routes))
        if not update.empty:
            try:
                self._write(name, update)
            except Exception:
                self.links.remove_routes(name, changes.routes_added)
                raise
            changes.transactions += 1
        changes.routes_removed = self.links.remove_routes(name, sorted(have_routes - want_routes))
        changes.added, changes.updated, changes.removed = diff.added, diff.updated, diff.removed
        self._index[name] = PeerIndex(dict(want))
        return changes

    def apply_peers(
        self, name: str, upsert: Sequence[PeerSpec], remove: Sequence[str]
    ) -> ChangeSet:
        """Set some peers and remove others without reading the rest: O(k), one batch.

        A device that is not running raises ``device_not_running`` (retryable): run converge, which
        restarts it and restores every peer.
        """
        check_ifname(name)
        want = desired_peers(upsert)
        gone = {check_key(key, "remove") for key in remove} - want.keys()
        require_netns(self.netns)
        self._require_running(name)
        index = self._peer_index(name)
        changes = ChangeSet()
        updates: list[PeerUpdate] = []
        touched_routes: set[str] = set()
        for key, peer in want.items():
            have = index.peers.get(key)
            update = peer_update(peer, have)
            if update is None and have is not None and have.routes == peer.routes:
                continue
            if update is None:  # same device config, only routes differ
                pass
            elif have is None:
                updates.append(update)
            else:  # full entry, no update_only: right even if our index missed a removal
                updates.append(
                    PeerUpdate(
                        public_key=key,
                        replace_allowed_ips=True,
                        allowed_ips=tuple(sorted(peer.allowed_ips)),
                        endpoint=peer.endpoint,
                        keepalive=peer.keepalive,
                        preshared_key=peer.preshared_key or "",
                    )
                )
            (changes.added if have is None else changes.updated).append(key)
            touched_routes |= peer.routes | (have.routes if have else frozenset())
            touched_routes |= {r for ip in peer.allowed_ips if (r := self._route_of(index, ip))}
        for key in gone:
            updates.append(PeerUpdate(public_key=key, remove=True))
            old = index.peers.get(key)
            if old is not None:
                changes.removed.append(key)
                touched_routes |= old.routes
        before = {r for r in touched_routes if self._route_of(index, r)}
        after_index = _IndexView(index, want, gone)
        after = {r for r in touched_routes if after_index.routed(r)}
        if after - before:
            changes.routes_added = self.links.add_routes(name, sorted(after - before))
        if updates:
            try:
                self._write(name, DeviceUpdate(peers=updates))
            except Exception:
                self.links.remove_routes(name, changes.routes_added)
                raise
            changes.transactions += 1
        if before - after:
            changes.routes_removed = self.links.remove_routes(name, sorted(before - after))
        for key in gone:
            index.drop(key)
        for peer in want.values():
            index.put(peer)
        return changes

    def dump(self, name: str) -> list[PeerStats]:
        """Every peer's endpoint, latest handshake and counters, from one read."""
        check_ifname(name)
        require_netns(self.netns)
        self._require_running(name)
        with gc_paused():
            return self._stats(name)

    def listen_port(self, name: str) -> int:
        """The UDP port the running interface listens on, read from the device."""
        check_ifname(name)
        require_netns(self.netns)
        self._require_running(name)
        return self._read(name).listen_port

    def remove_interface(self, name: str) -> bool:
        """Stop the device, drop our routes and its saved spec; False when it was not there."""
        check_ifname(name)
        require_netns(self.netns)
        self._index.pop(name, None)
        self._checked.pop(name, None)
        if self._running(name):
            self.links.remove_routes(name, self.links.routes(name))
        existed = self._destroy(name)
        with contextlib.suppress(FileNotFoundError):
            self._spec_path(name).unlink()
        return existed

    def list_interfaces(self) -> list[str]:
        """Names of the WireGuard interfaces this driver runs in its namespace."""
        require_netns(self.netns)
        return self._names()

    def close(self) -> None:
        """Release the rtnetlink socket; devices keep running (a later call reopens it)."""
        self.links.close()

    # -- shared steps -----------------------------------------------------------------------
    def _start_or_read(self, spec: InterfaceSpec, changes: ChangeSet) -> DeviceState:
        if self._running(spec.name):
            try:
                return self._read(spec.name)
            except DataplaneError as exc:  # alive but deaf: restart it
                if exc.code != "device_not_running":
                    raise
        if spec.listen_port:
            self._require_port_free(spec.listen_port)
        self._create(spec.name)
        self._index.pop(spec.name, None)
        changes.interface_created = True
        return DeviceState()

    def _plan_interface(
        self,
        spec: InterfaceSpec,
        private: str,
        state: DeviceState,
        update: DeviceUpdate,
        changes: ChangeSet,
    ) -> None:
        """Fill the device settings of ``update``; check a new port is free first."""
        if spec.listen_port and spec.listen_port != state.listen_port:
            if not changes.interface_created:
                self._require_port_free(spec.listen_port)
            update.listen_port = spec.listen_port
            changes.interface_changed.append("listen_port")
        if state.private_key != private:
            update.private_key = private
            changes.interface_changed.append("private_key")
        if (spec.fwmark or 0) != state.fwmark:
            update.fwmark = spec.fwmark or 0
            changes.interface_changed.append("fwmark")

    def _require_running(self, name: str) -> None:
        if not self._running(name):
            code = "device_not_running" if self._spec_path(name).exists() else "interface_not_found"
            raise DataplaneError(
                f"interface {name} is not running",
                code=code,
                retryable=code == "device_not_running",
            )

    def _require_port_free(self, port: int) -> None:
        for family, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
            try:
                sock = pyroute2_netns.create_socket(self.netns, family, socket.SOCK_DGRAM, flags=0)
            except OSError:
                continue  # no such family in this namespace
            with sock:
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                try:
                    sock.bind((addr, port))
                except OSError as exc:
                    if exc.errno != errno.EADDRINUSE:
                        raise
                    raise DataplaneError(
                        f"UDP port {port} is already in use",
                        code="port_in_use",
                        fields={"listen_port": "already in use"},
                    ) from None

    def _peer_index(self, name: str) -> PeerIndex:
        index = self._index.get(name)
        if index is None:
            state = self._read(name)
            routed = self.links.routes(name)
            index = PeerIndex(
                {k: _with_routes(p, p.allowed_ips & routed) for k, p in state.peers.items()}
            )
            self._index[name] = index
        return index

    @staticmethod
    def _route_of(index: PeerIndex, dst: str) -> str | None:
        owner = index.owner.get(dst)
        return dst if owner is not None and dst in index.peers[owner].routes else None

    def _private_key(self, spec: InterfaceSpec) -> str:
        try:
            return load_or_create_private_key(Path(spec.private_key_file))
        except ValidationError as exc:
            raise DataplaneError(
                f"{spec.private_key_file}: {exc.message}",
                code="invalid_private_key",
                retryable=True,
            ) from None
        except OSError as exc:
            raise DataplaneError(
                f"{spec.private_key_file}: {exc}", code="private_key_unreadable", retryable=True
            ) from None

    def _spec_path(self, name: str) -> Path:
        return self.dir / f"{name}.json"

    def _save_spec(self, spec: InterfaceSpec) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = {
            "private_key_file": str(spec.private_key_file),
            "listen_port": spec.listen_port,
            "addresses": list(spec.addresses),
            "mtu": spec.mtu,
            "fwmark": spec.fwmark,
        }
        tmp = self._spec_path(spec.name).with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(self._spec_path(spec.name))

    def _load_spec(self, name: str) -> InterfaceSpec | None:
        """The spec of the last ensure_interface, so a crashed device can be restarted."""
        try:
            data = json.loads(self._spec_path(name).read_text())
        except (OSError, ValueError):
            return None
        return InterfaceSpec(
            name=name,
            private_key_file=Path(data["private_key_file"]),
            listen_port=data["listen_port"],
            addresses=tuple(data["addresses"]),
            mtu=data["mtu"],
            fwmark=data["fwmark"],
        )


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic GC inside: a 10k-peer converge or dump makes tens of thousands of objects
    (none in cycles), which would trigger several full-heap collections for nothing."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


class _IndexView:
    """The index as it will be once ``want`` is put and ``gone`` dropped (without changing it)."""

    def __init__(self, index: PeerIndex, want: dict[str, PeerState], gone: set[str]) -> None:
        self.index, self.want, self.gone = index, want, gone
        self.new_owner = {ip: k for k, p in want.items() for ip in p.allowed_ips}

    def routed(self, dst: str) -> bool:
        owner = self.new_owner.get(dst)
        if owner is not None:
            return dst in self.want[owner].routes
        owner = self.index.owner.get(dst)
        if owner is None or owner in self.gone or owner in self.want:
            return False
        return dst in self.index.peers[owner].routes


def _with_routes(peer: PeerState, routes: frozenset[str]) -> PeerState:
    return PeerState(
        peer.public_key, peer.allowed_ips, peer.endpoint, peer.keepalive, peer.preshared_key, routes
    )

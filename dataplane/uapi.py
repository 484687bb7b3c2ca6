"""The userspace driver: wireguard-go devices programmed over their UAPI socket.

One ``wireguard-go -f <ifname>`` per interface, started inside the namespace; keys, port and
peers go through the UAPI text protocol (one ``set=1`` per converge/apply); addresses, MTU,
link state and routes go through rtnetlink. No ``wg`` binary is involved.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from dataplane.base import PeerStats
from dataplane.driver import ConvergingDriver
from dataplane.peer_state import DeviceState, DeviceUpdate
from dataplane.uapi_protocol import StatsReader, encode_set_parts, parse_state, transact
from dataplane.wireguard_go import GET, WireguardGo
from elysium.errors import DataplaneError


class UapiDriver(ConvergingDriver):
    """WireGuard through wireguard-go, for hosts without the kernel module (and for tests).

    Devices outlive the worker (their processes run in their own session); a later driver
    for the same ``state_dir`` and ``netns`` finds them again through their pidfiles.
    """

    def __init__(
        self, state_dir: Path, netns: str | None, wireguard_go: str = "wireguard-go"
    ) -> None:
        super().__init__(state_dir, netns)
        self.processes = WireguardGo(self.state_dir, netns, wireguard_go)
        self._readers: dict[str, StatsReader] = {}  # per interface: peers of its last dump

    def socket_path(self, name: str) -> Path:
        """The UAPI socket of ``name`` (``wg`` finds it when this dir is on /run/wireguard)."""
        return self.processes.socket_path(name)

    def _running(self, name: str) -> bool:
        # Cheap on purpose (no get=1): whether the socket answers is seen by the next read.
        return self.processes.pid(name) is not None and self.socket_path(name).exists()

    def _create(self, name: str) -> None:
        self.processes.start(name)

    def _destroy(self, name: str) -> bool:
        self._readers.pop(name, None)
        return self.processes.stop(name)

    def _names(self) -> list[str]:
        return self.processes.names()

    def _transact(self, name: str, request: bytes | Iterable[bytes]) -> bytes:
        """One UAPI request; a socket that does not answer means the device is not running."""
        try:
            return transact(self.socket_path(name), request)
        except OSError as exc:
            raise DataplaneError(
                f"{name}: UAPI socket does not answer: {exc}",
                code="device_not_running",
                retryable=True,
            ) from exc

    def _read(self, name: str) -> DeviceState:
        return parse_state(self._transact(name, GET))

    def forget_dumps(self) -> None:
        """Forget every device's last dump: the next dump parses each peer afresh."""
        self._readers.clear()

    def _stats(self, name: str) -> list[PeerStats]:
        reader = self._readers.get(name)
        if reader is None:
            reader = self._readers[name] = StatsReader()
        return reader.parse(self._transact(name, GET))

    def _write(self, name: str, update: DeviceUpdate) -> None:
        self._transact(name, encode_set_parts(update))

"""The userspace driver: wireguard-go devices programmed over their UAPI socket.

One ``wireguard-go -f <ifname>`` per interface, started inside the namespace; keys, port and
peers go through the UAPI text protocol (one ``set=1`` per converge/apply); addresses, MTU,
link state and routes go through rtnetlink. No ``wg`` binary is involved.
"""

from __future__ import annotations

from pathlib import Path

from dataplane.base import PeerStats
from dataplane.driver import ConvergingDriver
from dataplane.peer_state import DeviceState, DeviceUpdate
from dataplane.uapi_protocol import encode_set_parts, parse_state, parse_stats, transact
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

    def socket_path(self, name: str) -> Path:
        """The UAPI socket of ``name`` (``wg`` finds it when this dir is on /run/wireguard)."""
        return self.processes.socket_path(name)

    def _running(self, name: str) -> bool:
        # Cheap on purpose (no get=1): whether the socket answers is seen by the next read.
        return self.processes.pid(name) is not None and self.socket_path(name).exists()

    def _create(self, name: str) -> None:
        self.processes.start(name)

    def _destroy(self, name: str) -> bool:
        return self.processes.stop(name)

    def _names(self) -> list[str]:
        return self.processes.names()

    def _get(self, name: str) -> bytes:
        try:
            return transact(self.socket_path(name), GET)
        except OSError as exc:
            raise DataplaneError(
                f"{name}: UAPI socket does not answer: {exc}",
                code="device_not_running",
                retryable=True,
            ) from exc

    def _read(self, name: str) -> DeviceState:
        return parse_state(self._get(name))

    def _stats(self, name: str) -> list[PeerStats]:
        return parse_stats(self._get(name))

    def _write(self, name: str, update: DeviceUpdate) -> None:
        try:
            transact(self.socket_path(name), encode_set_parts(update))
        except OSError as exc:
            raise DataplaneError(
                f"{name}: UAPI socket does not answer: {exc}",
                code="device_not_running",
                retryable=True,
            ) from exc

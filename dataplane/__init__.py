"""WireGuard on one host: one protocol, a userspace (wireguard-go UAPI) and a kernel driver."""

from __future__ import annotations

from pathlib import Path

from dataplane.base import (
    ChangeSet,
    Dataplane,
    InterfaceSpec,
    PeerSpec,
    PeerStats,
)
from elysium.errors import ConfigError

__all__ = [
    "ChangeSet",
    "Dataplane",
    "InterfaceSpec",
    "PeerSpec",
    "PeerStats",
    "make_dataplane",
]


def make_dataplane(
    settings_driver: str,
    state_dir: Path,
    netns: str | None,
    wireguard_go: str = "wireguard-go",
) -> Dataplane:
    """The driver ``settings_driver`` names: ``kernel``, ``userspace``, or ``auto``.

    ``auto`` takes the kernel driver when the kernel speaks WireGuard, wireguard-go otherwise.
    A forced ``kernel`` without kernel support raises ``wireguard_unavailable``.
    """
    from dataplane.kernel import KernelDriver, kernel_wireguard_available
    from dataplane.uapi import UapiDriver

    if settings_driver not in ("auto", "kernel", "userspace"):
        raise ConfigError("wg_driver must be auto, kernel or userspace", "wg_driver")
    if settings_driver == "kernel" or (
        settings_driver == "auto" and kernel_wireguard_available(netns)
    ):
        return KernelDriver(state_dir, netns)
    return UapiDriver(state_dir, netns, wireguard_go)

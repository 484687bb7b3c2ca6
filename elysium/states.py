"""The named states of peers, jobs and interfaces, and what each group of them means.

The database stores these values as text (CHECK constraints in ``db/migrations``); every
comparison in Python or SQL goes through the names and groups here.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class PeerStatus(StrEnum):
    PENDING = "pending"  # recorded; its hub has not applied it yet
    ACTIVE = "active"  # on its hub's device
    REMOVING = "removing"  # being taken off its hub (DELETE)
    REMOVED = "removed"
    EXPIRED = "expired"  # past expires_at: being or been taken off its hub
    FAILED = "failed"  # its hub refused it


# The one definition of a live peer: on its hub, or on its way there. Only a live peer may
# call the API with its certificate, be changed, or route subnets.
LIVE_PEER = frozenset({PeerStatus.PENDING, PeerStatus.ACTIVE})
# Ended peers give up their key, name and addresses to newcomers.
ENDED_PEER = frozenset({PeerStatus.REMOVED, PeerStatus.EXPIRED, PeerStatus.FAILED})
# Peers whose hub must still take them off the device.
LEAVING_PEER = frozenset({PeerStatus.REMOVING, PeerStatus.EXPIRED, PeerStatus.FAILED})


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


OPEN_JOB = frozenset({JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.RETRYING})
FINAL_JOB = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED})


class InterfaceStatus(StrEnum):
    PENDING = "pending"  # recorded; its hub has not built it yet
    READY = "ready"
    FAILED = "failed"
    DELETING = "deleting"


class Scope(StrEnum):
    """API token scopes, each including the ones after it."""

    ADMIN = "admin"
    OPERATOR = "operator"
    READER = "reader"


def is_live_peer(status: str) -> bool:
    return status in LIVE_PEER


def sql_list(states: Iterable[str]) -> list[str]:
    """A group of states as a query parameter (``status = ANY(%s)``), in a stable order."""
    return sorted(str(s) for s in states)

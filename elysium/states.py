"""The named states of peers, jobs and interfaces, the kinds of jobs, and what each group of
them means.

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


class JobKind(StrEnum):
    """What a job asks for; its hub worker (or, for a renewal, the control worker) acts on it."""

    ADD_PEER = "add_peer"
    ENROLL_PEER = "enroll_peer"
    UPDATE_PEER = "update_peer"
    REMOVE_PEER = "remove_peer"
    EXPIRE_PEER = "expire_peer"
    ROTATE_KEY = "rotate_key"  # a peer's key
    RENEW_CERTIFICATE = "renew_certificate"  # signed by the control worker, no hub work
    CREATE_INTERFACE = "create_interface"
    DELETE_INTERFACE = "delete_interface"
    UPDATE_INTERFACE = "update_interface"
    ROTATE_INTERFACE_KEY = "rotate_interface_key"
    SET_POLICY = "set_policy"
    MESH_LINK = "mesh_link"  # program this hub's link to another hub again


# Peer jobs a hub takes in bursts, one dataplane transaction per interface.
PEER_KINDS = frozenset(
    {
        JobKind.ADD_PEER,
        JobKind.ENROLL_PEER,
        JobKind.UPDATE_PEER,
        JobKind.REMOVE_PEER,
        JobKind.EXPIRE_PEER,
        JobKind.ROTATE_KEY,
    }
)
# Peer jobs whose result is the peer's config (a new peer, or a new key).
CONFIG_KINDS = frozenset({JobKind.ADD_PEER, JobKind.ENROLL_PEER, JobKind.ROTATE_KEY})
# Jobs that change what the hub enforces for an interface: routes, exit, NAT, its policy.
POLICY_KINDS = frozenset({JobKind.UPDATE_INTERFACE, JobKind.SET_POLICY})
# Interface jobs that may move the networks behind a hub, so linked hubs must follow.
MESH_INTERFACE_KINDS = frozenset(
    {JobKind.CREATE_INTERFACE, JobKind.DELETE_INTERFACE, JobKind.UPDATE_INTERFACE}
)
# Peer jobs that may move a peer's subnets or tags, which linked hubs route or filter by
# (a key rotation moves neither: linked hubs hold no peer keys).
MESH_PEER_KINDS = PEER_KINDS - {JobKind.ROTATE_KEY}


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

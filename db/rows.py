"""The rows that cross modules, as types: what each resource's standard query returns.

Each matches the column list of its module (``HUB_COLUMNS``, ``INTERFACE_COLUMNS``,
``PEER_COLUMNS``, ``JOB_COLUMNS``); psycopg's dict rows are cast to them at the boundary, so
a misspelt key is a type error, not a KeyError at run time.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, TypedDict


class HubRow(TypedDict):
    id: int
    name: str
    endpoint: str
    created_at: datetime
    last_heartbeat_at: datetime | None
    worker: dict[str, Any] | None
    stale: bool


class InterfaceRow(TypedDict):
    id: int
    hub_id: int
    hub: str  # the hub's name
    hub_endpoint: str
    hub_meshed: bool  # the hub is in the mesh (its changes may concern other hubs)
    name: str
    network: str
    network6: str | None
    listen_port: int
    mtu: int | None
    dns: list[str]
    keepalive: int | None
    public_key: str | None
    status: str  # elysium.states.InterfaceStatus
    routes: list[str]  # networks behind the hub that its peers may reach
    exit: bool  # the hub is its peers' default route
    nat: dict[str, str] | None  # {"egress": DEVICE}; None: no masquerade (or never said)
    direct: bool  # its peers may connect to each other directly where policy lets them
    policy: dict[str, Any]  # elysium.policy's JSON form: {"default", "rules"}
    created_at: datetime
    updated_at: datetime


class PeerRow(TypedDict):
    id: int
    interface_id: int
    name: str
    public_key: str
    address: str | None
    address6: str | None
    subnets: list[str]
    tags: list[str]
    enabled: bool
    status: str  # elysium.states.PeerStatus
    expires_at: datetime | None
    online: bool
    endpoint: str | None
    last_handshake_at: datetime | None
    rx_bytes: int
    tx_bytes: int
    enrollment_token_id: int | None
    created_at: datetime
    updated_at: datetime


class DesiredPeer(TypedDict):
    """What a hub needs of a peer to put it on its device and in its policy's sets."""

    id: int
    public_key: str
    address: str
    address6: str | None
    subnets: list[str]
    tags: list[str]  # for the policy's tag sets


class JobRow(TypedDict):
    id: uuid.UUID
    kind: str
    status: str  # elysium.states.JobStatus
    queue: str
    payload: dict[str, Any]
    result: dict[str, Any] | None
    error_code: str | None
    error_message: str | None
    attempts: int
    idempotency_key: str | None
    request_hash: str | None
    submitter: str
    hub_id: int | None
    interface_id: int | None
    peer_id: int | None
    created_at: datetime
    enqueued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime

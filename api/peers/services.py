"""Adding, changing, removing peers and rotating their keys: record, then let the hub converge."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from psycopg import Connection
from psycopg.rows import DictRow

from api.jobs.services import Record, Submitted, submit_hub_job
from db.interfaces import get_interface
from db.peers import claim_subnets, create_peer, get_peer, update_peer
from elysium.errors import Conflict, ValidationError
from elysium.keys import normalize_key
from elysium.networks import IPNetwork, check_subnets_outside, parse_subnets
from elysium.queue import JobQueue

GONE = ("removing", "removed", "expired", "failed")


def check_expiry(expires_at: datetime | None, field: str = "expires_at") -> None:
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise ValidationError(field, "must carry a time zone (RFC 3339)")
        if expires_at <= datetime.now(UTC):
            raise ValidationError(field, "must be in the future")


def routed_subnets(iface: dict[str, Any], subnets: Any) -> list[IPNetwork]:
    """A peer's routed subnets: valid, and outside the interface's own networks."""
    nets = parse_subnets(list(subnets) if isinstance(subnets, list | tuple) else subnets)
    own = [ipaddress.ip_network(iface["network"])]
    if iface["network6"]:
        own.append(ipaddress.ip_network(iface["network6"]))
    check_subnets_outside(nets, own)
    return nets


def peer_record(iface: dict[str, Any], peer_id: int, payload: dict[str, Any]) -> Record:
    """What a job about one peer of ``iface`` acts on."""
    return Record(
        hub=iface["hub"],
        target=f"peer:{peer_id}",
        hub_id=iface["hub_id"],
        interface_id=iface["id"],
        peer_id=peer_id,
        payload=payload,
    )


def record_new_peer(
    c: Connection[DictRow],
    interface_id: int,
    *,
    name: str,
    public_key: str,
    subnets: Sequence[str],
    expires_at: datetime | None,
    actor: str,
    enrollment_token_id: int | None = None,
    payload: dict[str, Any] | None = None,
) -> Record:
    """Validate against the interface, allocate addresses, insert the pending peer."""
    iface = get_interface(c, interface_id)
    if iface["status"] == "deleting":
        raise Conflict("the interface is being deleted", code="interface_deleting")
    nets = routed_subnets(iface, subnets)
    claim_subnets(c, iface, nets)
    peer = create_peer(
        c,
        interface_id,
        name,
        public_key,
        [str(n) for n in nets],
        expires_at,
        actor,
        enrollment_token_id,
        has_ipv6=iface["network6"] is not None,
    )
    return Record(
        hub=iface["hub"],
        target=f"peer:{peer['id']}",
        hub_id=iface["hub_id"],
        interface_id=interface_id,
        peer_id=peer["id"],
        payload=payload or {},
    )


def add_peer(
    conn: Connection[DictRow],
    queue: JobQueue,
    actor: str,
    interface_id: int,
    *,
    name: str,
    public_key: str,
    subnets: Sequence[str] = (),
    expires_at: datetime | None = None,
    idempotency_key: str | None = None,
) -> Submitted:
    """Add a peer whose public key is known; the job result holds its config."""
    key = normalize_key(public_key)
    check_expiry(expires_at)

    def write(c: Connection[DictRow]) -> Record:
        return record_new_peer(
            c,
            interface_id,
            name=name,
            public_key=key,
            subnets=subnets,
            expires_at=expires_at,
            actor=actor,
        )

    return submit_hub_job(
        conn, queue, kind="add_peer", submitter=actor, idempotency_key=idempotency_key, write=write
    )


def _live_peer(c: Connection[DictRow], peer_id: int) -> dict[str, Any]:
    peer = get_peer(c, peer_id, lock=True)
    if peer["status"] in GONE:
        raise Conflict(f"peer {peer_id} is {peer['status']}", code="peer_gone")
    return peer


def change_peer(
    conn: Connection[DictRow],
    queue: JobQueue,
    actor: str,
    peer_id: int,
    changes: dict[str, Any],
    idempotency_key: str | None = None,
) -> Submitted:
    """PATCH: enabled, subnets, expires_at."""
    unknown = set(changes) - {"enabled", "subnets", "expires_at"}
    if unknown:
        raise ValidationError(sorted(unknown)[0], "cannot be changed")
    if "expires_at" in changes:
        check_expiry(changes["expires_at"])

    def write(c: Connection[DictRow]) -> Record:
        peer = _live_peer(c, peer_id)
        iface = get_interface(c, peer["interface_id"])
        values = dict(changes)
        if "subnets" in values:
            nets = routed_subnets(iface, values["subnets"])
            claim_subnets(c, iface, nets, peer_id)
            values["subnets"] = [str(n) for n in nets]
        update_peer(c, peer_id, values)
        return peer_record(
            iface,
            peer_id,
            payload={
                k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in values.items()
            },
        )

    return submit_hub_job(
        conn,
        queue,
        kind="update_peer",
        submitter=actor,
        idempotency_key=idempotency_key,
        write=write,
    )


def remove_peer(
    conn: Connection[DictRow],
    queue: JobQueue,
    actor: str,
    peer_id: int,
    idempotency_key: str | None = None,
    *,
    kind: str = "remove_peer",
) -> Submitted:
    """Take a peer off its hub; its address is released when the hub has removed it."""

    def write(c: Connection[DictRow]) -> Record:
        peer = _live_peer(c, peer_id)
        iface = get_interface(c, peer["interface_id"])
        update_peer(c, peer_id, {"status": "expired" if kind == "expire_peer" else "removing"})
        return peer_record(
            iface,
            peer_id,
            payload={"public_key": peer["public_key"]},
        )

    return submit_hub_job(
        conn, queue, kind=kind, submitter=actor, idempotency_key=idempotency_key, write=write
    )


def rotate_key(
    conn: Connection[DictRow],
    queue: JobQueue,
    actor: str,
    peer_id: int,
    public_key: str,
    idempotency_key: str | None = None,
) -> Submitted:
    """Replace a peer's public key: the hub drops the old key and sets the new one at once."""
    key = normalize_key(public_key)

    def write(c: Connection[DictRow]) -> Record:
        peer = _live_peer(c, peer_id)
        if peer["public_key"] == key:
            raise ValidationError("public_key", "is the current key", code="same_key")
        iface = get_interface(c, peer["interface_id"])
        update_peer(c, peer_id, {"public_key": key})
        return peer_record(
            iface,
            peer_id,
            payload={"old_public_key": peer["public_key"], "public_key": key},
        )

    return submit_hub_job(
        conn,
        queue,
        kind="rotate_key",
        submitter=actor,
        idempotency_key=idempotency_key,
        write=write,
    )

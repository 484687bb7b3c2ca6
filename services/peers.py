"""Adding, changing, removing, expiring peers and rotating their keys: record, then let the
hub converge."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from psycopg import Connection
from psycopg.rows import DictRow

from db.interfaces import get_interface
from db.peers import (
    TokenUse,
    claim_subnets,
    create_peer,
    expire_due_peers,
    get_peer,
    insert_peer_and_commit,
    update_peer,
)
from db.rows import InterfaceRow, PeerRow
from elysium.errors import Conflict, ValidationError
from elysium.keys import normalize_key
from elysium.networks import IPNetwork, check_subnets_outside, parse_subnets
from elysium.queue import JobQueue
from elysium.states import InterfaceStatus, JobKind, PeerStatus, is_live_peer
from elysium.tags import check_tags
from services.changes import check_changeable
from services.jobs import Record, Submitted, record_hub_job, send, submit_hub_job
from services.mesh_jobs import followups


def check_expiry(expires_at: datetime | None, field: str = "expires_at") -> None:
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise ValidationError(field, "must carry a time zone (RFC 3339)")
        if expires_at <= datetime.now(UTC):
            raise ValidationError(field, "must be in the future")


def routed_subnets(iface: InterfaceRow, subnets: Any) -> list[IPNetwork]:
    """A peer's routed subnets: valid, and outside the interface's own networks."""
    nets = parse_subnets(list(subnets) if isinstance(subnets, list | tuple) else subnets)
    own = [ipaddress.ip_network(iface["network"])]
    if iface["network6"]:
        own.append(ipaddress.ip_network(iface["network6"]))
    check_subnets_outside(nets, own)
    return nets


def peer_record(iface: InterfaceRow, peer_id: int, payload: dict[str, Any]) -> Record:
    """What a job about one peer of ``iface`` acts on."""
    return Record(
        hub=iface["hub"],
        target=f"peer:{peer_id}",
        hub_id=iface["hub_id"],
        interface_id=iface["id"],
        peer_id=peer_id,
        payload=payload,
        meshed=iface["hub_meshed"],
    )


def record_new_peer(
    c: Connection[DictRow],
    iface: InterfaceRow,
    *,
    name: str,
    public_key: str,
    subnets: Sequence[str],
    expires_at: datetime | None,
    actor: str,
    enrollment_token_id: int | None = None,
    payload: dict[str, Any] | None = None,
    tags: Sequence[str] = (),
    redeem: TokenUse | None = None,
) -> Record:
    """Validate against the interface and record the pending peer.

    Its addresses are allocated last, just before the commit (``Record.last``): the
    interface's address pool is locked only from there to the commit, not while the job and
    audit rows are written. ``redeem``: an enrollment token use to take in the
    same statement (its row is the other lock every enrollment waits on).
    """
    if iface["status"] == InterfaceStatus.DELETING:
        raise Conflict("the interface is being deleted", code="interface_deleting")
    interface_id = iface["id"]
    nets = routed_subnets(iface, subnets)
    claim_subnets(c, iface, nets)
    rec = Record(
        hub=iface["hub"],
        target=None,
        hub_id=iface["hub_id"],
        interface_id=interface_id,
        payload=payload or {},
        new_peer=True,
        meshed=iface["hub_meshed"],
    )
    if expires_at is None and iface["network6"] is None and iface["hub_meshed"] is False:
        # The common case, for ``submit_hub_job(final_commit=True)``: sent with the COMMIT.
        rec.final = lambda c2: insert_peer_and_commit(
            c2,
            interface_id,
            name,
            public_key,
            [str(n) for n in nets],
            actor,
            network=iface["network"],
            peer_id=_drawn(rec),
            redeem=redeem,
            tags=tags,
            enrollment_token_id=enrollment_token_id,
        )
    rec.last.append(
        lambda c2: create_peer(
            c2,
            interface_id,
            name,
            public_key,
            [str(n) for n in nets],
            expires_at,
            actor,
            enrollment_token_id,
            has_ipv6=iface["network6"] is not None,
            peer_id=rec.peer_id,
            tags=tags,
            network=iface["network"],
            redeem=redeem,
        )
    )
    return rec


def _drawn(rec: Record) -> int:
    """The peer id the job drew (``record_hub_job`` sets it before any final write)."""
    assert rec.peer_id is not None
    return rec.peer_id


def add_peer(
    conn: Connection[DictRow],
    queue: JobQueue,
    actor: str,
    interface_id: int,
    *,
    name: str,
    public_key: str,
    subnets: Sequence[str] = (),
    tags: Sequence[str] = (),
    expires_at: datetime | None = None,
    idempotency_key: str | None = None,
) -> Submitted:
    """Add a peer whose public key is known; the job result holds its config."""
    key = normalize_key(public_key)
    check_expiry(expires_at)
    tags = check_tags("tags", tags)

    def write(c: Connection[DictRow]) -> Record:
        return record_new_peer(
            c,
            get_interface(c, interface_id),
            name=name,
            public_key=key,
            subnets=subnets,
            expires_at=expires_at,
            actor=actor,
            tags=tags,
        )

    request = {"interface_id": interface_id, "name": name, "public_key": key, "tags": tags}
    request |= {"subnets": list(subnets), "expires_at": expires_at}
    return submit_hub_job(
        conn,
        queue,
        kind=JobKind.ADD_PEER,
        submitter=actor,
        idempotency_key=idempotency_key,
        write=write,
        request=request,
    )


def _live_peer(c: Connection[DictRow], peer_id: int) -> PeerRow:
    peer = get_peer(c, peer_id, lock=True)
    if not is_live_peer(peer["status"]):
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
    """PATCH: enabled, subnets, tags, expires_at."""
    check_changeable(changes, ("enabled", "subnets", "tags", "expires_at"))
    if "expires_at" in changes:
        check_expiry(changes["expires_at"])
    if "tags" in changes:
        changes = {**changes, "tags": check_tags("tags", changes["tags"])}

    def write(c: Connection[DictRow]) -> Record:
        peer = _live_peer(c, peer_id)
        iface = get_interface(c, peer["interface_id"])
        values = dict(changes)
        if "subnets" in values:
            nets = routed_subnets(iface, values["subnets"])
            claim_subnets(c, iface, nets, peer_id)
            values["subnets"] = [str(n) for n in nets]
        update_peer(c, peer_id, values)
        payload = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in values.items()}
        # What other hubs may have to forget (their tag sets, their routes over the mesh).
        payload["was"] = {"tags": peer["tags"], "subnets": peer["subnets"]}
        return peer_record(iface, peer_id, payload=payload)

    return submit_hub_job(
        conn,
        queue,
        kind=JobKind.UPDATE_PEER,
        submitter=actor,
        idempotency_key=idempotency_key,
        write=write,
        request={"peer_id": peer_id, **changes},
    )


def remove_peer(
    conn: Connection[DictRow],
    queue: JobQueue,
    actor: str,
    peer_id: int,
    idempotency_key: str | None = None,
) -> Submitted:
    """Take a peer off its hub; its address is released when the hub has removed it."""

    def write(c: Connection[DictRow]) -> Record:
        peer = _live_peer(c, peer_id)
        iface = get_interface(c, peer["interface_id"])
        update_peer(c, peer_id, {"status": PeerStatus.REMOVING})
        return peer_record(iface, peer_id, payload={"public_key": peer["public_key"]})

    return submit_hub_job(
        conn,
        queue,
        kind=JobKind.REMOVE_PEER,
        submitter=actor,
        idempotency_key=idempotency_key,
        write=write,
        request={"peer_id": peer_id},
    )


def expire_peers(conn: Connection[DictRow], queue: JobQueue, actor: str) -> int:
    """Mark peers past ``expires_at`` expired and queue their removal from the hub (a sweep)."""
    jobs = []
    with conn.transaction():
        for p in expire_due_peers(conn):
            job = record_hub_job(
                conn,
                Record(
                    hub=p["hub"],
                    target=f"peer:{p['id']}",
                    hub_id=p["hub_id"],
                    interface_id=p["interface_id"],
                    peer_id=p["id"],
                    payload={"public_key": p["public_key"]},
                ),
                kind=JobKind.EXPIRE_PEER,
                submitter=actor,
            )
            jobs += [job, *followups(conn, job, p["hub"])]
    for job in jobs:
        send(queue, job)  # stamped enqueued_at on insert: the janitor covers a failed send
    return len(jobs)


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
        kind=JobKind.ROTATE_KEY,
        submitter=actor,
        idempotency_key=idempotency_key,
        write=write,
        request={"peer_id": peer_id, "public_key": key},
    )

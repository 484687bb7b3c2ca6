"""Queries for peers: their desired state on a hub (what the hub last reported of them, their
liveness, is in ``db/peer_liveness.py``)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from psycopg import Connection, Cursor, errors
from psycopg.pq import TransactionStatus
from psycopg.rows import DictRow

from db.addresses import allocate_address, release_address
from db.hubs import own_addresses
from db.peer_states import ENDED, LIVE, NOT_ENDED, sql_in
from db.rows import DesiredPeer, InterfaceRow, PeerRow
from elysium.errors import Conflict, NotFound
from elysium.networks import (
    IPNetwork,
    check_subnets_clear_of,
    last_offset,
)
from elysium.states import LEAVING_PEER, LIVE_PEER, PeerStatus

PEER_COLUMNS = (
    "p.id, p.interface_id, p.name, p.public_key, host(p.address) AS address,"
    " host(p.address6) AS address6, p.subnets::text[] AS subnets, p.tags, p.enabled, p.status,"
    " p.expires_at, p.online, p.endpoint, p.last_handshake_at, p.rx_bytes, p.tx_bytes,"
    " p.enrollment_token_id, p.created_at, p.updated_at"
)


@dataclass(frozen=True)
class TokenUse:
    """One use of an enrollment token, taken with the peer's address (``create_peer``)."""

    where: str  # an SQL condition on ``enrollment_tokens``: the row a use can be taken from
    params: tuple[Any, ...]
    take: Callable[[Connection[DictRow]], object]  # the same on its own; raises if it cannot


def create_peer(
    conn: Connection[DictRow],
    interface_id: int,
    name: str,
    public_key: str,
    subnets: Sequence[str],
    expires_at: datetime | None,
    created_by: str,
    enrollment_token_id: int | None = None,
    *,
    has_ipv6: bool = True,
    peer_id: int | None = None,
    tags: Sequence[str] = (),
    network: str | None = None,
    redeem: TokenUse | None = None,
) -> PeerRow:
    """Allocate addresses and record a pending peer, inside the caller's transaction.

    Raises Conflict (public_key_in_use) when a live peer of the interface has the key and
    NetworkFull when no address is left; the caller's transaction then writes nothing.
    ``has_ipv6=False`` (the interface has no IPv6 network) saves the IPv6 look-up;
    ``peer_id`` is one its job drew (``create_job(new_peer=True)``; default: the next).
    ``network`` (the interface's IPv4 network) lets the insert take the next IPv4 address
    itself when none was released: one statement instead of two.

    ``redeem``: take one use of an enrollment token in that same statement.
    The pool row and the token row are the two locks every enrollment of an interface waits
    on, each held until the commit; taken by the last statement before it, they are held
    for one round trip and the commit, not for three. Locks are always taken in the order
    IPv6 pool, IPv4 pool, token (no deadlock between enrollments). A token that cannot be
    redeemed raises what ``redeem.take`` raises.
    """
    address6 = allocate_address(conn, interface_id, 6) if has_ipv6 else None
    values = [list(subnets), list(tags), expires_at, created_by, enrollment_token_id]
    try:
        row: dict[str, Any] | None = None
        if network is not None:
            row = _insert_at_next_offset(
                conn,
                interface_id,
                network,
                redeem,
                [peer_id, interface_id, name, public_key],
                [address6, *values],
            ).fetchone()
        if row is None:  # addresses were released (reuse the lowest), or the network is full
            address = allocate_address(conn, interface_id, 4)
            row = conn.execute(
                f"{_INSERT_PEER} VALUES (coalesce(%s, {_NEXT_ID}),"
                f" %s, %s, %s, %s, %s, %s::cidr[], %s, %s, %s, %s) RETURNING {PEER_COLUMNS}",
                (peer_id, interface_id, name, public_key, address, address6, *values),
            ).fetchone()
            if redeem is not None:  # after the pool: the same lock order as above
                redeem.take(conn)
    except errors.UniqueViolation as exc:  # the caller's transaction is rolled back
        raise _conflict(exc) from None
    assert row is not None
    return cast(PeerRow, row)


def _insert_at_next_offset(
    conn: Connection[DictRow],
    interface_id: int,
    network: str,
    redeem: TokenUse | None,
    head: list[Any],
    tail: list[Any],
    *,
    strict: bool = False,
) -> Cursor[DictRow]:
    """Insert the peer at the pool's next IPv4 offset (and take the token's use), in one
    statement. When an address was released, the network is full or the token cannot be
    redeemed, nothing is taken and the statement returns no row, or (``strict``) fails on the
    peers' address check (``peers_check``): a statement that must not pass unnoticed, as one
    sent with its COMMIT."""
    take, token_params = "", ()
    address = "host(network(%s::inet) + a.off)::inet"
    source = "FROM (VALUES (1)) AS one (x) LEFT JOIN a ON true" if strict else "FROM a"
    if redeem is not None:
        # Only once the address is taken: if the pool gave none, the token is left alone.
        take = (
            ", t AS (UPDATE enrollment_tokens SET uses_left = uses_left - 1"
            f" WHERE {redeem.where} AND EXISTS (SELECT 1 FROM a) RETURNING id)"
        )
        token_params = redeem.params
        if strict:
            address = f"CASE WHEN EXISTS (SELECT 1 FROM t) THEN {address} END"
        else:
            source += ", t"
    return conn.execute(
        "WITH a AS (UPDATE address_pools q SET next_offset = q.next_offset + 1"
        " WHERE q.interface_id = %s AND q.family = 4 AND q.next_offset <= %s"
        " AND NOT EXISTS (SELECT 1 FROM released_addresses r"
        "  WHERE r.interface_id = q.interface_id AND r.family = 4)"
        f" RETURNING q.next_offset - 1 AS off){take}"
        f" {_INSERT_PEER} SELECT coalesce(%s, {_NEXT_ID}), %s, %s, %s,"
        f" {address}, %s, %s::cidr[], %s, %s, %s, %s"
        f" {source} RETURNING {PEER_COLUMNS}",
        (
            interface_id,
            last_offset(ipaddress.ip_network(network)),
            *token_params,
            *head,
            network,
            *tail,
        ),
    )


class NextAddressNotTaken(Exception):
    """``insert_peer_and_commit`` could not take the next address (or the token's use):
    nothing was committed; run the transaction again the usual way (``create_peer``)."""


def insert_peer_and_commit(
    conn: Connection[DictRow],
    interface_id: int,
    name: str,
    public_key: str,
    subnets: Sequence[str],
    created_by: str,
    *,
    network: str,
    peer_id: int,
    redeem: TokenUse | None = None,
    tags: Sequence[str] = (),
    enrollment_token_id: int | None = None,
) -> None:
    """``create_peer``'s common case (nothing released, no IPv6, no expiry) as the last
    statement of an explicit transaction (``BEGIN``), sent with its ``COMMIT`` in one round
    trip: the hot rows it locks (the interface's address pool, the token) are held only while
    the server runs it and commits, never while this process waits for its GIL.

    Raises NextAddressNotTaken (rolled back: an address was released, the network is full,
    or the token cannot be redeemed) and Conflict as ``create_peer`` does.
    """
    try:
        with conn.pipeline():
            _insert_at_next_offset(
                conn,
                interface_id,
                network,
                redeem,
                [peer_id, interface_id, name, public_key],
                [None, list(subnets), list(tags), None, created_by, enrollment_token_id],
                strict=True,
            )
            conn.execute("COMMIT")
    except errors.CheckViolation as exc:
        if exc.diag.constraint_name != "peers_check":
            raise
        raise NextAddressNotTaken() from None
    except errors.UniqueViolation as exc:
        raise _conflict(exc) from None
    finally:
        if conn.info.transaction_status != TransactionStatus.IDLE:
            conn.execute("ROLLBACK")


_INSERT_PEER = (
    "INSERT INTO peers AS p (id, interface_id, name, public_key, address, address6, subnets,"
    " tags, expires_at, created_by, enrollment_token_id)"
)
_NEXT_ID = "nextval(pg_get_serial_sequence('peers', 'id'))"


def claim_subnets(
    conn: Connection[DictRow],
    iface: InterfaceRow,
    subnets: Sequence[IPNetwork],
    peer_id: int | None = None,
) -> None:
    """Check a peer's routed subnets against its hub and the interface's other live peers.

    A subnet covering the hub's endpoint or an underlay address is a 400 (``subnets.N``); one
    overlapping a subnet another live peer of the interface routes (equal, inside or around
    it) is a 409 ``subnet_taken`` naming that peer: WireGuard would silently move it from one
    peer to the other. Runs in the caller's transaction and first locks the interface's IPv4
    address-pool row, the lock address allocation takes: two claims on one interface take
    turns, and the second sees the first's peer once it commits (READ COMMITTED).
    """
    if not subnets:
        return
    check_subnets_clear_of(subnets, own_addresses(conn, iface["hub_id"]))
    conn.execute(
        "SELECT 1 FROM address_pools WHERE interface_id = %s AND family = 4 FOR UPDATE",
        (iface["id"],),
    )
    taken = conn.execute(
        "SELECT n.ord - 1 AS i, n.subnet::text AS mine, s::text AS theirs, p.id, p.name"
        " FROM unnest(%s::cidr[]) WITH ORDINALITY AS n(subnet, ord),"
        " peers p, unnest(p.subnets) AS s"
        " WHERE p.interface_id = %s AND p.subnets <> '{}'"
        f" AND {NOT_ENDED}"  # the peers_routing index
        " AND p.id IS DISTINCT FROM %s AND s && n.subnet ORDER BY n.ord, p.id LIMIT 1",
        ([str(n) for n in subnets], iface["id"], peer_id),
    ).fetchone()
    if taken is not None:
        reason = f"overlaps {taken['theirs']}, routed by peer {taken['id']} ({taken['name']})"
        raise Conflict(
            f"subnets.{taken['i']}: {taken['mine']} {reason}",
            code="subnet_taken",
            fields={f"subnets.{taken['i']}": reason},
        )


def _conflict(exc: errors.UniqueViolation) -> Conflict:
    if "key" in (exc.diag.constraint_name or ""):
        return Conflict(
            "a peer with this public key is already on the interface",
            code="public_key_in_use",
            fields={"public_key": "already in use"},
        )
    return Conflict("address already in use", code="address_in_use")


def get_peer(conn: Connection[DictRow], peer_id: int, *, lock: bool = False) -> PeerRow:
    sql = f"SELECT {PEER_COLUMNS} FROM peers p WHERE p.id = %s"
    if lock:
        sql += " FOR UPDATE"
    row = conn.execute(sql, (peer_id,)).fetchone()
    if row is None:
        raise NotFound(f"peer {peer_id} does not exist", code="peer_not_found")
    return cast(PeerRow, row)


def certificate_holder(conn: Connection[DictRow], peer_id: int) -> DictRow:
    """What a peer's mTLS call is checked against: its status and the serial of the one
    certificate it holds now (recorded at enrollment or at its last renewal)."""
    row = conn.execute(
        "SELECT status, certificate_serial FROM peers WHERE id = %s", (peer_id,)
    ).fetchone()
    if row is None:
        raise NotFound(f"peer {peer_id} does not exist", code="peer_not_found")
    return row


def get_peers(conn: Connection[DictRow], peer_ids: Sequence[int]) -> list[PeerRow]:
    return cast(
        list[PeerRow],
        conn.execute(
            f"SELECT {PEER_COLUMNS} FROM peers p WHERE p.id = ANY(%s) ORDER BY p.id",
            (list(peer_ids),),
        ).fetchall(),
    )


def list_peers(
    conn: Connection[DictRow],
    *,
    interface_id: int | None = None,
    online: bool | None = None,
    after_id: int = 0,
    limit: int = 100,
    include_gone: bool = False,
) -> list[PeerRow]:
    """Peers ordered by id, after a cursor id, optionally filtered."""
    where = ["p.id > %s"]
    params: list[Any] = [after_id]
    if interface_id is not None:
        where.append("p.interface_id = %s")
        params.append(interface_id)
    if online is not None:
        where.append("p.online = %s")
        params.append(online)
    if not include_gone:
        where.append(NOT_ENDED)
    params.append(limit)
    return cast(
        list[PeerRow],
        conn.execute(
            f"SELECT {PEER_COLUMNS} FROM peers p WHERE {' AND '.join(where)}"
            " ORDER BY p.id LIMIT %s",
            params,
        ).fetchall(),
    )


def desired_peers(
    conn: Connection[DictRow], interface_id: int, peer_ids: Sequence[int] | None = None
) -> list[DesiredPeer]:
    """Every peer that should be on the interface's device now (live and enabled), or those
    of ``peer_ids``, with what the device and the policy need of each."""
    where = "" if peer_ids is None else " AND p.id = ANY(%s)"
    params: list[Any] = [interface_id] if peer_ids is None else [interface_id, list(peer_ids)]
    rows = conn.execute(
        "SELECT p.id, p.public_key, host(p.address) AS address, host(p.address6) AS address6,"
        " p.subnets::text[] AS subnets, p.tags FROM peers p WHERE p.interface_id = %s"
        f" AND p.enabled AND {LIVE}{where} ORDER BY p.id",
        params,
    ).fetchall()
    return cast(list[DesiredPeer], rows)


def routed_subnets(
    conn: Connection[DictRow], interface_id: int, except_peer: int | None
) -> list[str]:
    """Subnets other live peers of the interface route (a peer reaches them via the hub)."""
    rows = conn.execute(
        "SELECT DISTINCT s::text AS subnet FROM peers p, unnest(p.subnets) AS s"
        f" WHERE p.interface_id = %s AND p.id IS DISTINCT FROM %s AND p.enabled AND {NOT_ENDED}"
        " AND p.subnets <> '{}' ORDER BY 1",
        (interface_id, except_peer),
    ).fetchall()
    return [r["subnet"] for r in rows]


def interface_subnets(conn: Connection[DictRow], interface_id: int) -> list[tuple[int, str]]:
    """(peer id, subnet) of every live peer of the interface that routes one, in the order of
    :func:`routed_subnets`: read once for all of its peers' configs (``others_subnets``)."""
    rows = conn.execute(
        "SELECT p.id, s::text AS subnet FROM peers p, unnest(p.subnets) AS s"
        f" WHERE p.interface_id = %s AND p.enabled AND {NOT_ENDED}"
        " AND p.subnets <> '{}' ORDER BY 2, 1",
        (interface_id,),
    ).fetchall()
    return [(r["id"], r["subnet"]) for r in rows]


def others_subnets(subnets: list[tuple[int, str]], except_peer: int) -> list[str]:
    """:func:`routed_subnets` from :func:`interface_subnets`: those of the other peers."""
    out: list[str] = []
    for peer_id, subnet in subnets:
        if peer_id != except_peer and (not out or out[-1] != subnet):
            out.append(subnet)
    return out


def update_peer(conn: Connection[DictRow], peer_id: int, changes: dict[str, Any]) -> PeerRow:
    """Change enabled, subnets, expires_at, public_key or status of a peer."""
    allowed = {
        "enabled",
        "subnets",
        "tags",
        "expires_at",
        "public_key",
        "status",
        "certificate_serial",
    }
    sets = []
    params: list[Any] = []
    for key, value in changes.items():
        if key not in allowed:
            raise ValueError(key)
        sets.append(f"{key} = %s::cidr[]" if key == "subnets" else f"{key} = %s")
        params.append(list(value) if key == "subnets" else value)
    if not sets:
        return get_peer(conn, peer_id)
    params.append(peer_id)
    try:
        with conn.transaction():
            cur = conn.execute(
                f"UPDATE peers SET {', '.join(sets)}, updated_at = now() WHERE id = %s", params
            )
    except errors.UniqueViolation as exc:
        raise _conflict(exc) from None
    if cur.rowcount == 0:
        raise NotFound(f"peer {peer_id} does not exist", code="peer_not_found")
    return get_peer(conn, peer_id)


def mark_applied(conn: Connection[DictRow], peer_ids: Sequence[int]) -> None:
    """Pending peers the hub now holds become active."""
    conn.execute(
        f"UPDATE peers SET status = '{PeerStatus.ACTIVE}', updated_at = now()"
        f" WHERE id = ANY(%s) AND status = '{PeerStatus.PENDING}'",
        (list(peer_ids),),
    )


def finish_removal(conn: Connection[DictRow], peer_ids: Sequence[int]) -> None:
    """Peers gone from the hub: removing becomes removed; their addresses are given back."""
    rows = conn.execute(
        f"UPDATE peers p SET status = CASE status WHEN '{PeerStatus.REMOVING}'"
        f" THEN '{PeerStatus.REMOVED}' ELSE status END, online = false, updated_at = now()"
        f" WHERE id = ANY(%s) AND status IN {sql_in(LEAVING_PEER)}"
        " AND address IS NOT NULL"
        " RETURNING interface_id, host(address) AS address, host(address6) AS address6",
        (list(peer_ids),),
    ).fetchall()
    for r in rows:
        release_address(conn, r["interface_id"], r["address"])
        release_address(conn, r["interface_id"], r["address6"])
    if rows:
        conn.execute(
            f"UPDATE peers p SET address = NULL, address6 = NULL WHERE id = ANY(%s) AND {ENDED}",
            (list(peer_ids),),
        )


def expire_due_peers(conn: Connection[DictRow], limit: int = 1000) -> list[dict[str, Any]]:
    """Mark peers past ``expires_at`` as expired, in the caller's transaction.

    Returns each with what its removal job needs: id, public_key, interface_id, hub, hub_id.
    Rows another sweep is expiring are skipped, so each peer expires once.
    """
    return conn.execute(
        f"UPDATE peers p SET status = '{PeerStatus.EXPIRED}', online = false, updated_at = now()"
        " FROM interfaces i JOIN hubs h ON h.id = i.hub_id"
        " WHERE i.id = p.interface_id AND p.id IN ("
        "  SELECT id FROM peers WHERE expires_at <= now()"
        f"  AND status IN {sql_in(LIVE_PEER)}"
        "  ORDER BY expires_at LIMIT %s FOR UPDATE SKIP LOCKED)"
        " RETURNING p.id, p.public_key, p.interface_id, h.name AS hub, h.id AS hub_id",
        (limit,),
    ).fetchall()

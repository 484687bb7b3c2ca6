"""Peers' observed liveness: what their hub's dumps report (handshake, bytes, endpoint) and
whether each is online; the desired state is in ``db/peers.py``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from psycopg import Connection
from psycopg.rows import DictRow

from db.peer_states import sql_in
from elysium.states import ENDED_PEER


def record_liveness(
    conn: Connection[DictRow],
    interface_id: int,
    keys: Sequence[str],
    handshakes: Sequence[datetime | None],
    rx: Sequence[int],
    tx: Sequence[int],
    endpoints: Sequence[str | None],
    online_after_s: float,
) -> int:
    """Write one interface's dump in one statement; return how many peers changed.

    A peer is online when its latest handshake is younger than ``online_after_s``; a dump
    repeating the handshake already recorded does not put back online a peer that the
    liveness sweep has marked offline (the sweep and the hub may judge by different
    settings; only a new handshake is news). A dump without a handshake keeps the last one
    known; rows whose values did not change are not rewritten.
    """
    cur = conn.execute(
        "UPDATE peers p SET last_handshake_at = n.hs, rx_bytes = n.rx, tx_bytes = n.tx,"
        " endpoint = n.ep, online = n.online"
        " FROM (SELECT s.key, coalesce(s.hs, q.last_handshake_at) AS hs, s.rx, s.tx,"
        "   coalesce(s.ep, q.endpoint) AS ep, q.id,"
        "   coalesce(coalesce(s.hs, q.last_handshake_at)"
        "            > now() - make_interval(secs => %s), false)"
        "   AND (q.online OR s.hs IS DISTINCT FROM q.last_handshake_at) AS online"
        "  FROM unnest(%s::text[], %s::timestamptz[], %s::bigint[], %s::bigint[], %s::text[])"
        "   AS s(key, hs, rx, tx, ep)"
        "  JOIN peers q ON q.interface_id = %s AND q.public_key = s.key"
        f"   AND q.status NOT IN {sql_in(ENDED_PEER)}) AS n"
        " WHERE p.id = n.id AND (p.last_handshake_at, p.rx_bytes, p.tx_bytes, p.endpoint,"
        " p.online) IS DISTINCT FROM (n.hs, n.rx, n.tx, n.ep, n.online)",
        (
            online_after_s,
            list(keys),
            list(handshakes),
            list(rx),
            list(tx),
            list(endpoints),
            interface_id,
        ),
    )
    return cur.rowcount


def mark_offline_peers(conn: Connection[DictRow], online_after_s: float) -> int:
    """Peers shown online whose last handshake is now too old (or whose hub went silent)."""
    cur = conn.execute(
        "UPDATE peers SET online = false WHERE online AND (last_handshake_at IS NULL"
        " OR last_handshake_at <= now() - make_interval(secs => %s))",
        (online_after_s,),
    )
    return cur.rowcount

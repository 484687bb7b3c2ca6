"""The common enrollment in one round trip: redeem a token's use, take the interface's next
address, record the peer, its job and the job's audit record, committed together; for one
enrollment or for several with one token at once (``services/enrollment.py`` puts together
those that come while one runs), which then take consecutive addresses in their order.

``services/enrollment.py`` runs it first, on an idle autocommit connection, when the case is
the common one; anything else (an unknown or spent token, a released address to reuse, a full
network, an IPv6 network, a meshed hub, an interface being deleted, for several: a key in use
or fewer uses left than enrollments) makes it write nothing and return None, and the service
then does each enrollment step by step, which says why it cannot be done or does it the longer
way. One round trip instead of four: each cost the API worker and PostgreSQL more CPU than the
work of its statement (bench/api.py); and one for several: PostgreSQL's CPU for one of 8
together is a fifth of one alone's.

Every enrollment of an interface takes its address pool's row, and every enrollment with one
token that token's row, each until its commit: they take turns. Had each turn lasted until its
commit record was flushed (an fsync), the turns could not share a flush and an interface took
one enrollment per fsync. So the enrollment's transaction commits without waiting for the
flush (the statement sets ``synchronous_commit`` off for its own transaction, which a COMMIT
right behind it in the same message ends; its row locks go once the server has run it), and a
second, tiny write transaction right behind that on the same connection commits with the
usual synchronous commit: it returns only once the WAL is flushed up to its own commit record,
so up to the enrollment's too (WAL is flushed in order). These flushes are shared (group
commit), no row lock is held through them, and nothing is answered or sent before them: an
enrollment is acknowledged only once durable, as before. A crash before the flush loses it
whole (token use, address, peer, job and audit together), never a part of it.

The hot rows are taken in the order every enrollment takes them (the IPv4 pool, then the
token), each only once the job is written.
"""

from __future__ import annotations

import json
import uuid
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from psycopg import ClientCursor, Connection, errors
from psycopg.pq import TransactionStatus
from psycopg.rows import DictRow

from db.enrollment_tokens import REDEEMABLE
from db.jobs import JOB_COLUMNS
from db.peers import conflict
from db.rows import JobRow
from db.tokens import ENROLLMENT_PREFIX, token_digest
from elysium.states import InterfaceStatus

_REDEEMABLE = REDEEMABLE.replace("%s", "%(digest)s")
# x: the enrollments (a JSON array: job id, name, key, queue, payload), numbered n = 1, 2...;
# g: the token and its interface, when this case is the common one;
# j, audit: the jobs (each drawing its peer's id) and their ``accepted`` records;
# a: the pool's next IPv4 offsets, one for each enrollment, taken when none was released and
# enough are left (the first of them in off);
# t: the token's uses, taken once the addresses were, all or none;
# the peers, whose addresses are NULL when a or t took nothing: the peers' address check then
# fails the statement and nothing is written.
_ENROLL = (
    "WITH x AS (SELECT * FROM ROWS FROM (jsonb_to_recordset(%(enrollments)s::jsonb)"
    "  AS (job_id uuid, name text, public_key text, queue text, payload jsonb))"
    "  WITH ORDINALITY AS x (job_id, name, public_key, queue, payload, n)),"
    " k AS (SELECT count(*) AS k FROM x),"
    " g AS (SELECT t.id AS token_id, t.tags, i.id AS interface_id, i.hub_id, h.name AS hub,"
    "  i.network FROM enrollment_tokens t JOIN interfaces i ON i.id = t.interface_id"
    "  JOIN hubs h ON h.id = i.hub_id"
    f"  WHERE {_REDEEMABLE.replace('token_hash', 't.token_hash')}"
    "  AND i.status <> %(deleting)s AND i.network6 IS NULL AND h.mesh_port IS NULL"
    # this statement's transaction commits without waiting for the flush (see above)
    "  AND set_config('synchronous_commit', 'off', true) = 'off'),"
    " j AS (INSERT INTO jobs (id, kind, queue, submitter, payload, hub_id, interface_id,"
    "  peer_id, enqueued_at)"
    "  SELECT x.job_id, %(kind)s, coalesce(x.queue, %(hub_prefix)s || g.hub), %(actor)s,"
    "  x.payload || jsonb_build_object('enrollment_token_id', g.token_id)"
    "  || CASE WHEN x.queue IS NULL THEN '{}'::jsonb"
    "  ELSE jsonb_build_object('hub', g.hub) END,"
    "  g.hub_id, g.interface_id, nextval(pg_get_serial_sequence('peers', 'id')), now()"
    "  FROM g, x ORDER BY x.n"
    f"  RETURNING {JOB_COLUMNS}),"
    " audit AS (INSERT INTO audit (actor, action, target, outcome, detail)"
    "  SELECT submitter, kind, 'peer:' || peer_id, 'accepted', jsonb_build_object('job_id', id)"
    "  FROM j),"
    " a AS (UPDATE address_pools q SET next_offset = q.next_offset + k.k FROM g, k"
    "  WHERE q.interface_id = g.interface_id AND q.family = 4"
    "  AND q.next_offset + k.k - 1 <= (1::bigint << (32 - masklen(g.network))) - 2"  # last host
    "  AND EXISTS (SELECT 1 FROM j)"
    "  AND NOT EXISTS (SELECT 1 FROM released_addresses r"
    "   WHERE r.interface_id = q.interface_id AND r.family = 4)"
    "  RETURNING q.next_offset - k.k AS off),"
    " t AS (UPDATE enrollment_tokens SET uses_left = uses_left - k.k FROM k"
    f"  WHERE {_REDEEMABLE} AND uses_left >= k.k AND EXISTS (SELECT 1 FROM a) RETURNING id),"
    " p AS (INSERT INTO peers (id, interface_id, name, public_key, address, subnets, tags,"
    "  created_by, enrollment_token_id)"
    "  SELECT j.peer_id, g.interface_id, x.name, x.public_key,"
    "  CASE WHEN EXISTS (SELECT 1 FROM t) THEN host(network(g.network) + (a.off + x.n - 1))::inet"
    "  END, '{}', g.tags, %(actor)s, g.token_id FROM g, j JOIN x ON x.job_id = j.id"
    "  LEFT JOIN a ON true ORDER BY x.n)"
    " SELECT * FROM j"
)


# A transaction that writes WAL under a transaction id, so its commit waits for the flush
# (synchronous_commit), and nothing else: a transactional logical-decoding message (an empty
# one; without logical decoding nobody reads it), which writes no table.
_DURABLE = "SELECT pg_logical_emit_message(true, 'elysium.enrolled', '')"

# The statement prepared once per connection (SQL PREPARE: planned as psycopg's prepared
# statements are), its parameters in this order; run with the COMMIT and the durable commit
# behind it as one simple-protocol message: one round trip, with much less client work than a
# pipeline of three (bench/api.py).
_PARAMS = ("digest", "deleting", "kind", "hub_prefix", "actor", "enrollments")
_PREPARE = "PREPARE elysium_enroll AS " + _ENROLL
for _n, _p in enumerate(_PARAMS, 1):
    _PREPARE = _PREPARE.replace(f"%({_p})s", f"${_n}")
_RUN = (
    # An explicit block: a COMMIT that ended the implicit one of a multi-statement message
    # would be logged as a WARNING (no transaction in progress) at each enrollment.
    f"BEGIN; EXECUTE elysium_enroll({', '.join(['%s'] * len(_PARAMS))});"
    # COMMIT ends it (the hot rows are free once it has run); the durable commit is then its
    # own transaction, committed synchronously: it returns once the WAL is on disk up to its
    # commit, the enrollment's included.
    f" COMMIT; {_DURABLE}"
)
_prepared: weakref.WeakSet[Connection[DictRow]] = weakref.WeakSet()


@dataclass(frozen=True)
class Enrollment:
    """One peer joining: its name and key, where its job waits (``queue``: ``control`` for a
    CSR to sign, or None for its hub's queue) and what the job carries."""

    name: str
    public_key: str
    queue: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    job_id: uuid.UUID = field(default_factory=uuid.uuid4)

    def as_json(self) -> dict[str, Any]:
        return {
            "job_id": str(self.job_id),
            "name": self.name,
            "public_key": self.public_key,
            "queue": self.queue,
            "payload": self.payload,
        }


def ready(conn: Connection[DictRow]) -> bool:
    """Whether ``conn`` can run the enrollment statement: idle, in autocommit (it commits)."""
    return conn.autocommit and conn.info.transaction_status == TransactionStatus.IDLE


def enroll_in_one_statement(
    conn: Connection[DictRow],
    enrollments: Sequence[Enrollment],
    *,
    token: str,
    submitter: str,
    kind: str,
    hub_prefix: str,
) -> list[JobRow] | None:
    """Enroll every one of ``enrollments`` with ``token`` as one statement, committed: their
    jobs in the same order, or None when nothing was written (the case is not the common one
    for all of them together: do each step by step). Raises Unauthorized (token_invalid) for
    malformed token text and Conflict (public_key_in_use) as ``create_peer`` does.

    ``hub_prefix`` and the hub's name make the queue of an enrollment whose ``queue`` is None
    (and then without the hub in its job's payload). Their addresses are consecutive, in order.
    """
    if not ready(conn):
        return None
    params = (
        token_digest(token, ENROLLMENT_PREFIX),
        InterfaceStatus.DELETING,
        kind,
        hub_prefix,
        submitter,
        json.dumps([e.as_json() for e in enrollments]),
    )
    try:
        try:
            rows = _run(conn, params)
        except errors.InvalidSqlStatementName:
            # psycopg deallocates all prepared statements after a ROLLBACK or a DROP (its own
            # cache may be stale then), this one too; nothing ran: prepare it again.
            conn.execute("ROLLBACK")
            _prepared.discard(conn)
            rows = _run(conn, params)
    except errors.CheckViolation as exc:
        if exc.diag.constraint_name != "peers_check":
            raise
        return None  # no addresses (released ones, or too few left), or too few token uses
    except errors.UniqueViolation as exc:
        if len(enrollments) > 1:
            return None  # whose key it is, each one's own statement says
        raise conflict(exc) from None
    finally:
        if conn.info.transaction_status != TransactionStatus.IDLE:
            conn.execute("ROLLBACK")  # an error above: nothing is written
    if not rows:
        return None
    by_id = {row["id"]: row for row in rows}
    return [cast(JobRow, by_id[e.job_id]) for e in enrollments]


def _run(conn: Connection[DictRow], params: tuple[Any, ...]) -> list[DictRow]:
    if conn not in _prepared:
        conn.execute(_PREPARE, prepare=False)
        _prepared.add(conn)
    # Its own transaction, which the statement sets to commit without waiting for the flush;
    # the jobs are the second of the message's results (after BEGIN's).
    cur = ClientCursor(conn).execute(_RUN, params)
    cur.nextset()
    return cur.fetchall()

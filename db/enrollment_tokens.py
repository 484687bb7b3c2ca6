"""Enrollment tokens: each lets up to N peers enroll on one interface before it expires,
with the subnets and tags it grants; stored only as a SHA-256 hash (``db/tokens.py``).

Every function runs in the caller's transaction (it never commits), so a token created or a
use redeemed is undone with the rest of the caller's work on rollback.
"""

from __future__ import annotations

import secrets
from typing import Any, cast

from psycopg import Connection, errors
from psycopg.rows import DictRow

from db.hubs import own_addresses
from db.interfaces import FROM_INTERFACES, INTERFACE_COLUMNS
from db.peers import TokenUse
from db.rows import InterfaceRow
from db.tokens import ENROLLMENT_PREFIX, check_ttl, hash_token, token_digest
from elysium.errors import Gone, NotFound, Unauthorized, ValidationError
from elysium.networks import check_subnets_clear_of, parse_subnets
from elysium.tags import check_tags

# The rows of ``enrollment_tokens`` a use can be taken from; its one parameter is the hash.
REDEEMABLE = (
    "token_hash = %s AND uses_left > 0 AND revoked_at IS NULL AND NOT expired"
    " AND expires_at > now()"
)
ENROLLMENT_COLUMNS = (
    "id, interface_id, name, uses_total, uses_left, subnets::text[] AS subnets, tags, created_by,"
    " created_at, expires_at, revoked_at, expired"
)


def create_enrollment_token(
    conn: Connection[DictRow],
    interface_id: int,
    name: str | None,
    ttl_seconds: int,
    uses: int,
    subnets: list[str],
    created_by: str | None,
    tags: list[str] | None = None,
) -> tuple[dict[str, Any], str]:
    """Make a token that enrolls up to ``uses`` peers on one interface before it expires.

    ``subnets`` are routed subnets granted to peers enrolling with it. Returns the row and
    the token text, which is never stored or shown again.
    """
    if name is not None and not 1 <= len(name) <= 64:
        raise ValidationError("name", "must be 1-64 characters")
    check_ttl(ttl_seconds, required=True)
    if not isinstance(uses, int) or isinstance(uses, bool) or not 1 <= uses <= 100_000:
        raise ValidationError("uses", "must be an integer from 1 to 100000")
    parsed = parse_subnets(subnets)
    hub = conn.execute("SELECT hub_id FROM interfaces WHERE id = %s", (interface_id,)).fetchone()
    if hub is not None and parsed:  # the same rule as a peer's subnets
        check_subnets_clear_of(parsed, own_addresses(conn, hub["hub_id"]))
    nets = [str(n) for n in parsed]
    text = ENROLLMENT_PREFIX + secrets.token_urlsafe(32)
    try:
        with conn.transaction():
            row = conn.execute(
                "INSERT INTO enrollment_tokens (interface_id, name, token_hash, uses_total,"
                " uses_left, subnets, tags, created_by, expires_at) VALUES (%s, %s, %s, %s, %s,"
                " %s::cidr[], %s, %s, now() + make_interval(secs => %s))"
                f" RETURNING {ENROLLMENT_COLUMNS}",
                (
                    interface_id,
                    name,
                    hash_token(text),
                    uses,
                    uses,
                    nets,
                    check_tags("tags", tags or []),
                    created_by,
                    ttl_seconds,
                ),
            ).fetchone()
    except errors.ForeignKeyViolation:
        raise NotFound(
            f"interface {interface_id} does not exist", code="interface_not_found"
        ) from None
    assert row is not None
    return row, text


def redeem_enrollment_token(conn: Connection[DictRow], token_text: str) -> dict[str, Any]:
    """Take one use of an enrollment token, atomically, in the caller's transaction.

    Concurrent redemptions of the last use succeed exactly once; a rollback of the caller's
    transaction gives the use back. Raises Unauthorized (token_invalid) for an unknown token
    and Gone (token_revoked / token_expired / token_used_up) for one that cannot be used.
    """
    digest = token_digest(token_text, ENROLLMENT_PREFIX)
    row = conn.execute(
        f"UPDATE enrollment_tokens SET uses_left = uses_left - 1 WHERE {REDEEMABLE}"
        f" RETURNING {ENROLLMENT_COLUMNS}",
        (digest,),
    ).fetchone()
    if row is not None:
        return row
    raise _refusal(conn, digest)


def enrollment_token_use(token_text: str) -> TokenUse:
    """One use of an enrollment token, for ``create_peer`` to take with the peer's address
    (one statement for both hot rows); Unauthorized (token_invalid) for malformed text."""
    return TokenUse(
        REDEEMABLE,
        (token_digest(token_text, ENROLLMENT_PREFIX),),
        lambda conn: redeem_enrollment_token(conn, token_text),
    )


def check_enrollment_token(conn: Connection[DictRow], token_text: str) -> dict[str, Any]:
    """An enrollment token that can be redeemed now, read without locking it.

    Lets a caller refuse a bad token early and take the token's row lock (the redemption)
    as the last step before its commit, so concurrent enrollments wait on it the least.
    Raises what :func:`redeem_enrollment_token` raises.
    """
    digest = token_digest(token_text, ENROLLMENT_PREFIX)
    row = conn.execute(
        f"SELECT {ENROLLMENT_COLUMNS} FROM enrollment_tokens WHERE token_hash = %s"
        " AND uses_left > 0 AND revoked_at IS NULL AND NOT expired AND expires_at > now()",
        (digest,),
    ).fetchone()
    if row is not None:
        return row
    raise _refusal(conn, digest)


def enrollment_grant(
    conn: Connection[DictRow], token_text: str
) -> tuple[dict[str, Any], InterfaceRow]:
    """What :func:`check_enrollment_token` gives, with the token's interface, in one query."""
    digest = token_digest(token_text, ENROLLMENT_PREFIX)
    row = conn.execute(
        f"SELECT {INTERFACE_COLUMNS}, t.id AS grant_id, t.subnets::text[] AS grant_subnets,"
        " t.tags AS grant_tags"
        f" {FROM_INTERFACES} JOIN enrollment_tokens t ON t.interface_id = i.id"
        " WHERE t.token_hash = %s AND t.uses_left > 0 AND t.revoked_at IS NULL"
        " AND NOT t.expired AND t.expires_at > now()",
        (digest,),
    ).fetchone()
    if row is None:
        raise _refusal(conn, digest)
    grant = {"id": row.pop("grant_id"), "subnets": row.pop("grant_subnets")}
    grant["tags"] = row.pop("grant_tags")
    grant["interface_id"] = row["id"]
    return grant, cast(InterfaceRow, row)


def _refusal(conn: Connection[DictRow], digest: bytes) -> Unauthorized | Gone:
    """Why a token cannot be redeemed."""
    why = conn.execute(
        "SELECT revoked_at IS NOT NULL AS revoked, expired OR expires_at <= now() AS expired"
        " FROM enrollment_tokens WHERE token_hash = %s",
        (digest,),
    ).fetchone()
    if why is None:
        return Unauthorized("the enrollment token is not valid", code="token_invalid")
    if why["revoked"]:
        return Gone("the enrollment token has been revoked", code="token_revoked")
    if why["expired"]:
        return Gone("the enrollment token has expired", code="token_expired")
    return Gone("the enrollment token has no uses left", code="token_used_up")


def revoke_enrollment_token(conn: Connection[DictRow], token_id: int) -> dict[str, Any]:
    """Revoke an enrollment token (revoking twice keeps the first time); NotFound if none."""
    row = conn.execute(
        "UPDATE enrollment_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = %s"
        f" RETURNING {ENROLLMENT_COLUMNS}",
        (token_id,),
    ).fetchone()
    if row is None:
        raise NotFound(f"enrollment token {token_id} does not exist", code="token_not_found")
    return row


def list_enrollment_tokens(
    conn: Connection[DictRow], interface_id: int, *, after_id: int = 0, limit: int = 100
) -> list[dict[str, Any]]:
    """An interface's enrollment tokens by id, newest state computed (``state``: active,
    revoked, expired or used_up); never the token text, which is not stored."""
    return conn.execute(
        f"SELECT {ENROLLMENT_COLUMNS}, CASE WHEN revoked_at IS NOT NULL THEN 'revoked'"
        " WHEN expired OR expires_at <= now() THEN 'expired'"
        " WHEN uses_left = 0 THEN 'used_up' ELSE 'active' END AS state"
        " FROM enrollment_tokens WHERE interface_id = %s AND id > %s ORDER BY id LIMIT %s",
        (interface_id, after_id, limit),
    ).fetchall()


def expire_enrollment_tokens(conn: Connection[DictRow]) -> int:
    """The expiry sweep's enrollment side: mark tokens past their time as expired; how many
    this sweep marked."""
    return conn.execute(
        "UPDATE enrollment_tokens SET expired = true WHERE NOT expired AND expires_at <= now()"
    ).rowcount

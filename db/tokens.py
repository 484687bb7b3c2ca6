"""API bearer tokens, and what every token text shares: random, shown once, stored only as
a SHA-256 hash (enrollment tokens are in ``db/enrollment_tokens.py``).

Every function runs in the caller's transaction (it never commits), so a token created is
undone with the rest of the caller's work on rollback.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from psycopg import Connection
from psycopg.rows import DictRow

from elysium.errors import NotFound, Unauthorized, ValidationError
from elysium.states import Scope

API_PREFIX = "ely_"
ENROLLMENT_PREFIX = "elyenr_"
# Each scope includes the ones before it.
SCOPES: tuple[str, ...] = (Scope.READER, Scope.OPERATOR, Scope.ADMIN)
# A token is touched (last_used_at) at most this often, so busy clients do not write per request.
TOUCH_INTERVAL_S = 60
MAX_TOKEN_LEN = 128

API_COLUMNS = "id, name, scope, created_by, created_at, expires_at, revoked_at, last_used_at"


def hash_token(token_text: str) -> bytes:
    """The SHA-256 digest stored in place of a token (tokens carry 256 random bits: no salt)."""
    return hashlib.sha256(token_text.encode()).digest()


def scope_allows(have: str, need: str) -> bool:
    """Whether a token of scope ``have`` may do what needs ``need`` (admin > operator > reader).

    An unknown ``have`` allows nothing; an unknown ``need`` is a programming error (ValueError).
    """
    if need not in SCOPES:
        raise ValueError(f"unknown scope {need!r}")
    if have not in SCOPES:
        return False
    return SCOPES.index(have) >= SCOPES.index(need)


def create_api_token(
    conn: Connection[DictRow],
    name: str,
    scope: str,
    ttl_seconds: int | None,
    created_by: str | None,
) -> tuple[dict[str, Any], str]:
    """Make an API token; return its row and the token text, which is never stored or shown again.

    ``ttl_seconds`` None means no expiry.
    """
    if not isinstance(name, str) or not 1 <= len(name) <= 64:
        raise ValidationError("name", "must be 1-64 characters")
    if scope not in SCOPES:
        raise ValidationError("scope", "must be admin, operator or reader")
    check_ttl(ttl_seconds, required=False)
    text = API_PREFIX + secrets.token_urlsafe(32)
    row = conn.execute(
        "INSERT INTO api_tokens (name, scope, token_hash, created_by, expires_at)"
        " VALUES (%s, %s, %s, %s, now() + make_interval(secs => %s))"
        f" RETURNING {API_COLUMNS}",
        (name, scope, hash_token(text), created_by, ttl_seconds),
    ).fetchone()
    assert row is not None
    return row, text


def authenticate_api_token(conn: Connection[DictRow], token_text: str) -> dict[str, Any]:
    """The row of a valid API token, or Unauthorized (token_invalid/expired/revoked).

    Records ``last_used_at`` at most once per TOUCH_INTERVAL_S, without ever waiting on
    another request that is touching the same token.
    """
    digest = token_digest(token_text, API_PREFIX)
    row = conn.execute(
        f"SELECT {API_COLUMNS}, expires_at IS NOT NULL AND expires_at <= now() AS past,"
        " last_used_at IS NULL OR last_used_at < now() - make_interval(secs => %s) AS stale"
        " FROM api_tokens WHERE token_hash = %s",
        (TOUCH_INTERVAL_S, digest),
    ).fetchone()
    if row is None:
        raise Unauthorized("the API token is not valid", code="token_invalid")
    past, stale = row.pop("past"), row.pop("stale")
    if row["revoked_at"] is not None:
        raise Unauthorized("the API token has been revoked", code="token_revoked")
    if past:
        raise Unauthorized("the API token has expired", code="token_expired")
    if stale:
        touched = conn.execute(
            "UPDATE api_tokens SET last_used_at = now() WHERE id = ("
            " SELECT id FROM api_tokens WHERE id = %s FOR UPDATE SKIP LOCKED)"
            " RETURNING last_used_at",
            (row["id"],),
        ).fetchone()
        if touched is not None:
            row["last_used_at"] = touched["last_used_at"]
    return row


def revoke_api_token(conn: Connection[DictRow], token_id: int) -> dict[str, Any]:
    """Revoke an API token (revoking twice keeps the first time); NotFound if there is none."""
    row = conn.execute(
        "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = %s"
        f" RETURNING {API_COLUMNS}",
        (token_id,),
    ).fetchone()
    if row is None:
        raise NotFound(f"API token {token_id} does not exist", code="token_not_found")
    return row


def expire_api_tokens(conn: Connection[DictRow]) -> int:
    """The expiry sweep's API side: mark API tokens past their time as expired; how many
    this sweep marked (authentication refuses them by ``expires_at`` whether marked or not)."""
    return conn.execute(
        "UPDATE api_tokens SET expired = true WHERE NOT expired AND revoked_at IS NULL"
        " AND expires_at <= now()"
    ).rowcount


def token_digest(token_text: object, prefix: str) -> bytes:
    """The stored hash of a token text of one kind (``prefix``); Unauthorized (token_invalid)
    for malformed text, rejected like an unknown token, without a query."""
    if (
        not isinstance(token_text, str)
        or not token_text.startswith(prefix)
        or len(token_text) > MAX_TOKEN_LEN
    ):
        raise Unauthorized("the token is not valid", code="token_invalid")
    return hash_token(token_text)


def check_ttl(ttl_seconds: int | None, *, required: bool) -> None:
    """A token's time to live: 1 s to 10 years (``None`` allowed unless ``required``)."""
    if ttl_seconds is None and not required:
        return
    if (
        not isinstance(ttl_seconds, int)
        or isinstance(ttl_seconds, bool)
        or not 1 <= ttl_seconds <= 10 * 365 * 86400
    ):
        raise ValidationError("ttl_seconds", "must be an integer from 1 to 315360000")

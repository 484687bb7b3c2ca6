"""Single sign-on's one-time values: dashboard sign-ins begun (state, nonce, PKCE verifier)
and the nonces and ID tokens already spent. Runs in the caller's transaction."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from psycopg import Connection
from psycopg.rows import DictRow

LOGIN_MAX_AGE_S = 600  # a sign-in not finished in this time must start again


def begin_login(conn: Connection[DictRow], state: str, nonce: str, verifier: str) -> None:
    """Record a sign-in begun; sign-ins abandoned long ago are forgotten on the way."""
    conn.execute(
        "DELETE FROM sso_logins WHERE created_at < now() - make_interval(secs => %s)",
        (LOGIN_MAX_AGE_S,),
    )
    conn.execute(
        "INSERT INTO sso_logins (state, nonce, verifier) VALUES (%s, %s, %s)",
        (state, nonce, verifier),
    )


def take_login(conn: Connection[DictRow], state: str) -> dict[str, Any] | None:
    """The sign-in of this state, removed as it is read (so a state works once); None when
    it is unknown, already used, or too old."""
    return conn.execute(
        "DELETE FROM sso_logins WHERE state = %s RETURNING nonce, verifier,"
        " created_at >= now() - make_interval(secs => %s) AS fresh",
        (state, LOGIN_MAX_AGE_S),
    ).fetchone()


def spend(conn: Connection[DictRow], kind: str, value: str, expires_at: datetime) -> bool:
    """Mark a nonce or an ID token (``kind``) spent until ``expires_at``; False when it was
    spent already (a replay). Two requests at once: one wins, the other waits and loses."""
    conn.execute("DELETE FROM sso_spent WHERE expires_at < now()")
    digest = hashlib.sha256(f"{kind}:{value}".encode()).digest()
    return (
        conn.execute(
            "INSERT INTO sso_spent (digest, expires_at) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (digest, expires_at),
        ).rowcount
        == 1
    )

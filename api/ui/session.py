"""Dashboard sessions: a signed cookie that holds an API token's *id*, never its text.

The cookie (``HttpOnly``, ``Secure``, ``SameSite=Strict``, path ``/ui``) carries the token id,
the sign-in time and the session's CSRF token, signed with a key kept in PostgreSQL (so every
API process and replica accepts it). The server ends a session ``SESSION_MAX_AGE_S`` after its
sign-in whatever the cookie says, and on every request re-reads the token: revoked, expired or
signed out, and the session is over. A stolen cookie is therefore worth no more than the token
id it names for at most that long, and nothing at all once its token is revoked.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import current_app, request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from werkzeug.wrappers import Response

from api import state
from db.dashboard import session_key

COOKIE = "elysium_session"
COOKIE_PATH = "/ui"
SESSION_MAX_AGE_S = 8 * 3600
CSRF_FIELD = "csrf_token"
_KEY = "elysium.ui_session_key"


@dataclass(frozen=True)
class Session:
    """What the cookie says: ``token_id`` None before sign-in (the CSRF token is still there)."""

    csrf: str
    token_id: int | None = None
    signed_in_at: datetime | None = None


def _serializer() -> URLSafeTimedSerializer:
    key = current_app.extensions.get(_KEY)
    if key is None:
        with state.connection() as conn:
            key = current_app.extensions[_KEY] = session_key(conn)
    return URLSafeTimedSerializer(key, salt="elysium.ui.session")


def load() -> Session | None:
    """The request's session, or None when there is none, it is forged, or it is too old."""
    raw = request.cookies.get(COOKIE)
    if not raw:
        return None
    try:
        data: dict[str, Any] = _serializer().loads(raw, max_age=SESSION_MAX_AGE_S)
        at = data.get("at")
        return Session(
            csrf=str(data["c"]),
            token_id=int(data["t"]) if data.get("t") is not None else None,
            signed_in_at=datetime.fromtimestamp(float(at), UTC) if at is not None else None,
        )
    except (BadSignature, KeyError, TypeError, ValueError):
        return None


def new_session(token_id: int | None = None) -> Session:
    """A fresh session (a new CSRF token); signed in with ``token_id`` when given."""
    now = datetime.now(UTC) if token_id is not None else None
    return Session(csrf=secrets.token_urlsafe(32), token_id=token_id, signed_in_at=now)


def save(resp: Response, session: Session) -> None:
    data = {
        "c": session.csrf,
        "t": session.token_id,
        "at": session.signed_in_at.timestamp() if session.signed_in_at else None,
    }
    resp.set_cookie(
        COOKIE,
        _serializer().dumps(data),
        max_age=SESSION_MAX_AGE_S,
        path=COOKIE_PATH,
        secure=True,
        httponly=True,
        samesite="Strict",
    )


def clear(resp: Response) -> None:
    resp.delete_cookie(COOKIE, path=COOKIE_PATH, secure=True, httponly=True, samesite="Strict")


def csrf_ok(session: Session | None) -> bool:
    """Whether this POST carries its session's CSRF token (form field or ``X-CSRF-Token``)."""
    sent = request.form.get(CSRF_FIELD) or request.headers.get("X-CSRF-Token") or ""
    return session is not None and hmac.compare_digest(sent.encode(), session.csrf.encode())

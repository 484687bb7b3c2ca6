"""The dashboard's blueprint and its gate: who is signed in, CSRF on every POST, scopes.

Every request under ``/ui`` but the sign-in page and static files needs a live session
(``api/ui/session.py``); its API token is read again on each request, so a revoked or expired
token's session ends at its next request. Scopes are the API's (``db.tokens.scope_allows``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from flask import Blueprint, g, make_response, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from api import state
from api.ui import session
from db.dashboard import session_token
from db.tokens import scope_allows
from elysium.errors import ElysiumError, Forbidden, Unauthorized
from services.dashboard import actor_of

blp = Blueprint(
    "ui", __name__, url_prefix="/ui", template_folder="templates", static_folder="static"
)
PUBLIC = {"ui.login", "ui.sign_in", "ui.static", "ui.sso_start", "ui.sso_callback"}
F = TypeVar("F", bound=Callable[..., Any])
# Pages only from here: scripts, styles and images from /ui/static, nothing inline.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


@dataclass(frozen=True)
class Viewer:
    """The signed-in caller: its API token's row, the session and how audit names it."""

    token: dict[str, Any]
    session: session.Session

    @property
    def actor(self) -> str:
        return actor_of(self.token)

    @property
    def scope(self) -> str:
        return str(self.token["scope"])

    def allows(self, need: str) -> bool:
        return scope_allows(self.scope, need)


def viewer() -> Viewer:
    return g.viewer


@blp.before_request
def gate() -> Response | None:
    g.session = session.load()
    if request.method == "POST" and not session.csrf_ok(g.session):
        raise Forbidden("this form is stale or forged: reload the page", code="csrf_failed")
    if request.endpoint in PUBLIC:
        return None
    if g.session is None or g.session.token_id is None or g.session.signed_in_at is None:
        return _to_login(None)
    try:
        with state.connection() as conn:
            token = session_token(conn, g.session.token_id, g.session.signed_in_at)
    except Unauthorized as exc:
        return _to_login(exc.message)
    g.viewer = Viewer(token, g.session)
    return None


def _to_login(why: str | None) -> Response:
    target = url_for("ui.login", why=why) if why else url_for("ui.login")
    resp: Response
    if request.headers.get("HX-Request"):  # htmx follows a redirect into the table: say where
        resp = make_response("", 401)
        resp.headers["HX-Redirect"] = target
    else:
        resp = redirect(target, 303)
    if why:
        session.clear(resp)
    return resp


def requires(need: str) -> Callable[[F], F]:
    """A view decorator: the viewer's token scope includes ``need`` (as in the API)."""

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not viewer().allows(need):
                raise Forbidden(f"this needs the {need} scope", code="insufficient_scope")
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def page(template: str, http_status: int = 200, /, **context: Any) -> Response:
    """Render a page with what every page shows (who is signed in, the CSRF token)."""
    s = g.get("session")
    resp = make_response(
        render_template(
            template,
            viewer=g.get("viewer"),
            csrf_token=s.csrf if s else "",
            csrf_field=session.CSRF_FIELD,
            **context,
        ),
        http_status,
    )
    return resp


@blp.after_request
def headers(resp: Response) -> Response:
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers["X-Frame-Options"] = "DENY"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "no-referrer"
    if request.endpoint != "ui.static":
        resp.headers["Cache-Control"] = "no-store"
    return resp


@blp.errorhandler(ElysiumError)
def elysium_error(exc: ElysiumError) -> Response:
    return page("error.html", exc.status, code=exc.code, message=exc.message, fields=exc.fields)


@blp.errorhandler(HTTPException)
def http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    return page("error.html", status, code=str(status), message=exc.description, fields={})


@blp.app_template_filter("age")
def age(when: datetime | None) -> str:
    """How long ago, shortly: ``42 s``, ``5 min``, ``3 h``, ``2 d``; ``never`` for None."""
    if when is None:
        return "never"
    s = max(0, int((datetime.now(UTC) - when).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            return f"{s // size} {unit}"
    return f"{s} s"


@blp.app_template_filter("size")
def size(n: int | None) -> str:
    """Bytes for people: ``0 B``, ``1.5 KiB``, ``12.0 MiB``."""
    value = float(n or 0)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


@blp.app_template_filter("when")
def when(value: datetime | None) -> str:
    """A time in UTC, to the second."""
    return "" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

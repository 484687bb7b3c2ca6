"""Signing in (paste an API token, or single sign-on: ``api/ui/sso.py``) and out."""

from __future__ import annotations

from flask import g, redirect, request, url_for
from werkzeug.wrappers import Response

from api import state
from api.ui import session
from api.ui.blueprint import blp, page, viewer
from elysium.errors import Unauthorized
from services import dashboard as services


@blp.route("/login", methods=["GET"])
def login() -> Response:
    """The sign-in form; it starts an anonymous session so the form has its CSRF token."""
    if g.session is None:
        g.session = session.new_session()
    resp = page("login.html", why=request.args.get("why"), sso=state.settings().sso)
    session.save(resp, g.session)
    return resp


@blp.route("/login", methods=["POST"])
def sign_in() -> Response:
    """Check the pasted token; the session keeps its id (never its text)."""
    text = request.form.get("token", "").strip()
    try:
        with state.connection() as conn:
            token = services.sign_in(conn, text)
    except Unauthorized as exc:
        return page("login.html", 401, why=exc.message, sso=state.settings().sso)
    resp = redirect(url_for("ui.overview"), 303)
    session.save(resp, session.new_session(token["id"]))  # a new CSRF token with the new session
    return resp


@blp.route("/logout", methods=["POST"])
def logout() -> Response:
    """End every dashboard session of this token (this one included) and forget the cookie."""
    with state.connection() as conn:
        services.sign_out(conn, viewer().token)
    resp = redirect(url_for("ui.login", why="signed out"), 303)
    session.clear(resp)
    return resp

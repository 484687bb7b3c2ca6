"""Signing in to the dashboard through the OpenID provider (authorization code + PKCE).

``/ui/sso/start`` records a sign-in (state, nonce, PKCE verifier: one-time, in PostgreSQL),
binds its state to this browser in a short cookie, and sends the browser to the provider;
``/ui/sso/callback`` takes the provider's answer, which must carry this browser's state, and
signs the user in with an API token of their mapped scope (``services/sso.py``). The
sessions it makes are the same as a pasted token's (``api/ui/session.py``).
"""

from __future__ import annotations

from flask import g, redirect, request
from werkzeug.wrappers import Response

from api import state
from api.ui import session
from api.ui.blueprint import blp, page
from elysium.oidc import SsoRefused
from services import sso as services

STATE_COOKIE = "elysium_sso"
STATE_COOKIE_PATH = "/ui/sso"


@blp.route("/sso/start", methods=["GET"])
def sso_start() -> Response:
    """Begin a sign-in at the provider (a link, not a form: the page's CSP lets forms post
    only to this origin, and that would cover the redirect to the provider too)."""
    provider = state.state().oidc
    with state.connection() as conn:
        sso_state, url = services.begin_sign_in(conn, state.settings(), provider)
    resp = redirect(url, 303)
    # Lax, not Strict: the provider's redirect back is a navigation from another site.
    resp.set_cookie(
        STATE_COOKIE,
        sso_state,
        max_age=600,
        path=STATE_COOKIE_PATH,
        secure=True,
        httponly=True,
        samesite="Lax",
    )
    return resp


@blp.route("/sso/callback", methods=["GET"])
def sso_callback() -> Response:
    """The provider's answer: sign in, or the sign-in page saying why not."""
    g.session = session.new_session()  # the page shown on refusal needs a CSRF token
    try:
        provider = state.state().oidc
        with state.connection() as conn:
            signed = services.finish_sign_in(
                conn,
                state.settings(),
                provider,
                state=request.args.get("state", ""),
                bound_state=request.cookies.get(STATE_COOKIE, ""),
                code=request.args.get("code", ""),
                error=request.args.get("error", ""),
                token_ttl_s=session.SESSION_MAX_AGE_S,
            )
    except SsoRefused as exc:
        resp = page("login.html", exc.status, why=exc.message, why_code=exc.code, sso=True)
        session.save(resp, g.session)
        resp.delete_cookie(STATE_COOKIE, path=STATE_COOKIE_PATH, secure=True, httponly=True)
        return resp
    g.session = session.new_session(signed.token["id"])
    # A page, not a redirect: the session cookie is SameSite=Strict, and a redirect chain
    # that began at the provider would not carry it to the overview.
    resp = page("sso_done.html", name=signed.who.name, scope=signed.token["scope"])
    session.save(resp, g.session)
    resp.delete_cookie(STATE_COOKIE, path=STATE_COOKIE_PATH, secure=True, httponly=True)
    return resp

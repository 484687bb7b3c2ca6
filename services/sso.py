"""Single sign-on's use cases: a dashboard sign-in (authorization code + PKCE) and the
exchange of an ID token for a short-lived API token (``elysium login --sso``).

Either way the user ends up holding an ordinary API token (``db/tokens``): named after the
user, of the scope the claim mapping gives, expiring, revocable, and every action with it is
audited under that name. Each sign-in and each refusal is audited too; a refusal before the
ID token is verified names the user only as the token claimed it (``claimed`` in detail).
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from psycopg import Connection
from psycopg.rows import DictRow

from db import audit, enrollment_tokens, sso, tokens
from db.interfaces import list_hub_interfaces
from elysium.oidc import (
    Identity,
    Provider,
    SsoRefused,
    enroll_rule,
    identity,
    map_scope,
    pkce_pair,
)
from elysium.settings import Settings

SIGN_IN = "dashboard.sso_sign_in"
EXCHANGE = "sso.token"
ENROLL = "sso.enrollment_token"
ENROLL_TOKEN_TTL_S = 600  # the one-use token `elysium-client enroll --sso` redeems at once
T = TypeVar("T")


@dataclass(frozen=True)
class SignedIn:
    """A user signed in: who, and the API token made for them (``text`` only from exchange)."""

    who: Identity
    token: dict[str, Any]
    text: str


def begin_sign_in(
    conn: Connection[DictRow], settings: Settings, provider: Provider
) -> tuple[str, str]:
    """Start a dashboard sign-in: its state (the browser keeps it in a cookie) and the
    provider's authorization URL to send the browser to."""
    state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    verifier, challenge = pkce_pair()
    url = provider.authorization_url(
        client_id=settings.oidc_client_id,
        redirect_uri=settings.oidc_redirect_url,
        scope=settings.oidc_scopes,
        state=state,
        nonce=nonce,
        challenge=challenge,
    )
    with conn.transaction():
        sso.begin_login(conn, state, nonce, verifier)
    return state, url


def finish_sign_in(
    conn: Connection[DictRow],
    settings: Settings,
    provider: Provider,
    *,
    state: str,
    bound_state: str,
    code: str,
    error: str,
    token_ttl_s: int,
) -> SignedIn:
    """Redeem the provider's answer to a sign-in begun in this browser (``bound_state``
    from its cookie): its state once; the code for an ID token verified with that sign-in's
    nonce (spent once too); the user's claims mapped to a scope. Refusals raise SsoRefused
    after their audit record is written."""

    seen: dict[str, str] = {}

    def attempt() -> SignedIn:
        if error:
            raise SsoRefused(
                f"the provider did not sign you in ({error})", code="sso_provider_error"
            )
        if not state or not hmac.compare_digest(state.encode(), bound_state.encode()):
            # Not begun in this browser: someone else's sign-in must not land in this one.
            raise SsoRefused(
                "this sign-in was not started in this browser: sign in again",
                code="sso_state_unbound",
            )
        with conn.transaction():
            begun = sso.take_login(conn, state)
        if begun is None or not begun["fresh"]:
            raise SsoRefused(
                "this sign-in is unknown, used already or too old: sign in again",
                code="sso_state_unknown",
            )
        answer = provider.exchange_code(
            code=code,
            redirect_uri=settings.oidc_redirect_url,
            verifier=begun["verifier"],
            client_id=settings.oidc_client_id,
            client_secret=settings.oidc_client_secret,
        )
        id_token = seen["id_token"] = str(answer["id_token"])
        claims = provider.verify_id_token(id_token, settings.oidc_audiences, nonce=begun["nonce"])
        return _grant(conn, settings, claims, "nonce", begun["nonce"], SIGN_IN, token_ttl_s)

    return _audited(conn, SIGN_IN, attempt, lambda: seen.get("id_token"))


def exchange_id_token(
    conn: Connection[DictRow], settings: Settings, provider: Provider, id_token: str
) -> SignedIn:
    """A short-lived API token for the user of a provider's ID token, verified as the
    dashboard's are (no nonce: this token was not asked for by us); each ID token works once."""

    def attempt() -> SignedIn:
        claims = provider.verify_id_token(id_token, settings.oidc_audiences)
        return _grant(
            conn, settings, claims, "id_token", id_token, EXCHANGE, settings.oidc_token_ttl_s
        )

    return _audited(conn, EXCHANGE, attempt, lambda: id_token)


def enrollment_token(
    conn: Connection[DictRow], settings: Settings, provider: Provider, id_token: str
) -> tuple[dict[str, Any], str]:
    """A one-use enrollment token for the user of a verified ID token (once per ID token),
    on the interface and with the tags of the first ``ELYSIUM_OIDC_ENROLL`` rule naming
    them; its row and text. The peer then enrolls with it as with any other."""

    def attempt() -> tuple[dict[str, Any], str]:
        claims = provider.verify_id_token(id_token, settings.oidc_audiences)
        who = identity(claims, settings.oidc_groups_claim)
        rule = enroll_rule(settings, who)
        expires = datetime.fromtimestamp(int(claims["exp"]), UTC)
        with conn.transaction():
            if not sso.spend(conn, "id_token", id_token, expires):
                raise _Refusal(
                    who, SsoRefused("this ID token was used already", code="sso_replayed")
                )
            if rule is None:
                raise _Refusal(
                    who,
                    SsoRefused(
                        f"{who.name} may not enroll peers here: an administrator must add one of"
                        " your groups or your e-mail domain to ELYSIUM_OIDC_ENROLL",
                        code="sso_no_enrollment",
                        status=403,
                    ),
                )
            iface = next(
                (i for i in list_hub_interfaces(conn, rule.hub) if i["name"] == rule.interface),
                None,
            )
            if iface is None:
                raise _Refusal(
                    who,
                    SsoRefused(
                        f"interface {rule.hub}/{rule.interface} of ELYSIUM_OIDC_ENROLL"
                        " does not exist",
                        code="sso_interface_missing",
                        status=409,
                    ),
                )
            row, text = enrollment_tokens.create_enrollment_token(
                conn,
                iface["id"],
                ("sso:" + who.name)[:64],
                ENROLL_TOKEN_TTL_S,
                1,
                [],
                who.actor,
                list(rule.tags),
            )
            audit.record(
                conn,
                who.actor,
                ENROLL,
                f"enrollment_token:{row['id']}",
                "succeeded",
                {
                    "issuer": who.issuer,
                    "subject": who.subject,
                    "groups": list(who.groups),
                    "interface_id": iface["id"],
                    "tags": row["tags"],
                },
            )
        return row, text

    return _audited(conn, ENROLL, attempt, lambda: id_token)


def _grant(
    conn: Connection[DictRow],
    settings: Settings,
    claims: dict[str, Any],
    kind: str,
    once: str,
    action: str,
    ttl_s: int,
) -> SignedIn:
    """The verified user's API token, if the one-time value is fresh and a mapping names them."""
    who = identity(claims, settings.oidc_groups_claim)
    scope = map_scope(settings, who)
    expires = datetime.fromtimestamp(int(claims["exp"]), UTC)
    with conn.transaction():
        if not sso.spend(conn, kind, once, expires):
            raise _Refusal(who, SsoRefused(f"this {kind} was used already", code="sso_replayed"))
        if scope is None:
            raise _Refusal(
                who,
                SsoRefused(
                    f"{who.name} is not mapped to any scope here: an administrator must add"
                    " one of your groups or your e-mail domain to the ELYSIUM_OIDC_* mappings",
                    code="sso_unmapped",
                    status=403,
                ),
            )
        row, text = tokens.create_api_token(conn, ("sso:" + who.name)[:64], scope, ttl_s, who.actor)
        audit.record(
            conn,
            who.actor,
            action,
            f"api_token:{row['id']}",
            "succeeded",
            {
                "issuer": who.issuer,
                "subject": who.subject,
                "scope": scope,
                "groups": list(who.groups),
                "expires_at": row["expires_at"].isoformat() if row["expires_at"] else None,
            },
        )
    return SignedIn(who, row, text)


class _Refusal(Exception):
    """A refusal of a verified user: audited under their name."""

    def __init__(self, who: Identity, refused: SsoRefused) -> None:
        super().__init__(refused.message)
        self.who, self.refused = who, refused


def _audited(
    conn: Connection[DictRow],
    action: str,
    attempt: Callable[[], T],
    token_text: Callable[[], str | None],
) -> T:
    """Run ``attempt``; a refusal is recorded (outcome ``refused``, its code) and raised."""
    try:
        return attempt()
    except _Refusal as exc:
        who = exc.who
        actor, detail = who.actor, {"subject": who.subject, "groups": list(who.groups)}
        refused = exc.refused
    except SsoRefused as exc:
        refused = exc
        claimed = _claimed_name(token_text())
        actor, detail = "sso:unverified", ({"claimed": claimed} if claimed else {})
    with conn.transaction():
        audit.record(conn, actor, action, None, "refused", {"code": refused.code, **detail})
    raise refused


def _claimed_name(token: str | None) -> str | None:
    """Who an unverified ID token says it is (for the audit record of its refusal only)."""
    if not token or token.count(".") != 2:
        return None
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        name = claims.get("email") or claims.get("preferred_username") or claims.get("sub")
    except (ValueError, AttributeError):
        return None
    return str(name)[:200] if name else None

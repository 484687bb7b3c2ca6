"""Who is calling: API bearer tokens (scopes), enrollment tokens, peer client certificates.

The verified client certificate comes only from the WSGI environ key that our gunicorn worker
sets from the TLS socket (``CLIENT_CERT_ENVIRON``); no request header is ever trusted for it.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from cryptography import x509
from flask import g, request

from api import state
from db import tokens
from db.peers import certificate_holder
from elysium import pki
from elysium.errors import Forbidden, Unauthorized
from elysium.states import is_live_peer

CLIENT_CERT_ENVIRON = "elysium.client_cert_der"

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Caller:
    """The authenticated caller: ``actor`` names it in jobs and audit records."""

    actor: str
    scope: str | None = None  # API tokens only
    peer_id: int | None = None  # peer certificates only
    # A peer's certificate that a renewal replaced: it may only fetch that renewal's result.
    certificate_replaced: bool = False

    def allows(self, need: str) -> bool:
        return self.scope is not None and tokens.scope_allows(self.scope, need)


def caller() -> Caller:
    return g.caller


def bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    kind, _, value = header.partition(" ")
    if kind.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def authenticate_api_token() -> Caller:
    text = bearer()
    if text is None:
        raise Unauthorized(
            "an API token is needed (Authorization: Bearer ...)", code="token_missing"
        )
    with state.connection() as conn:
        row = tokens.authenticate_api_token(conn, text)
    return Caller(actor=f"token:{row['id']}:{row['name']}", scope=row["scope"])


def require_scope(need: str) -> Callable[[F], F]:
    """A view decorator: a valid API token whose scope includes ``need``."""

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            who = authenticate_api_token()
            if not who.allows(need):
                raise Forbidden(f"this call needs the {need} scope", code="insufficient_scope")
            g.caller = who
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def enrollment_actor(token_text: str) -> str:
    """The submitter of jobs made with an enrollment token: derived from the token itself,
    so its holder can read those jobs back (with the token as bearer) before it has a
    certificate. Never the token text: this string is stored and shown in audit records."""
    return "enroll:" + hashlib.sha256(token_text.encode()).hexdigest()[:24]


def peer_from_certificate(*, replaced_ok: bool = False) -> Caller:
    """The live peer named by the verified client certificate of this connection, which must
    be the certificate the peer holds now: one that a renewal replaced is refused (401
    ``certificate_replaced``) unless ``replaced_ok`` (reading the renewal's own job)."""
    der = request.environ.get(CLIENT_CERT_ENVIRON)
    if not der:
        raise Unauthorized("a peer client certificate is needed", code="certificate_missing")
    try:
        named = certificate_peer(state.state().ca_cert, der)
    except ValueError:
        raise Unauthorized(
            "the client certificate is not readable", code="certificate_invalid"
        ) from None
    if named is None:
        raise Unauthorized(
            "the client certificate does not name a peer of this CA", code="certificate_invalid"
        )
    peer_id, serial = named
    with state.connection() as conn:
        peer = certificate_holder(conn, peer_id)
    if not is_live_peer(peer["status"]):
        raise Forbidden(f"peer {peer_id} is {peer['status']}", code="peer_not_live")
    replaced = peer["certificate_serial"] != serial
    if replaced and not replaced_ok:
        raise CertificateReplaced(peer_id)
    return Caller(actor=f"peer:{peer_id}", peer_id=peer_id, certificate_replaced=replaced)


# Certificates checked per process, most recently used kept: a follower asks again right after
# every answer with the same certificate, and parsing it and checking its signature again is
# most of what authenticating it costs; so is reading the peer id from its names (its holder
# and serial in the database are still read each time).
CHECKED_CERTIFICATES = 20_000


def certificate_peer(
    ca_cert: x509.Certificate, der: bytes, now: dt.datetime | None = None
) -> tuple[int, str] | None:
    """The peer id and serial (hex) of a certificate ``ca_cert`` issued that is valid ``now``,
    else None; ValueError when ``der`` is no certificate. TLS verified the chain already;
    checking again keeps a misconfigured server safe."""
    checked = _checked_certificate(ca_cert, der)
    if checked is None or not pki.valid_at(checked.cert, now):
        return None
    return checked.named


@dataclass(frozen=True)
class _Checked:
    """A certificate ``ca_cert`` signed, and the peer it names, read from it once."""

    cert: x509.Certificate
    named: tuple[int, str] | None  # (peer id, serial hex), None when it names no peer


@functools.lru_cache(maxsize=CHECKED_CERTIFICATES)
def _checked_certificate(ca_cert: x509.Certificate, der: bytes) -> _Checked | None:
    cert = x509.load_der_x509_certificate(der)
    if not pki.signed_by(ca_cert, cert):
        return None
    peer_id = pki.peer_id_from_certificate(cert)
    named = None if peer_id is None else (peer_id, pki.serial_hex(cert))
    return _Checked(cert, named)


class CertificateReplaced(Unauthorized):
    """A certificate that is no longer the peer's: renewed since (or never recorded)."""

    def __init__(self, peer_id: int) -> None:
        super().__init__(
            f"this certificate of peer {peer_id} was replaced by a newer one",
            code="certificate_replaced",
        )


def require_peer(view: F) -> F:
    """A view decorator: the caller is a live peer, by its client certificate."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        parked = state.parking()
        if parked is not None and parked.resumed and parked.caller is not None:
            # Served again after waiting parked: authenticated when it came, as a request
            # waiting on a thread is (its peer's status is read again with its config).
            g.caller = parked.caller
        else:
            # before reading: what a later request on this connection may trust it since
            mark = state.notifications().mark() if parked is not None else None
            g.caller = peer_from_certificate()
            if parked is not None:
                parked.caller, parked.caller_mark = g.caller, mark
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def require_any(view: F) -> F:
    """A view decorator: an API token, an enrollment token (bearer), or a peer certificate."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        text = bearer()
        if text is not None and text.startswith(tokens.ENROLLMENT_PREFIX):
            g.caller = Caller(actor=enrollment_actor(text))
        elif text is None and request.environ.get(CLIENT_CERT_ENVIRON):
            g.caller = peer_from_certificate(replaced_ok=True)  # the view narrows it
        else:
            g.caller = authenticate_api_token()
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]

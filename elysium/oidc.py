"""OpenID Connect, the relying party's side: discovery, PKCE, the code exchange, ID token
verification (signature by the provider's JWKS, issuer, audience, expiry, nonce) and the
mapping of a verified user's claims to an Elysium scope.

The dashboard (code + PKCE), ``POST /v1/sso/token`` and the command line's device flow all
verify ID tokens here, the same way. JOSE is joserfc's; nothing is decoded without its
signature checked first.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import requests
from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    InvalidKeyIdError,
    JoseError,
    MissingClaimError,
    UnsupportedAlgorithmError,
)
from joserfc.jwk import KeySet

from elysium.errors import ElysiumError, Unauthorized
from elysium.settings import EnrollRule, Settings
from elysium.states import Scope

# Asymmetric algorithms only: an HMAC "signature" would be made with the client secret.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA")
LEEWAY_S = 30  # clock skew allowed between the provider and this host
KEYS_REFRESH_MIN_S = 60  # an unknown key id fetches the JWKS again at most this often
HTTP_TIMEOUT_S = 10


class SsoRefused(Unauthorized):
    """Single sign-on refused: ``code`` says why (``sso_bad_signature``, ``sso_expired`` …)."""


class ProviderUnavailable(ElysiumError):
    status = 502
    code = "sso_provider_unavailable"


@dataclass(frozen=True)
class Identity:
    """A user as a verified ID token names it."""

    issuer: str
    subject: str
    email: str | None
    email_verified: bool
    username: str | None
    groups: tuple[str, ...]

    @property
    def name(self) -> str:
        """How audit records and token names call this user: e-mail, else login, else sub."""
        return self.email or self.username or self.subject

    @property
    def actor(self) -> str:
        return f"sso:{self.name}"

    @property
    def email_domain(self) -> str | None:
        """The e-mail's domain, only when the provider says it verified the address."""
        if not self.email or not self.email_verified or "@" not in self.email:
            return None
        return self.email.rsplit("@", 1)[1].lower()


def pkce_pair() -> tuple[str, str]:
    """A PKCE code verifier and its S256 challenge (RFC 7636)."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class Provider:
    """One OpenID provider, by its issuer URL: its discovery document and keys, cached."""

    def __init__(self, issuer: str, *, ca_bundle: str | bool = True) -> None:
        self.issuer = issuer.rstrip("/")
        self.ca_bundle = ca_bundle
        self._lock = threading.Lock()
        self._metadata: dict[str, Any] | None = None
        self._keys: KeySet | None = None
        self._keys_at = 0.0

    def _get(self, url: str) -> dict[str, Any]:
        try:
            r = requests.get(url, timeout=HTTP_TIMEOUT_S, verify=self.ca_bundle)
            r.raise_for_status()
            body = r.json()
        except (requests.RequestException, ValueError) as exc:
            raise ProviderUnavailable(f"the OpenID provider did not answer {url}: {exc}") from None
        if not isinstance(body, dict):
            raise ProviderUnavailable(f"the OpenID provider's {url} is not a JSON object")
        return body

    def metadata(self) -> dict[str, Any]:
        """The discovery document, whose ``issuer`` must be the configured one."""
        with self._lock:
            if self._metadata is None:
                doc = self._get(self.issuer + "/.well-known/openid-configuration")
                if doc.get("issuer") != self.issuer:
                    raise ProviderUnavailable(
                        f"the provider's discovery names issuer {doc.get('issuer')!r},"
                        f" not {self.issuer!r}"
                    )
                self._metadata = doc
            return self._metadata

    def endpoint(self, name: str) -> str:
        url = self.metadata().get(name)
        if not isinstance(url, str):
            raise ProviderUnavailable(f"the OpenID provider has no {name}")
        return url

    def keys(self, *, refresh: bool = False) -> KeySet:
        """The provider's signing keys (JWKS); ``refresh`` fetches them again (rotation)."""
        uri = self.endpoint("jwks_uri")
        with self._lock:
            stale = refresh and time.monotonic() - self._keys_at > KEYS_REFRESH_MIN_S
            if self._keys is None or stale:
                try:
                    self._keys = KeySet.import_key_set(self._get(uri))  # type: ignore[arg-type]
                except JoseError as exc:
                    raise ProviderUnavailable(f"the provider's JWKS is not usable: {exc}") from None
                self._keys_at = time.monotonic()
            return self._keys

    def authorization_url(
        self,
        *,
        client_id: str,
        redirect_uri: str,
        scope: str,
        state: str,
        nonce: str,
        challenge: str,
    ) -> str:
        query = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "scope": scope,
            "state": state,
            "nonce": nonce,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        return self.endpoint("authorization_endpoint") + "?" + urlencode(query)

    def exchange_code(
        self, *, code: str, redirect_uri: str, verifier: str, client_id: str, client_secret: str
    ) -> dict[str, Any]:
        """The token endpoint's answer for an authorization code (RFC 6749 4.1.3 + PKCE)."""
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
            "client_id": client_id,
        }
        auth = (client_id, client_secret) if client_secret else None
        try:
            r = requests.post(
                self.endpoint("token_endpoint"),
                data=form,
                auth=auth,
                timeout=HTTP_TIMEOUT_S,
                verify=self.ca_bundle,
            )
            body = r.json()
        except (requests.RequestException, ValueError) as exc:
            raise ProviderUnavailable(f"the provider's token endpoint failed: {exc}") from None
        if r.status_code != 200 or not isinstance(body, dict) or "id_token" not in body:
            error = body.get("error") if isinstance(body, dict) else None
            raise SsoRefused(
                f"the provider refused the authorization code ({error or r.status_code})",
                code="sso_code_refused",
            )
        return body

    def verify_id_token(
        self, token: str, audiences: tuple[str, ...], nonce: str | None = None
    ) -> dict[str, Any]:
        """The claims of an ID token that this provider signed for one of ``audiences``,
        unexpired, with ``nonce`` when one is given; else SsoRefused naming what failed."""
        if not isinstance(token, str) or token.count(".") != 2 or len(token) > 16384:
            raise SsoRefused("the ID token is not a signed JWT", code="sso_malformed")
        claims = self._decode(token).claims
        options: dict[str, Any] = {
            "iss": {"essential": True, "value": self.issuer},
            "aud": {"essential": True, "values": list(audiences)},
            "sub": {"essential": True},
            "exp": {"essential": True},
            "iat": {"essential": True},
        }
        if nonce is not None:
            options["nonce"] = {"essential": True, "value": nonce}
        registry = jwt.JWTClaimsRegistry(leeway=LEEWAY_S, **options)
        try:
            registry.validate(claims)
        except ExpiredTokenError:
            raise SsoRefused("the ID token has expired", code="sso_expired") from None
        except MissingClaimError as exc:
            raise SsoRefused(
                f"the ID token lacks its {exc.claim} claim", code="sso_missing_claim"
            ) from None
        except InvalidClaimError as exc:
            raise SsoRefused(
                f"the ID token's {exc.claim} claim is not the expected one",
                code=f"sso_bad_{exc.claim}",
            ) from None
        except JoseError as exc:
            raise SsoRefused(f"the ID token is not acceptable: {exc}", code="sso_invalid") from None
        # Several audiences: the party it was issued to (azp) must be one of ours (OIDC 3.1.3.7).
        aud = claims["aud"]
        if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") not in audiences:
            raise SsoRefused("the ID token was issued to another party", code="sso_bad_azp")
        return claims

    def _decode(self, token: str) -> jwt.Token:
        """The token with its signature checked against the provider's keys."""
        for refresh in (False, True):
            try:
                return jwt.decode(token, self.keys(refresh=refresh), algorithms=list(ALGORITHMS))
            except InvalidKeyIdError:
                continue  # a key id we do not hold may be a rotation: fetch the keys once more
            except (BadSignatureError, UnsupportedAlgorithmError):
                break
            except JoseError:
                raise SsoRefused("the ID token is not a signed JWT", code="sso_malformed") from None
        raise SsoRefused("the ID token's signature is not the provider's", code="sso_bad_signature")


def identity(claims: dict[str, Any], groups_claim: str) -> Identity:
    """The user a verified ID token's claims name."""
    groups = claims.get(groups_claim) or []
    if isinstance(groups, str):
        groups = [groups]
    return Identity(
        issuer=str(claims["iss"]),
        subject=str(claims["sub"]),
        email=claims.get("email") if isinstance(claims.get("email"), str) else None,
        email_verified=claims.get("email_verified") is True,
        username=(
            claims.get("preferred_username")
            if isinstance(claims.get("preferred_username"), str)
            else None
        ),
        groups=tuple(str(g) for g in groups if isinstance(g, str | int)),
    )


def map_scope(settings: Settings, who: Identity) -> str | None:
    """The highest scope that one of the user's groups or its verified e-mail domain is
    mapped to; None when no mapping names the user (the user is refused)."""
    domain = who.email_domain
    for scope, groups, domains in (
        (Scope.ADMIN, settings.oidc_admin_groups, settings.oidc_admin_email_domains),
        (Scope.OPERATOR, settings.oidc_operator_groups, settings.oidc_operator_email_domains),
        (Scope.READER, settings.oidc_reader_groups, settings.oidc_reader_email_domains),
    ):
        if set(who.groups) & set(groups) or (
            domain is not None and domain in {d.lower() for d in domains}
        ):
            return str(scope)
    return None


def enroll_rule(settings: Settings, who: Identity) -> EnrollRule | None:
    """The first ``ELYSIUM_OIDC_ENROLL`` rule naming one of the user's groups or their
    verified e-mail domain: where their peers enroll, with which tags; None for nobody's."""
    domain = who.email_domain
    for rule in settings.enroll_rules:
        if (rule.kind == "group" and rule.match in who.groups) or (
            rule.kind == "domain" and rule.match == domain
        ):
            return rule
    return None

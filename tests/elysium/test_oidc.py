"""Single sign-on's settings and claim mapping (the verification itself runs against the
real provider: tests/api/test_sso.py)."""

from __future__ import annotations

import base64
import hashlib

import pytest

from elysium.errors import ConfigError
from elysium.oidc import Identity, enroll_rule, map_scope, pkce_pair
from elysium.settings import EnrollRule, Settings

MAPPING = {
    "ELYSIUM_OIDC_ISSUER": "https://idp.example",
    "ELYSIUM_OIDC_CLIENT_ID": "elysium",
    "ELYSIUM_OIDC_ADMIN_GROUPS": "netops, sre",
    "ELYSIUM_OIDC_OPERATOR_EMAIL_DOMAINS": "Ops.Example.com",
    "ELYSIUM_OIDC_READER_EMAIL_DOMAINS": "example.com",
    "ELYSIUM_OIDC_ENROLL": "group:sre=hub-a/wg0:oncall+sre,domain:example.com=hub-b/wg1",
}


def user(email: str | None, verified: bool = True, groups: tuple[str, ...] = ()) -> Identity:
    return Identity("https://idp.example", "sub-1", email, verified, None, groups)


def test_lists_read_comma_separated_and_round_trip() -> None:
    settings = Settings.from_env(MAPPING)
    assert settings.oidc_admin_groups == ("netops", "sre")
    assert settings.oidc_audiences == ("elysium",)
    assert Settings.from_env(settings.to_env()) == settings


@pytest.mark.parametrize(
    ("who", "scope"),
    [
        (user("a@elsewhere.org", groups=("sre",)), "admin"),
        (user("b@ops.example.com", groups=("x",)), "operator"),  # domains match in any case
        (user("c@example.com"), "reader"),
        (user("d@ops.example.com", verified=False), None),  # an unverified address names no one
        (user("e@elsewhere.org"), None),
        (user(None, groups=("netops",)), "admin"),
    ],
)
def test_the_highest_mapped_scope_wins(who: Identity, scope: str | None) -> None:
    assert map_scope(Settings.from_env(MAPPING), who) == scope


def test_the_first_enrollment_rule_naming_the_user_wins() -> None:
    settings = Settings.from_env(MAPPING)
    assert enroll_rule(settings, user("c@example.com", groups=("sre",))) == EnrollRule(
        "group", "sre", "hub-a", "wg0", ("oncall", "sre")
    )
    assert enroll_rule(settings, user("c@example.com")) == EnrollRule(
        "domain", "example.com", "hub-b", "wg1", ()
    )
    assert enroll_rule(settings, user("c@example.com", verified=False)) is None


@pytest.mark.parametrize("rule", ["team:x=hub/wg0", "group:x=hub", "group:=hub/wg0", "x"])
def test_a_malformed_enrollment_rule_stops_the_process(rule: str) -> None:
    with pytest.raises(ConfigError, match="ELYSIUM_OIDC_ENROLL"):
        Settings.from_env({"ELYSIUM_OIDC_ENROLL": rule})


def test_an_issuer_needs_a_client_id() -> None:
    with pytest.raises(ConfigError, match="ELYSIUM_OIDC_CLIENT_ID"):
        Settings.from_env({"ELYSIUM_OIDC_ISSUER": "https://idp.example"})


def test_pkce_challenge_is_s256_of_the_verifier() -> None:
    verifier, challenge = pkce_pair()
    assert 43 <= len(verifier) <= 128
    digest = hashlib.sha256(verifier.encode()).digest()
    assert challenge == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

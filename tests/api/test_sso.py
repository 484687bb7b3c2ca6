"""``/v1/sso``: an ID token from the real OpenID provider (tests/oidc) buys a short-lived API
token of the mapped scope, once; every token that is not the provider's, not for Elysium,
expired, replayed or of a user no mapping names is refused, audited, and makes no token."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import psycopg
import pytest

from elysium.oidc import Provider, SsoRefused
from tests.api.conftest import Api, Pki, Sso
from tests.api.conftest import new_key as new_wg_key
from tests.oidc import CLI_CLIENT, DASHBOARD_CLIENT, USERS, new_key


@pytest.fixture
def client(sso: Sso, api_pki: Pki, db: psycopg.Connection[Any]) -> Api:
    return Api(sso.url, api_pki.ca)


def tokens_made(db: psycopg.Connection[Any]) -> int:
    return int(db.execute("SELECT count(*) AS n FROM api_tokens").fetchone()["n"])


def last_audit(db: psycopg.Connection[Any]) -> dict[str, Any]:
    row = db.execute("SELECT * FROM audit ORDER BY id DESC LIMIT 1").fetchone()
    assert row is not None
    return dict(row)


def claims_of(user: str) -> dict[str, Any]:
    return {"sub": user, **USERS[user]}


def test_sso_config_names_the_provider_and_the_cli_client(client: Api, sso: Sso) -> None:
    r = client.get("/v1/sso")
    assert r.status_code == 200, r.text
    assert r.json() == {
        "issuer": sso.provider.issuer,
        "client_id": CLI_CLIENT,
        "scopes": "openid email profile groups",
    }


def test_an_api_without_a_provider_says_sso_is_off(anonymous: Api) -> None:
    r = anonymous.get("/v1/sso")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "sso_disabled"


def test_an_id_token_buys_a_revocable_short_token_of_the_mapped_scope(
    client: Api, sso: Sso, db: psycopg.Connection[Any], admin: Api
) -> None:
    r = client.post("/v1/sso/token", json={"id_token": sso.provider.sign({})})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["scope"] == "admin" and body["name"] == "sso:alice@example.com"
    row = db.execute(
        "SELECT created_by, extract(epoch FROM expires_at - now()) AS left_s FROM api_tokens"
        " WHERE id = %s",
        (body["id"],),
    ).fetchone()
    assert row["created_by"] == "sso:alice@example.com"
    assert 3500 < row["left_s"] <= 3600  # ELYSIUM_OIDC_TOKEN_TTL_S's default, an hour
    record = last_audit(db)
    assert (record["actor"], record["action"], record["outcome"]) == (
        "sso:alice@example.com",
        "sso.token",
        "succeeded",
    )
    assert record["target"] == f"api_token:{body['id']}"
    assert record["detail"]["groups"] == ["elysium-admins"]
    assert "token" not in json.dumps(record["detail"]).replace("api_token", "")

    user = Api(sso.url, client.ca, body["token"])
    hub = user.post("/v1/hubs", json={"name": "hub-sso", "endpoint": "192.0.2.9"})
    assert hub.status_code == 201, hub.text
    # What the user does is audited under the user's name.
    assert last_audit(db)["actor"] == f"token:{body['id']}:sso:alice@example.com"
    assert admin.delete(f"/v1/tokens/{body['id']}").status_code == 200
    assert user.get("/v1/hubs").status_code == 401


@pytest.mark.parametrize(
    ("user", "scope"), [("alice", "admin"), ("bob", "operator"), ("carol", "reader")]
)
def test_groups_and_verified_email_domains_map_to_scopes(
    client: Api, sso: Sso, user: str, scope: str
) -> None:
    r = client.post("/v1/sso/token", json={"id_token": sso.provider.sign(claims_of(user))})
    assert r.status_code == 201, r.text
    assert r.json()["scope"] == scope


def _forged(sso: Sso) -> str:
    # The provider's key id, another key: only the signature is wrong.
    impostor = new_key(sso.provider.key.kid or "")
    return sso.provider.sign({}, key=impostor)


def _alg_none(sso: Sso) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    now = int(time.time())
    claims = {"iss": sso.provider.issuer, "sub": "alice", "aud": CLI_CLIENT, "iat": now}
    return part({"alg": "none"}) + "." + part({**claims, "exp": now + 300}) + "."


REFUSALS = {
    "forged": (_forged, "sso_bad_signature"),
    "unknown key id": (lambda s: s.provider.sign({}, key=new_key("other")), "sso_bad_signature"),
    "alg none": (_alg_none, "sso_bad_signature"),
    "expired": (
        lambda s: s.provider.sign({"iat": int(time.time()) - 900, "exp": int(time.time()) - 600}),
        "sso_expired",
    ),
    "another audience": (lambda s: s.provider.sign({"aud": "someone-else"}), "sso_bad_aud"),
    "another issuer": (
        lambda s: s.provider.sign({"iss": "http://127.0.0.1:9/other"}),
        "sso_bad_iss",
    ),
    "no subject": (lambda s: s.provider.sign({"sub": None}), "sso_missing_claim"),
    "not a jwt": (lambda s: "not-a-jwt", "sso_malformed"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_tokens_not_issued_by_the_provider_to_elysium_are_refused_and_audited(
    client: Api, sso: Sso, db: psycopg.Connection[Any], case: str
) -> None:
    make, code = REFUSALS[case]
    r = client.post("/v1/sso/token", json={"id_token": make(sso)})
    assert r.status_code == 401, r.text
    assert r.json()["error"]["code"] == code
    assert tokens_made(db) == 0
    record = last_audit(db)
    assert (record["actor"], record["action"], record["outcome"]) == (
        "sso:unverified",
        "sso.token",
        "refused",
    )
    assert record["detail"]["code"] == code


def test_an_id_token_works_once(client: Api, sso: Sso, db: psycopg.Connection[Any]) -> None:
    token = sso.provider.sign({})
    assert client.post("/v1/sso/token", json={"id_token": token}).status_code == 201
    again = client.post("/v1/sso/token", json={"id_token": token})
    assert again.status_code == 401
    assert again.json()["error"]["code"] == "sso_replayed"
    assert tokens_made(db) == 1
    record = last_audit(db)
    assert (record["actor"], record["outcome"]) == ("sso:alice@example.com", "refused")


@pytest.mark.parametrize("user", ["erin", "mallory"])
def test_a_user_no_mapping_names_is_refused_and_told_why(
    client: Api, sso: Sso, db: psycopg.Connection[Any], user: str
) -> None:
    r = client.post("/v1/sso/token", json={"id_token": sso.provider.sign(claims_of(user))})
    assert r.status_code == 403, r.text
    error = r.json()["error"]
    assert error["code"] == "sso_unmapped"
    assert USERS[user]["email"] in error["message"] and "ELYSIUM_OIDC_" in error["message"]
    assert tokens_made(db) == 0
    record = last_audit(db)
    assert (record["actor"], record["outcome"]) == (f"sso:{USERS[user]['email']}", "refused")


def test_a_dashboard_id_token_is_accepted_too(client: Api, sso: Sso) -> None:
    r = client.post(
        "/v1/sso/token", json={"id_token": sso.provider.sign({"aud": DASHBOARD_CLIENT})}
    )
    assert r.status_code == 201, r.text


def test_a_missing_id_token_is_a_400_naming_the_field(client: Api) -> None:
    r = client.post("/v1/sso/token", json={})
    assert r.status_code == 400
    assert "id_token" in r.json()["error"]["fields"]


@pytest.mark.parametrize(("user", "tags"), [("bob", ["dev", "laptop"]), ("carol", ["staff"])])
def test_a_signed_in_user_gets_a_one_use_enrollment_token_where_the_rules_say(
    client: Api,
    sso: Sso,
    db: psycopg.Connection[Any],
    interface_id: int,
    user: str,
    tags: list[str],
) -> None:
    r = client.post(
        "/v1/sso/enrollment-token", json={"id_token": sso.provider.sign(claims_of(user))}
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["interface_id"], body["tags"]) == (interface_id, tags)
    row = db.execute(
        "SELECT uses_left, created_by, name FROM enrollment_tokens WHERE id = %s", (body["id"],)
    ).fetchone()
    email = USERS[user]["email"]
    assert row == {"uses_left": 1, "created_by": f"sso:{email}", "name": f"sso:{email}"}
    record = last_audit(db)
    assert (record["actor"], record["action"], record["outcome"]) == (
        f"sso:{email}",
        "sso.enrollment_token",
        "succeeded",
    )
    peer = client.post(
        "/v1/enroll",
        json={"token": body["token"], "name": f"{user}-laptop", "public_key": new_wg_key()},
    )
    assert peer.status_code == 202, peer.text
    got = db.execute(
        "SELECT interface_id, tags FROM peers WHERE id = %s", (peer.json()["peer_id"],)
    ).fetchone()
    assert got == {"interface_id": interface_id, "tags": tags}


def test_a_user_no_enrollment_rule_names_is_refused(
    client: Api, sso: Sso, db: psycopg.Connection[Any], interface_id: int
) -> None:
    r = client.post(
        "/v1/sso/enrollment-token", json={"id_token": sso.provider.sign(claims_of("erin"))}
    )
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "sso_no_enrollment"
    assert "ELYSIUM_OIDC_ENROLL" in r.json()["error"]["message"]
    assert db.execute("SELECT count(*) AS n FROM enrollment_tokens").fetchone()["n"] == 0
    assert last_audit(db)["outcome"] == "refused"


def test_a_rule_naming_a_missing_interface_is_refused(client: Api, sso: Sso) -> None:
    r = client.post(
        "/v1/sso/enrollment-token", json={"id_token": sso.provider.sign(claims_of("bob"))}
    )
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "sso_interface_missing"


def test_a_forged_id_token_gets_no_enrollment_token(
    client: Api, sso: Sso, db: psycopg.Connection[Any], interface_id: int
) -> None:
    r = client.post("/v1/sso/enrollment-token", json={"id_token": _forged(sso)})
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "sso_bad_signature"
    assert db.execute("SELECT count(*) AS n FROM enrollment_tokens").fetchone()["n"] == 0


def test_a_dashboard_id_token_must_carry_its_sign_ins_nonce(sso: Sso) -> None:
    """The check the dashboard's callback makes, against the real provider's JWKS."""
    provider = Provider(sso.provider.issuer)
    audiences = (DASHBOARD_CLIENT,)
    good = sso.provider.sign({"aud": DASHBOARD_CLIENT, "nonce": "n-1"})
    assert provider.verify_id_token(good, audiences, nonce="n-1")["sub"] == "alice"
    for token, code in (
        (good, "sso_bad_nonce"),  # another sign-in's nonce
        (sso.provider.sign({"aud": DASHBOARD_CLIENT}), "sso_missing_claim"),
    ):
        with pytest.raises(SsoRefused) as refused:
            provider.verify_id_token(token, audiences, nonce="n-2")
        assert refused.value.code == code


def test_several_audiences_need_an_authorized_party_of_ours(sso: Sso) -> None:
    provider = Provider(sso.provider.issuer)
    token = sso.provider.sign({"aud": [CLI_CLIENT, "other"], "azp": "other"})
    with pytest.raises(SsoRefused) as refused:
        provider.verify_id_token(token, (CLI_CLIENT,))
    assert refused.value.code == "sso_bad_azp"
    ours = sso.provider.sign({"aud": [CLI_CLIENT, "other"], "azp": CLI_CLIENT})
    assert provider.verify_id_token(ours, (CLI_CLIENT,))["azp"] == CLI_CLIENT

"""API tokens: admins create and revoke them; a token works until it expires or is revoked."""

from __future__ import annotations

from typing import Any

import psycopg

from tests.api.conftest import Api, make_token


def test_admin_creates_a_token_shown_once_and_it_works(
    admin: Api, db: psycopg.Connection[Any]
) -> None:
    r = admin.post("/v1/tokens", json={"name": "ci", "scope": "reader", "ttl_seconds": 3600})
    assert r.status_code == 201
    body = r.json()
    assert body["token"].startswith("ely_") and body["expires_at"].endswith("+00:00")
    stored = db.execute("SELECT token_hash FROM api_tokens WHERE id = %s", (body["id"],)).fetchone()
    assert stored is not None and body["token"].encode() not in bytes(stored["token_hash"])
    reader = Api(admin.base, admin.ca, body["token"])
    assert reader.get("/v1/hubs").status_code == 200


def test_creating_a_token_is_audited_without_the_token(
    admin: Api, db: psycopg.Connection[Any]
) -> None:
    body = admin.post("/v1/tokens", json={"name": "ci", "scope": "operator"}).json()
    row = db.execute(
        "SELECT actor, action, target, detail::text AS d FROM audit WHERE action = 'token.create'"
    ).fetchone()
    assert row is not None and row["target"] == f"api_token:{body['id']}"
    assert row["actor"].startswith("token:") and body["token"] not in row["d"]


def test_only_admins_create_tokens(operator: Api, reader: Api) -> None:
    for who in (operator, reader):
        r = who.post("/v1/tokens", json={"name": "x", "scope": "reader"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "insufficient_scope"


def test_a_revoked_token_is_refused_with_its_reason(admin: Api) -> None:
    body = admin.post("/v1/tokens", json={"name": "old", "scope": "reader"}).json()
    r = admin.delete(f"/v1/tokens/{body['id']}")
    assert r.status_code == 200 and r.json()["revoked_at"] is not None
    gone = Api(admin.base, admin.ca, body["token"]).get("/v1/hubs")
    assert gone.status_code == 401 and gone.json()["error"]["code"] == "token_revoked"


def test_an_expired_token_is_refused(api_url: str, admin: Api, db: psycopg.Connection[Any]) -> None:
    text = make_token(db, "admin", ttl=1)
    db.execute("UPDATE api_tokens SET expires_at = now() - interval '1 second'")
    r = Api(api_url, admin.ca, text).get("/v1/hubs")
    assert r.status_code == 401 and r.json()["error"]["code"] == "token_expired"


def test_missing_and_unknown_tokens_are_401_with_a_code(anonymous: Api) -> None:
    r = anonymous.get("/v1/hubs")
    assert r.status_code == 401 and r.json()["error"]["code"] == "token_missing"
    assert "Bearer" in r.headers["WWW-Authenticate"]
    r = anonymous.get("/v1/hubs", headers={"Authorization": "Bearer ely_nope"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "token_invalid"


def test_revoking_an_unknown_token_is_404(admin: Api) -> None:
    r = admin.delete("/v1/tokens/999999")
    assert r.status_code == 404 and r.json()["error"]["code"] == "token_not_found"


def test_a_bad_scope_is_400_naming_the_field_and_nothing_is_written(
    admin: Api, db: psycopg.Connection[Any]
) -> None:
    r = admin.post("/v1/tokens", json={"name": "x", "scope": "root"})
    assert r.status_code == 400 and "scope" in r.json()["error"]["fields"]
    assert db.execute("SELECT count(*) AS n FROM api_tokens").fetchone() == {"n": 1}  # admin's own

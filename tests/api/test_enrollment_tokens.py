"""Enrollment tokens of an interface: operators list them (never their text) and revoke them."""

from __future__ import annotations

from typing import Any

import psycopg

from tests.api.conftest import Api, new_key


def make(operator: Api, interface_id: int, **body: Any) -> dict[str, Any]:
    r = operator.post(
        f"/v1/interfaces/{interface_id}/enrollment-tokens", json={"ttl_seconds": 600, **body}
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_an_operator_lists_an_interfaces_tokens_without_their_text(
    operator: Api, interface_id: int
) -> None:
    made = make(operator, interface_id, name="laptops", uses=3, tags=["laptop"])
    r = operator.get(f"/v1/interfaces/{interface_id}/enrollment-tokens")
    assert r.status_code == 200, r.text
    [item] = r.json()["items"]
    assert item["id"] == made["id"] and item["name"] == "laptops"
    assert (item["uses_left"], item["uses_total"], item["tags"]) == (3, 3, ["laptop"])
    assert item["state"] == "active" and item["revoked_at"] is None
    assert made["token"] not in r.text and "token" not in item


def test_tokens_page_with_a_cursor(operator: Api, interface_id: int) -> None:
    ids = [make(operator, interface_id)["id"] for _ in range(3)]
    first = operator.get(f"/v1/interfaces/{interface_id}/enrollment-tokens?limit=2").json()
    assert [t["id"] for t in first["items"]] == ids[:2]
    rest = operator.get(
        f"/v1/interfaces/{interface_id}/enrollment-tokens?limit=2&cursor={first['next_cursor']}"
    ).json()
    assert [t["id"] for t in rest["items"]] == ids[2:] and rest["next_cursor"] is None


def test_a_revoked_token_enrolls_nobody_and_the_revoke_is_audited(
    operator: Api, anonymous: Api, interface_id: int, db: psycopg.Connection[Any]
) -> None:
    made = make(operator, interface_id)
    r = operator.delete(f"/v1/enrollment-tokens/{made['id']}")
    assert r.status_code == 200 and r.json()["state"] == "revoked"
    listed = operator.get(f"/v1/interfaces/{interface_id}/enrollment-tokens").json()
    assert listed["items"][0]["state"] == "revoked"
    r = anonymous.post(
        "/v1/enroll", json={"token": made["token"], "name": "late", "public_key": new_key()}
    )
    assert r.status_code == 410 and r.json()["error"]["code"] == "token_revoked"
    row = db.execute("SELECT actor, target FROM audit WHERE action = 'enrollment_token.revoke'")
    audit = row.fetchone()
    assert audit is not None and audit["target"] == f"enrollment_token:{made['id']}"
    assert audit["actor"].startswith("token:")


def test_readers_neither_list_nor_revoke_tokens(
    operator: Api, reader: Api, interface_id: int
) -> None:
    made = make(operator, interface_id)
    for r in (
        reader.get(f"/v1/interfaces/{interface_id}/enrollment-tokens"),
        reader.delete(f"/v1/enrollment-tokens/{made['id']}"),
    ):
        assert r.status_code == 403 and r.json()["error"]["code"] == "insufficient_scope"


def test_unknown_interface_and_token_are_404(operator: Api) -> None:
    r = operator.get("/v1/interfaces/999999/enrollment-tokens")
    assert r.status_code == 404 and r.json()["error"]["code"] == "interface_not_found"
    r = operator.delete("/v1/enrollment-tokens/999999")
    assert r.status_code == 404 and r.json()["error"]["code"] == "token_not_found"


def test_both_calls_are_in_the_openapi_document(anonymous: Api) -> None:
    paths = anonymous.get("/openapi.json").json()["paths"]
    assert "get" in paths["/v1/interfaces/{interface_id}/enrollment-tokens"]
    assert "delete" in paths["/v1/enrollment-tokens/{token_id}"]

"""The audit trail: every mutation leaves a record; readers page through it."""

from __future__ import annotations

from tests.api.conftest import Api


def test_mutations_are_audited_and_readable_in_pages(
    admin: Api, reader: Api, interface_id: int
) -> None:
    admin.post("/v1/tokens", json={"name": "x", "scope": "reader"})
    first = reader.get("/v1/audit", params={"limit": 2}).json()
    assert [a["action"] for a in first["items"]] == ["create_hub", "create_interface"]
    rest = reader.get("/v1/audit", params={"cursor": first["next_cursor"]}).json()
    assert [a["action"] for a in rest["items"]] == ["token.create"]
    assert all(a["actor"].startswith("token:") for a in first["items"] + rest["items"])


def test_audit_since_a_time_in_the_future_is_empty(reader: Api, interface_id: int) -> None:
    r = reader.get("/v1/audit", params={"since": "2999-01-01T00:00:00Z"})
    assert r.status_code == 200 and r.json() == {"items": [], "next_cursor": None}


def test_audit_since_must_carry_a_time_zone(reader: Api) -> None:
    r = reader.get("/v1/audit", params={"since": "2024-01-01T00:00:00"})
    assert r.status_code == 400 and "since" in r.json()["error"]["fields"]

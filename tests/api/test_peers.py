"""Peers: operators add, change and remove them (jobs); readers list them a page at a time."""

from __future__ import annotations

from typing import Any

import psycopg

from tests.api.conftest import Api, new_key


def add(api: Api, interface_id: int, name: str = "laptop", **extra: Any) -> Any:
    return api.post(
        f"/v1/interfaces/{interface_id}/peers",
        json={"name": name, "public_key": new_key(), **extra},
    )


def test_operator_adds_a_peer_with_a_known_key(
    operator: Api, reader: Api, interface_id: int
) -> None:
    r = add(operator, interface_id, subnets=["192.168.7.0/24"])
    assert r.status_code == 202
    peer = reader.get(f"/v1/peers/{r.json()['peer_id']}").json()
    assert peer["address"] == "10.30.0.2" and peer["status"] == "pending"
    assert peer["subnets"] == ["192.168.7.0/24"] and peer["online"] is False


def test_a_key_in_use_is_409_and_a_bad_key_is_400(
    operator: Api, interface_id: int, db: psycopg.Connection[Any]
) -> None:
    key = new_key()
    assert (
        operator.post(
            f"/v1/interfaces/{interface_id}/peers", json={"name": "a", "public_key": key}
        ).status_code
        == 202
    )
    r = operator.post(f"/v1/interfaces/{interface_id}/peers", json={"name": "b", "public_key": key})
    assert r.status_code == 409 and r.json()["error"]["code"] == "public_key_in_use"
    r = operator.post(
        f"/v1/interfaces/{interface_id}/peers", json={"name": "c", "public_key": "not-a-key"}
    )
    assert r.status_code == 400 and "public_key" in r.json()["error"]["fields"]
    assert db.execute("SELECT count(*) AS n FROM peers").fetchone() == {"n": 1}


def test_readers_cannot_add_peers(reader: Api, interface_id: int) -> None:
    assert add(reader, interface_id).status_code == 403


def test_peers_are_listed_by_cursor_pages(operator: Api, reader: Api, interface_id: int) -> None:
    ids = [add(operator, interface_id, name=f"p{i}").json()["peer_id"] for i in range(5)]
    first = reader.get("/v1/peers", params={"limit": 2}).json()
    assert [p["id"] for p in first["items"]] == ids[:2] and first["next_cursor"]
    second = reader.get("/v1/peers", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    third = reader.get("/v1/peers", params={"limit": 2, "cursor": second["next_cursor"]}).json()
    assert [p["id"] for p in second["items"] + third["items"]] == ids[2:]
    assert third["next_cursor"] is None


def test_peers_filter_by_interface_and_online(
    operator: Api, reader: Api, interface_id: int
) -> None:
    add(operator, interface_id)
    assert reader.get("/v1/peers", params={"interface_id": interface_id}).json()["items"]
    assert reader.get("/v1/peers", params={"interface_id": 999}).json()["items"] == []
    assert reader.get("/v1/peers", params={"online": "true"}).json()["items"] == []


def test_changing_a_peer_is_a_job(operator: Api, reader: Api, interface_id: int) -> None:
    peer_id = add(operator, interface_id).json()["peer_id"]
    r = operator.patch(f"/v1/peers/{peer_id}", json={"enabled": False})
    assert r.status_code == 202 and r.json()["peer_id"] == peer_id
    assert reader.get(f"/v1/peers/{peer_id}").json()["enabled"] is False


def test_an_empty_or_unknown_change_is_400(operator: Api, interface_id: int) -> None:
    peer_id = add(operator, interface_id).json()["peer_id"]
    assert operator.patch(f"/v1/peers/{peer_id}", json={}).status_code == 400
    r = operator.patch(f"/v1/peers/{peer_id}", json={"public_key": new_key()})
    assert r.status_code == 400 and r.json()["error"]["fields"] == {"public_key": "Unknown field."}


def test_removing_a_peer_is_a_job_and_twice_is_409(operator: Api, interface_id: int) -> None:
    peer_id = add(operator, interface_id).json()["peer_id"]
    assert operator.delete(f"/v1/peers/{peer_id}").status_code == 202
    again = operator.delete(f"/v1/peers/{peer_id}")
    assert again.status_code == 409 and again.json()["error"]["code"] == "peer_gone"


def test_an_unknown_peer_is_404(reader: Api, operator: Api) -> None:
    assert reader.get("/v1/peers/424242").status_code == 404
    assert operator.delete("/v1/peers/424242").json()["error"]["code"] == "peer_not_found"


def test_an_expiry_in_the_past_is_400(operator: Api, interface_id: int) -> None:
    r = add(operator, interface_id, expires_at="2000-01-01T00:00:00Z")
    assert r.status_code == 400 and "expires_at" in r.json()["error"]["fields"]


def test_peers_carry_tags_changed_by_patch(operator: Api, reader: Api, interface_id: int) -> None:
    peer_id = add(operator, interface_id, tags=["laptop"]).json()["peer_id"]
    assert reader.get(f"/v1/peers/{peer_id}").json()["tags"] == ["laptop"]
    r = operator.patch(f"/v1/peers/{peer_id}", json={"tags": ["ops", "laptop"]})
    assert r.status_code == 202
    assert reader.get(f"/v1/peers/{peer_id}").json()["tags"] == ["laptop", "ops"]
    r = operator.patch(f"/v1/peers/{peer_id}", json={"tags": ["no spaces"]})
    assert r.status_code == 400 and "tags.0" in r.json()["error"]["fields"]


def test_an_enrolled_peer_gets_its_tokens_tags(
    anonymous: Api, reader: Api, interface_id: int, db: psycopg.Connection[Any]
) -> None:
    from db.enrollment_tokens import create_enrollment_token

    _, token = create_enrollment_token(db, interface_id, None, 600, 1, [], "test", ["ops"])
    r = anonymous.post(
        "/v1/enroll", json={"token": token, "name": "phone", "public_key": new_key()}
    )
    assert r.status_code == 202, r.text
    assert reader.get(f"/v1/peers/{r.json()['peer_id']}").json()["tags"] == ["ops"]

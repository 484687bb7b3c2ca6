"""Hubs: admins declare them; readers list them with their worker's heartbeat."""

from __future__ import annotations

from typing import Any

import psycopg

from tests.api.conftest import Api


def test_admin_declares_a_hub_and_readers_see_it(
    admin: Api, reader: Api, db: psycopg.Connection[Any]
) -> None:
    r = admin.post("/v1/hubs", json={"name": "hub-a", "endpoint": "hub-a.example:51820"})
    assert r.status_code == 201 and r.json()["name"] == "hub-a"
    listed = reader.get("/v1/hubs").json()["items"]
    assert [h["name"] for h in listed] == ["hub-a"] and listed[0]["last_heartbeat_at"] is None
    one = reader.get("/v1/hubs/hub-a").json()
    assert one["endpoint"] == "hub-a.example:51820" and one["stale"] is True
    audit = db.execute("SELECT action, target FROM audit").fetchall()
    assert {"action": "create_hub", "target": "hub:hub-a"} in audit


def test_a_hub_name_twice_is_409(admin: Api) -> None:
    admin.post("/v1/hubs", json={"name": "hub-a", "endpoint": "192.0.2.1"})
    r = admin.post("/v1/hubs", json={"name": "hub-a", "endpoint": "192.0.2.2"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "hub_exists"


def test_an_unknown_hub_is_404(reader: Api) -> None:
    r = reader.get("/v1/hubs/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "hub_not_found"


def test_operators_cannot_declare_hubs(operator: Api) -> None:
    r = operator.post("/v1/hubs", json={"name": "hub-b", "endpoint": "192.0.2.1"})
    assert r.status_code == 403


def test_a_bad_hub_name_is_400_naming_the_field(admin: Api, db: psycopg.Connection[Any]) -> None:
    r = admin.post("/v1/hubs", json={"name": "Hub A!", "endpoint": "192.0.2.1"})
    assert r.status_code == 400 and set(r.json()["error"]["fields"]) == {"name"}
    assert db.execute("SELECT count(*) AS n FROM hubs").fetchone() == {"n": 0}


def test_a_hub_lists_its_interfaces(admin: Api, reader: Api) -> None:
    admin.post("/v1/hubs", json={"name": "hub-a", "endpoint": "hub-a.example"})
    assert reader.get("/v1/hubs/hub-a").json()["interfaces"] == []
    made = admin.post(
        "/v1/hubs/hub-a/interfaces",
        json={"name": "wg0", "network": "10.40.0.0/24", "listen_port": 51820},
    )
    assert made.status_code == 202
    interfaces = reader.get("/v1/hubs/hub-a").json()["interfaces"]
    assert [(i["id"], i["name"], i["network"], i["status"]) for i in interfaces] == [
        (made.json()["interface_id"], "wg0", "10.40.0.0/24", "pending")
    ]

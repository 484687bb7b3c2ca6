"""Caller mistakes get a 4xx JSON error naming the field; never a 500, never a partial write."""

from __future__ import annotations

from typing import Any

import psycopg

from tests.api.conftest import Api


def test_wrong_types_are_400_naming_each_field(admin: Api, db: psycopg.Connection[Any]) -> None:
    r = admin.post(
        "/v1/hubs/hub-a/interfaces", json={"name": 7, "network": ["x"], "listen_port": "many"}
    )
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "invalid" and set(err["fields"]) == {"name", "network", "listen_port"}
    assert db.execute("SELECT count(*) AS n FROM jobs").fetchone() == {"n": 0}


def test_unknown_fields_are_rejected(admin: Api) -> None:
    r = admin.post("/v1/hubs", json={"name": "hub-a", "endpoint": "h", "colour": "red"})
    assert r.status_code == 400 and r.json()["error"]["fields"] == {"colour": "Unknown field."}


def test_a_body_that_is_not_json_is_400(admin: Api) -> None:
    r = admin.post("/v1/hubs", data="{nope", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid"


def test_an_oversized_body_is_413_json(admin: Api, db: psycopg.Connection[Any]) -> None:
    r = admin.post("/v1/hubs", json={"name": "hub-a", "endpoint": "x" * 200_000})
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
    assert db.execute("SELECT count(*) AS n FROM hubs").fetchone() == {"n": 0}


def test_unknown_paths_and_methods_are_json(admin: Api) -> None:
    r = admin.get("/v1/nothing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = admin.put("/v1/hubs")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


def test_ids_out_of_range_are_404_not_a_database_error(reader: Api) -> None:
    assert reader.get("/v1/peers/99999999999999999999999").status_code == 404
    assert reader.get("/v1/peers/-1").status_code == 404


def test_a_nul_character_is_400(admin: Api) -> None:
    r = admin.post("/v1/hubs", json={"name": "hub-a", "endpoint": "a\u0000b"})
    assert r.status_code == 400 and "endpoint" in r.json()["error"]["fields"]


def test_a_too_long_idempotency_key_is_400(admin: Api) -> None:
    r = admin.post(
        "/v1/hubs/hub-a/interfaces",
        headers={"Idempotency-Key": "k" * 500},
        json={"name": "wg0", "network": "10.30.0.0/24", "listen_port": 51820},
    )
    assert r.status_code == 400 and "Idempotency-Key" in r.json()["error"]["fields"]

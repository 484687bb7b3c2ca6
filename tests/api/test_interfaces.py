"""Interfaces: admins create and delete them (jobs); operators make enrollment tokens."""

from __future__ import annotations

from typing import Any

import psycopg

from tests.api.conftest import Api


def test_creating_an_interface_answers_202_with_its_job(
    admin: Api, interface_id: int, db: psycopg.Connection[Any]
) -> None:
    job = db.execute(
        "SELECT kind, status, queue FROM jobs WHERE interface_id = %s", (interface_id,)
    ).fetchone()
    assert job == {"kind": "create_interface", "status": "queued", "queue": "hub.hub-a"}
    got = admin.get(f"/v1/interfaces/{interface_id}").json()
    assert got["name"] == "wg0" and got["network"] == "10.30.0.0/24" and got["status"] == "pending"


def test_the_same_idempotency_key_gives_the_same_job(
    admin: Api, interface_id: int, db: psycopg.Connection[Any]
) -> None:
    body = {"name": "wg1", "network": "10.31.0.0/24", "listen_port": 51821}
    first = admin.post("/v1/hubs/hub-a/interfaces", json=body, headers={"Idempotency-Key": "k1"})
    again = admin.post("/v1/hubs/hub-a/interfaces", json=body, headers={"Idempotency-Key": "k1"})
    assert first.status_code == again.status_code == 202
    assert first.json()["job_id"] == again.json()["job_id"]
    assert db.execute("SELECT count(*) AS n FROM interfaces").fetchone() == {"n": 2}


def test_the_same_idempotency_key_with_another_request_is_422_and_writes_nothing(
    admin: Api, interface_id: int, db: psycopg.Connection[Any]
) -> None:
    body = {"name": "wg1", "network": "10.31.0.0/24", "listen_port": 51821}
    first = admin.post("/v1/hubs/hub-a/interfaces", json=body, headers={"Idempotency-Key": "k2"})
    assert first.status_code == 202
    other = {**body, "network": "10.33.0.0/24"}
    r = admin.post("/v1/hubs/hub-a/interfaces", json=other, headers={"Idempotency-Key": "k2"})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "idempotency_key_reused"
    assert "Idempotency-Key" in r.json()["error"]["fields"]
    assert db.execute("SELECT count(*) AS n FROM interfaces").fetchone() == {"n": 2}
    assert db.execute("SELECT count(*) AS n FROM jobs").fetchone() == {"n": 2}


def test_an_overlapping_network_or_used_port_is_refused(admin: Api, interface_id: int) -> None:
    r = admin.post(
        "/v1/hubs/hub-a/interfaces",
        json={"name": "wg1", "network": "10.30.0.0/16", "listen_port": 51821},
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "network_overlap"
    r = admin.post(
        "/v1/hubs/hub-a/interfaces",
        json={"name": "wg1", "network": "10.32.0.0/24", "listen_port": 51820},
    )
    assert r.status_code == 409 and r.json()["error"]["fields"] == {
        "listen_port": "already used on this hub"
    }


def test_a_bad_cidr_is_400_naming_the_field_and_nothing_is_written(
    admin: Api, interface_id: int, db: psycopg.Connection[Any]
) -> None:
    r = admin.post(
        "/v1/hubs/hub-a/interfaces",
        json={"name": "wg1", "network": "10.40.0.1/24", "listen_port": 51821},
    )
    assert r.status_code == 400 and "network" in r.json()["error"]["fields"]
    assert db.execute("SELECT count(*) AS n FROM interfaces").fetchone() == {"n": 1}


def test_an_interface_on_an_unknown_hub_is_404(admin: Api) -> None:
    r = admin.post(
        "/v1/hubs/nope/interfaces",
        json={"name": "wg0", "network": "10.30.0.0/24", "listen_port": 51820},
    )
    assert r.status_code == 404 and r.json()["error"]["code"] == "hub_not_found"


def test_deleting_an_interface_is_a_job_and_twice_is_409(admin: Api, interface_id: int) -> None:
    r = admin.delete(f"/v1/interfaces/{interface_id}")
    assert r.status_code == 202 and r.json()["interface_id"] == interface_id
    again = admin.delete(f"/v1/interfaces/{interface_id}")
    assert again.status_code == 409 and again.json()["error"]["code"] == "interface_deleting"


def test_readers_read_but_do_not_delete_interfaces(reader: Api, interface_id: int) -> None:
    assert reader.get(f"/v1/interfaces/{interface_id}").status_code == 200
    assert reader.delete(f"/v1/interfaces/{interface_id}").status_code == 403


def test_operator_makes_an_enrollment_token(
    operator: Api, interface_id: int, db: psycopg.Connection[Any]
) -> None:
    r = operator.post(
        f"/v1/interfaces/{interface_id}/enrollment-tokens",
        json={"ttl_seconds": 600, "uses": 3, "subnets": ["192.168.50.0/24"]},
    )
    assert r.status_code == 201
    body = r.json()
    assert body["token"].startswith("elyenr_") and body["uses"] == 3
    assert body["subnets"] == ["192.168.50.0/24"]
    assert db.execute(
        "SELECT count(*) AS n FROM audit WHERE action = 'enrollment_token.create'"
    ).fetchone() == {"n": 1}


def test_enrollment_tokens_need_operator_and_a_real_interface(
    reader: Api, operator: Api, interface_id: int
) -> None:
    assert (
        reader.post(
            f"/v1/interfaces/{interface_id}/enrollment-tokens", json={"ttl_seconds": 60}
        ).status_code
        == 403
    )
    r = operator.post("/v1/interfaces/999999/enrollment-tokens", json={"ttl_seconds": 60})
    assert r.status_code == 404 and r.json()["error"]["code"] == "interface_not_found"


def test_routes_exit_and_nat_are_recorded_as_a_job_and_shown(
    admin: Api, interface_id: int, db: psycopg.Connection[Any]
) -> None:
    r = admin.patch(
        f"/v1/interfaces/{interface_id}",
        json={"routes": ["192.168.50.0/24"], "exit": True, "nat": {"egress": "eth1"}},
    )
    assert r.status_code == 202, r.text
    job = db.execute("SELECT kind, queue FROM jobs WHERE id = %s", (r.json()["job_id"],)).fetchone()
    assert job == {"kind": "update_interface", "queue": "hub.hub-a"}
    got = admin.get(f"/v1/interfaces/{interface_id}").json()
    assert got["routes"] == ["192.168.50.0/24"] and got["exit"] is True
    assert got["nat"] == {"egress": "eth1"}


def test_bad_routes_exit_or_nat_are_400_naming_the_field_and_write_nothing(
    admin: Api, interface_id: int, db: psycopg.Connection[Any]
) -> None:
    cases = [
        ({"routes": ["10.30.0.0/25"]}, "routes.0"),  # inside the interface network
        ({"routes": ["not-a-cidr"]}, "routes.0"),
        ({"routes": ["127.0.0.0/8"]}, "routes.0"),
        ({"exit": True}, "nat"),  # an exit must say what happens to NAT
        ({"nat": {"egress": "a device name far too long"}}, "nat.egress"),
        ({"nat": {"device": "eth0"}}, "nat"),
    ]
    for body, field in cases:
        r = admin.patch(f"/v1/interfaces/{interface_id}", json=body)
        assert r.status_code == 400, (body, r.text)
        assert field in r.json()["error"]["fields"], (body, r.json())
    assert db.execute(
        "SELECT count(*) AS n FROM jobs WHERE kind = 'update_interface'"
    ).fetchone() == {"n": 0}
    got = admin.get(f"/v1/interfaces/{interface_id}").json()
    assert got["routes"] == [] and got["exit"] is False and got["nat"] is None


def test_direct_is_off_by_default_and_switched_by_a_job(
    admin: Api, interface_id: int, db: psycopg.Connection[Any]
) -> None:
    assert admin.get(f"/v1/interfaces/{interface_id}").json()["direct"] is False
    r = admin.patch(f"/v1/interfaces/{interface_id}", json={"direct": True})
    assert r.status_code == 202, r.text
    job = db.execute("SELECT kind, queue FROM jobs WHERE id = %s", (r.json()["job_id"],)).fetchone()
    assert job == {"kind": "update_interface", "queue": "hub.hub-a"}
    assert admin.get(f"/v1/interfaces/{interface_id}").json()["direct"] is True
    r = admin.patch(f"/v1/interfaces/{interface_id}", json={"direct": "maybe"})
    assert r.status_code == 400 and "direct" in r.json()["error"]["fields"], r.text
    assert admin.get(f"/v1/interfaces/{interface_id}").json()["direct"] is True


def test_an_exit_without_masquerade_is_said_with_nat_null(admin: Api, interface_id: int) -> None:
    r = admin.patch(f"/v1/interfaces/{interface_id}", json={"exit": True, "nat": None})
    assert r.status_code == 202, r.text
    r = admin.patch(f"/v1/interfaces/{interface_id}", json={"exit": False})
    assert r.status_code == 202, r.text
    r = admin.patch(f"/v1/interfaces/{interface_id}", json={"exit": True})  # said before
    assert r.status_code == 202, r.text


def test_enrollment_tokens_carry_tags_and_refuse_bad_ones(operator: Api, interface_id: int) -> None:
    url = f"/v1/interfaces/{interface_id}/enrollment-tokens"
    r = operator.post(url, json={"ttl_seconds": 60, "tags": ["ops", "ops", "servers"]})
    assert r.status_code == 201 and r.json()["tags"] == ["ops", "servers"]
    r = operator.post(url, json={"ttl_seconds": 60, "tags": ["Bad-Tag"]})
    assert r.status_code == 400 and "tags.0" in r.json()["error"]["fields"]


def test_rotating_an_interface_key_is_an_audited_job_for_its_hub(
    admin: Api, operator: Api, interface_id: int, db: psycopg.Connection[Any]
) -> None:
    r = admin.post(f"/v1/interfaces/{interface_id}/rotate-key")
    assert r.status_code == 202 and r.json()["interface_id"] == interface_id
    job = db.execute(
        "SELECT kind, queue, payload FROM jobs WHERE id = %s", (r.json()["job_id"],)
    ).fetchone()
    assert job == {"kind": "rotate_interface_key", "queue": "hub.hub-a", "payload": {"name": "wg0"}}
    audit = db.execute(
        "SELECT count(*) AS n FROM audit WHERE target = %s AND outcome = 'accepted'",
        (f"interface:{interface_id}",),
    ).fetchone()
    assert audit is not None and audit["n"] == 2  # its creation, and now its key
    assert operator.post(f"/v1/interfaces/{interface_id}/rotate-key").status_code == 403
    assert admin.post("/v1/interfaces/999999/rotate-key").status_code == 404
    assert "/v1/interfaces/{interface_id}/rotate-key" in admin.get("/openapi.json").json()["paths"]

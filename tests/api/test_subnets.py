"""Routed subnets and interface networks: what no hub routes into a tunnel is a 400 naming
the field, a subnet another live peer of the interface routes is a 409 naming that peer,
wherever a subnet comes in (add, change, enroll, enrollment token)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest

from db.hubs import record_heartbeat
from tests.api.conftest import Api, enrollment_token, new_key

REFUSED = [
    "127.0.0.0/8",
    "127.0.0.1/32",
    "::1/128",
    "224.0.0.0/24",
    "ff02::/16",
    "169.254.0.0/16",
    "fe80::/64",
    "0.0.0.0/0",
    "::/0",
    "0.0.0.0/8",
    "240.0.0.0/4",
    "255.255.255.255/32",
    "192.0.2.0/24",  # holds 192.0.2.1, the endpoint of hub-a
]


def add(api: Api, interface_id: int, subnets: list[str], name: str = "site") -> Any:
    return api.post(
        f"/v1/interfaces/{interface_id}/peers",
        json={"name": name, "public_key": new_key(), "subnets": subnets},
    )


def enroll(api: Api, token: str, subnets: list[str]) -> Any:
    return api.post(
        "/v1/enroll",
        json={"token": token, "name": "site", "public_key": new_key(), "subnets": subnets},
    )


def refused(r: Any, field: str = "subnets.1") -> None:
    assert r.status_code == 400, r.text
    assert list(r.json()["error"]["fields"]) == [field], r.text


@pytest.mark.parametrize("subnet", REFUSED)
def test_what_no_hub_routes_is_400_on_every_way_in(
    subnet: str, operator: Api, anonymous: Api, interface_id: int, db: psycopg.Connection[Any]
) -> None:
    subnets = ["192.168.7.0/24", subnet]
    refused(add(operator, interface_id, subnets))
    peer_id = add(operator, interface_id, ["192.168.8.0/24"]).json()["peer_id"]
    refused(operator.patch(f"/v1/peers/{peer_id}", json={"subnets": subnets}))
    wide = enrollment_token(db, interface_id, subnets=["192.168.0.0/16"])
    # A token granting everything (written by hand: the API refuses such grants), so only the
    # rules themselves can refuse the enrollment.
    db.execute("UPDATE enrollment_tokens SET subnets = '{0.0.0.0/1,128.0.0.0/1,::/1,8000::/1}'")
    refused(enroll(anonymous, wide, subnets))
    r = operator.post(
        f"/v1/interfaces/{interface_id}/enrollment-tokens",
        json={"ttl_seconds": 600, "subnets": subnets},
    )
    refused(r)
    peers = db.execute("SELECT id, subnets::text[] AS subnets FROM peers ORDER BY id").fetchall()
    assert peers == [{"id": peer_id, "subnets": ["192.168.8.0/24"]}]
    assert db.execute("SELECT uses_left FROM enrollment_tokens").fetchall() == [{"uses_left": 1}]


def test_a_subnet_covering_an_underlay_address_the_hub_reported_is_400(
    operator: Api, interface_id: int, db: psycopg.Connection[Any]
) -> None:
    assert add(operator, interface_id, ["198.51.100.0/25"], name="before").status_code == 202
    db.execute("UPDATE peers SET status = 'removed'")  # it left before the hub reported
    record_heartbeat(db, "hub-a", {"addresses": ["198.51.100.7", "2001:db8:5::1"]})
    r = add(operator, interface_id, ["198.51.100.0/25"])
    assert r.status_code == 400
    assert r.json()["error"]["fields"] == {
        "subnets.0": "covers 198.51.100.7, an underlay address of hub hub-a"
    }
    refused(add(operator, interface_id, ["10.1.0.0/16", "2001:db8::/32"]))
    assert add(operator, interface_id, ["198.51.100.128/25"]).status_code == 202
    r = operator.post(
        f"/v1/interfaces/{interface_id}/enrollment-tokens",
        json={"ttl_seconds": 600, "subnets": ["198.51.100.0/24"]},
    )
    refused(r, "subnets.0")


def test_a_subnet_another_live_peer_routes_is_409_naming_it(
    operator: Api, interface_id: int, db: psycopg.Connection[Any]
) -> None:
    first = add(operator, interface_id, ["192.168.7.0/24"], name="first").json()["peer_id"]
    for overlapping in ("192.168.7.0/24", "192.168.0.0/16", "192.168.7.128/25"):
        r = add(operator, interface_id, ["10.200.0.0/24", overlapping], name="second")
        assert r.status_code == 409, r.text
        error = r.json()["error"]
        assert error["code"] == "subnet_taken"
        assert error["fields"] == {
            "subnets.1": f"overlaps 192.168.7.0/24, routed by peer {first} (first)"
        }
    second = add(operator, interface_id, ["192.168.8.0/24"], name="second").json()["peer_id"]
    r = operator.patch(f"/v1/peers/{second}", json={"subnets": ["192.168.6.0/23"]})
    assert r.status_code == 409 and r.json()["error"]["code"] == "subnet_taken"
    # A peer keeps or narrows its own subnets; a disabled peer still holds them.
    assert operator.patch(f"/v1/peers/{first}", json={"subnets": ["192.168.7.0/24"]}).ok
    assert operator.patch(f"/v1/peers/{first}", json={"enabled": False}).status_code == 202
    assert add(operator, interface_id, ["192.168.7.0/24"]).status_code == 409
    # A removed peer's subnets are free again.
    assert operator.delete(f"/v1/peers/{first}").status_code == 202
    db.execute("UPDATE peers SET status = 'removed' WHERE id = %s", (first,))
    assert add(operator, interface_id, ["192.168.7.0/24"], name="third").status_code == 202


def test_the_same_subnet_on_another_interface_is_not_taken(
    admin: Api, operator: Api, interface_id: int
) -> None:
    r = admin.post(
        "/v1/hubs/hub-a/interfaces",
        json={"name": "wg1", "network": "10.31.0.0/24", "listen_port": 51821},
    )
    other = int(r.json()["interface_id"])
    assert add(operator, interface_id, ["192.168.7.0/24"]).status_code == 202
    assert add(operator, other, ["192.168.7.0/24"]).status_code == 202


def test_racing_enrollments_for_one_subnet_give_it_to_one_peer(
    anonymous: Api, operator: Api, interface_id: int, db: psycopg.Connection[Any]
) -> None:
    token = enrollment_token(db, interface_id, uses=20, subnets=["172.16.0.0/12"])

    def claim(i: int) -> int:
        if i % 2:
            return int(add(operator, interface_id, ["172.16.4.0/24"]).status_code)
        return int(enroll(anonymous, token, ["172.16.0.0/16"]).status_code)

    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(claim, range(16)))
    assert sorted(codes) == [202] + [409] * 15
    assert db.execute("SELECT count(*) AS n FROM peers").fetchone() == {"n": 1}


@pytest.mark.parametrize(
    ("field", "body"),
    [
        ("network", {"network": "224.0.0.0/24"}),
        ("network", {"network": "239.1.0.0/16"}),
        ("network", {"network": "127.0.0.0/24"}),
        ("network", {"network": "169.254.0.0/24"}),
        ("network", {"network": "0.0.0.0/24"}),
        ("network6", {"network": "10.40.0.0/24", "network6": "ff05::/64"}),
        ("network6", {"network": "10.40.0.0/24", "network6": "fe80::/64"}),
        ("network6", {"network": "10.40.0.0/24", "network6": "::/64"}),
    ],
)
def test_a_special_interface_network_is_400_naming_the_field(
    field: str, body: dict[str, str], admin: Api, db: psycopg.Connection[Any]
) -> None:
    assert admin.post("/v1/hubs", json={"name": "hub-b", "endpoint": "h.example"}).ok
    r = admin.post("/v1/hubs/hub-b/interfaces", json={"name": "wg0", "listen_port": 1, **body})
    assert r.status_code == 400, r.text
    assert list(r.json()["error"]["fields"]) == [field]
    assert db.execute("SELECT count(*) AS n FROM interfaces").fetchone() == {"n": 0}

"""Direct paths on the API side: a peer reports its candidates over mTLS (validated, nothing
stored on a 400), and on a direct interface its config lists the peers its policy lets it
talk with — their keys, tunnel addresses and candidates — and nothing of the others."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from elysium import pki
from elysium.config_delta import apply_delta
from tests.api.conftest import Api, enrollment_token, new_key
from tests.api.test_enroll import signed_job


def enrolled(
    api_url: str, anonymous: Api, db: psycopg.Connection[Any], iface: int, name: str, path: Path
) -> tuple[Api, int, str]:
    """A peer enrolled with a CSR: its mTLS client, id and public key."""
    key, public = pki.new_private_key(), new_key()
    body = anonymous.post(
        "/v1/enroll",
        json={
            "token": enrollment_token(db, iface),
            "name": name,
            "public_key": public,
            "csr": pki.make_csr(key).decode(),
        },
    ).json()
    row = signed_job(db, body["job_id"])
    (path / f"{name}.pem").write_text(row["payload"]["certificate"])
    pki.write_private_key(path / f"{name}.key", key)
    cert = (str(path / f"{name}.pem"), str(path / f"{name}.key"))
    return Api(api_url, anonymous.ca, cert=cert), body["peer_id"], public


@pytest.fixture
def trio(
    api_url: str,
    anonymous: Api,
    interface_id: int,
    db: psycopg.Connection[Any],
    tmp_path: Path,
    celery_worker: Any,
) -> list[tuple[Api, int, str]]:
    """Three peers (10.30.0.2, .3, .4) of the interface fixture (10.30.0.0/24)."""
    return [
        enrolled(api_url, anonymous, db, interface_id, name, tmp_path)
        for name in ("alpha", "beta", "gamma")
    ]


def test_candidates_are_stored_with_their_time(
    trio: list[tuple[Api, int, str]], db: psycopg.Connection[Any]
) -> None:
    api, peer_id, _ = trio[0]
    r = api.put("/v1/peer/candidates", json={"addresses": ["192.168.1.20"], "listen_port": 40312})
    assert r.status_code == 200, r.text
    assert r.json()["addresses"] == ["192.168.1.20"] and r.json()["listen_port"] == 40312
    row = db.execute(
        "SELECT listen_port, reported_at FROM peer_candidates WHERE peer_id = %s", (peer_id,)
    ).fetchone()
    assert row["listen_port"] == 40312 and row["reported_at"] is not None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"addresses": ["127.0.0.1"], "listen_port": 1}, "addresses.0"),
        ({"addresses": ["192.168.1.2", "224.0.0.1"], "listen_port": 1}, "addresses.1"),
        ({"addresses": ["169.254.1.1"], "listen_port": 1}, "addresses.0"),
        ({"addresses": ["0.0.0.0"], "listen_port": 1}, "addresses.0"),
        ({"addresses": ["fe80::1"], "listen_port": 1}, "addresses.0"),
        ({"addresses": ["10.30.0.77"], "listen_port": 1}, "addresses.0"),  # the tunnel network
        ({"addresses": ["not-an-ip"], "listen_port": 1}, "addresses.0"),
        ({"addresses": [f"192.168.1.{i}" for i in range(9)], "listen_port": 1}, "addresses"),
        ({"addresses": ["192.168.1.2"], "listen_port": 0}, "listen_port"),
        ({"addresses": ["192.168.1.2"], "listen_port": 65536}, "listen_port"),
        ({"addresses": ["192.168.1.2"], "listen_port": "x"}, "listen_port"),
    ],
)
def test_bad_candidates_are_400_naming_the_field_and_store_nothing(
    trio: list[tuple[Api, int, str]], db: psycopg.Connection[Any], body: Any, field: str
) -> None:
    api, _, _ = trio[0]
    r = api.put("/v1/peer/candidates", json=body)
    assert r.status_code == 400, r.text
    assert field in r.json()["error"]["fields"], r.json()
    assert db.execute("SELECT count(*) AS n FROM peer_candidates").fetchone() == {"n": 0}


def test_another_peers_tunnel_address_is_refused(
    trio: list[tuple[Api, int, str]], admin: Api, db: psycopg.Connection[Any]
) -> None:
    """A tunnel address of a peer on another interface (outside this one's network)."""
    other = admin.post(
        "/v1/hubs/hub-a/interfaces",
        json={"name": "wg1", "network": "10.31.0.0/24", "listen_port": 51821},
    ).json()["interface_id"]
    r = admin.post(f"/v1/interfaces/{other}/peers", json={"name": "far", "public_key": new_key()})
    assert r.status_code == 202, r.text
    api, _, _ = trio[0]
    r = api.put("/v1/peer/candidates", json={"addresses": ["10.31.0.2"], "listen_port": 5})
    assert r.status_code == 400 and "addresses.0" in r.json()["error"]["fields"], r.text
    assert db.execute("SELECT count(*) AS n FROM peer_candidates").fetchone() == {"n": 0}


def test_candidates_need_the_peers_certificate(anonymous: Api) -> None:
    r = anonymous.put("/v1/peer/candidates", json={"addresses": [], "listen_port": 5})
    assert r.status_code == 401


def set_policy(admin: Api, iface: int, rules: list[dict[str, Any]]) -> None:
    r = admin.put(f"/v1/interfaces/{iface}/policy", json={"default": "drop", "rules": rules})
    assert r.status_code == 202, r.text


def test_a_direct_config_lists_exactly_the_peers_policy_lets_talk(
    trio: list[tuple[Api, int, str]], admin: Api, interface_id: int, db: psycopg.Connection[Any]
) -> None:
    (a, a_id, a_key), (b, b_id, b_key), (c, _, c_key) = trio
    off = a.get("/v1/peer/config").json()
    assert "direct_peers" not in off  # direct off: the hub relays everything
    set_policy(
        admin, interface_id, [{"from": f"peer:{a_id}", "to": f"peer:{b_id}", "action": "accept"}]
    )
    assert admin.patch(f"/v1/interfaces/{interface_id}", json={"direct": True}).status_code == 202
    b.put("/v1/peer/candidates", json={"addresses": ["192.168.7.3"], "listen_port": 40000})
    db.execute("UPDATE peers SET endpoint = '198.51.100.9:40000' WHERE id = %s", (b_id,))

    conf_a, conf_b, conf_c = (x.get("/v1/peer/config").json() for x in (a, b, c))

    assert conf_a["direct"] is True and conf_a["version"] != off["version"]
    assert conf_a["direct_peers"] == [
        {
            "peer_id": b_id,
            "public_key": b_key,
            "addresses": ["10.30.0.3/32"],
            "endpoints": ["198.51.100.9:40000", "192.168.7.3:40000"],
            "keepalive": 1,
        }
    ]
    # B may answer A (either direction), C talks with no one: it learns no key, nor anyone its.
    assert [p["public_key"] for p in conf_b["direct_peers"]] == [a_key]
    assert conf_c["direct_peers"] == []
    assert c_key not in str(conf_a) + str(conf_b)
    # What each enforces itself: B lets A in by the rule (its source a named set); A and C
    # only have the default.
    assert conf_b["inbound"]["rules"] == [
        {
            "index": 0,
            "from_hub": False,
            "family": 4,
            "src": "src_0",
            "proto": None,
            "ports": [],
            "action": "accept",
        }
    ]
    assert conf_b["inbound"]["sets"] == {"src_0": ["10.30.0.2"]}
    assert conf_a["inbound"] == {"default": "drop", "hub": ["10.30.0.1"], "sets": {}, "rules": []}


def test_a_pair_dropped_both_ways_is_apart_and_follow_wakes_on_candidates(
    trio: list[tuple[Api, int, str]], admin: Api, interface_id: int
) -> None:
    (a, a_id, _), (b, b_id, _), (gamma, _, _) = trio
    one_way = [
        {"from": f"peer:{a_id}", "to": f"peer:{b_id}", "action": "drop"},
        {"from": "any", "to": "any", "action": "accept"},
    ]
    set_policy(admin, interface_id, one_way)
    admin.patch(f"/v1/interfaces/{interface_id}", json={"direct": True})
    # B→A still falls to accept-any: a pair that may talk one way keeps each other's key.
    assert b_id in [p["peer_id"] for p in a.get("/v1/peer/config").json()["direct_peers"]]
    both_ways = [one_way[0], {"from": f"peer:{b_id}", "to": f"peer:{a_id}", "action": "drop"}]
    set_policy(admin, interface_id, [*both_ways, one_way[1]])
    conf_a = a.get("/v1/peer/config").json()
    assert [p["peer_id"] for p in conf_a["direct_peers"]] == [3]  # gamma only
    assert a_id not in [p["peer_id"] for p in b.get("/v1/peer/config").json()["direct_peers"]]

    got: dict[str, Any] = {}

    def follow() -> None:
        params = {"version": conf_a["version"], "wait": 20}
        got.update(a.get("/v1/peer/config", params=params).json())

    waiter = threading.Thread(target=follow)
    waiter.start()
    time.sleep(0.5)
    gamma.put("/v1/peer/candidates", json={"addresses": ["192.168.9.4"], "listen_port": 41000})
    waiter.join(25)
    assert got["version"] != conf_a["version"]
    assert got["direct_peers"][0]["endpoints"] == ["192.168.9.4:41000"]


def test_paths_are_reported_shown_with_the_peer_and_counted(
    trio: list[tuple[Api, int, str]], reader: Api, api_url: str, db: psycopg.Connection[Any]
) -> None:
    (a, a_id, _), (_, b_id, _), (_, c_id, _) = trio
    body = {
        "paths": [
            {"peer_id": b_id, "path": "direct", "endpoint": "198.51.100.9:40000"},
            {"peer_id": c_id, "path": "relayed", "why": "no candidate answered"},
        ]
    }
    r = a.put("/v1/peer/paths", json=body)
    assert r.status_code == 200, r.text
    shown = reader.get(f"/v1/peers/{a_id}").json()["paths"]
    assert [(p["peer_id"], p["path"], p["why"]) for p in shown] == [
        (b_id, "direct", None),
        (c_id, "relayed", "no candidate answered"),
    ]
    assert shown[0]["endpoint"] == "198.51.100.9:40000" and shown[0]["reported_at"]
    metrics = reader.get("/metrics").text
    assert 'elysium_peer_paths{path="direct"} 1.0' in metrics
    assert 'elysium_peer_paths{path="relayed"} 1.0' in metrics
    # A new report replaces the old one.
    assert a.put("/v1/peer/paths", json={"paths": []}).status_code == 200
    assert reader.get(f"/v1/peers/{a_id}").json()["paths"] == []


@pytest.mark.parametrize(
    ("paths", "field"),
    [
        ([{"peer_id": 999, "path": "direct"}], "paths.0.peer_id"),
        ([{"peer_id": "x", "path": "direct"}], "paths.0.peer_id"),
        ([{"peer_id": 1, "path": "direct"}], "paths.0.peer_id"),  # itself
        ([{"peer_id": 2, "path": "sideways"}], "paths.0.path"),
        ([{"peer_id": 2, "path": "direct", "endpoint": "x" * 65}], "paths.0.endpoint"),
        ([{"peer_id": 2, "path": "direct", "colour": "red"}], "paths.0"),
        ([{"peer_id": 2, "path": "direct"}, {"peer_id": 2, "path": "direct"}], "paths.1.peer_id"),
        ("direct", "paths"),
    ],
)
def test_bad_paths_are_400_naming_the_field_and_store_nothing(
    trio: list[tuple[Api, int, str]], db: psycopg.Connection[Any], paths: Any, field: str
) -> None:
    a, a_id, _ = trio[0]
    assert a_id == 1
    r = a.put("/v1/peer/paths", json={"paths": paths})
    assert r.status_code == 400, r.text
    assert field in r.json()["error"]["fields"], r.json()
    assert db.execute("SELECT count(*) AS n FROM peer_paths").fetchone() == {"n": 0}


def test_a_follower_gets_only_what_moved_and_rebuilds_the_whole_config(
    trio: list[tuple[Api, int, str]], admin: Api, interface_id: int
) -> None:
    (a, _, _), _, (gamma, gamma_id, _) = trio
    set_policy(admin, interface_id, [{"from": "any", "to": "any", "action": "accept"}])
    admin.patch(f"/v1/interfaces/{interface_id}", json={"direct": True})
    held = a.get("/v1/peer/config").json()
    got: dict[str, Any] = {}

    def follow() -> None:
        params = {"version": held["version"], "wait": 20, "delta": "true"}
        r = a.get("/v1/peer/config", params=params)
        got.update(r.json(), size=len(r.content))

    waiter = threading.Thread(target=follow)
    waiter.start()
    time.sleep(0.5)
    gamma.put("/v1/peer/candidates", json={"addresses": ["192.168.9.4"], "listen_port": 41000})
    waiter.join(25)
    size = got.pop("size")
    assert got["base"] == held["version"] and got["set"] == {} and got["unset"] == []
    assert [p["peer_id"] for p in got["direct_peers"]["upsert"]] == [gamma_id]
    assert got["direct_peers"]["remove"] == [] and size < 1000
    now = a.get("/v1/peer/config").json()
    assert apply_delta(held, got) == now
    # A follower too far behind gets the whole config, not a delta.
    behind = a.get("/v1/peer/config", params={"version": "0" * 16, "wait": 5, "delta": "true"})
    assert "base" not in behind.json() and behind.json()["version"] == now["version"]

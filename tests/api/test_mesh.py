"""The hub mesh through the API: joining and leaving (one round of link jobs), the checks
that keep linked hubs' networks apart, and which hubs a peer change reaches."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

from db.peer_config import peer_config
from tests.api.conftest import Api, new_key


def hub(admin: Api, name: str, endpoint: str, network: str | None = None) -> int | None:
    assert admin.post("/v1/hubs", json={"name": name, "endpoint": endpoint}).status_code == 201
    if network is None:
        return None
    r = admin.post(
        f"/v1/hubs/{name}/interfaces",
        json={"name": "wg0", "network": network, "listen_port": 51820},
    )
    assert r.status_code == 202, r.text
    return int(r.json()["interface_id"])


def join(admin: Api, name: str, **body: Any) -> Any:
    return admin.put(f"/v1/hubs/{name}/mesh", json={"listen_port": 51900, **body})


def links(db: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    rows = db.execute(
        "SELECT queue, payload->>'peer_hub' AS other FROM jobs WHERE kind = 'mesh_link'"
        " ORDER BY queue, payload->>'peer_hub'"
    ).fetchall()
    return [(r["queue"].removeprefix("hub."), r["other"]) for r in rows]


def jobs_since(db: psycopg.Connection[Any], mark: int) -> list[tuple[str, str]]:
    rows = db.execute(
        "SELECT kind, queue FROM jobs ORDER BY created_at OFFSET %s", (mark,)
    ).fetchall()
    return sorted((r["kind"], r["queue"].removeprefix("hub.")) for r in rows)


def count(db: psycopg.Connection[Any]) -> int:
    row = db.execute("SELECT count(*) AS n FROM jobs").fetchone()
    assert row is not None
    return int(row["n"])


def test_hubs_join_the_mesh_in_one_round_of_link_jobs(
    admin: Api, reader: Api, db: psycopg.Connection[Any]
) -> None:
    hub(admin, "hub-a", "198.18.0.1", "10.41.0.0/24")
    hub(admin, "hub-b", "198.18.0.2", "10.42.0.0/24")
    hub(admin, "hub-c", "hub-c.example:51820", "10.43.0.0/24")
    first = join(admin, "hub-a")
    assert first.status_code == 202, first.text
    assert first.json()["jobs"] == [] and first.json()["endpoint"] == "198.18.0.1:51900"
    second = join(admin, "hub-b")
    assert second.status_code == 202
    assert {(j["hub"], j["peer_hub"]) for j in second.json()["jobs"]} == {
        ("hub-a", "hub-b"),
        ("hub-b", "hub-a"),
    }
    third = join(admin, "hub-c", endpoint="hub-c.example")
    assert third.json()["endpoint"] == "hub-c.example:51900"
    assert len(third.json()["jobs"]) == 4  # c->a, c->b, a->c, b->c: nobody else
    again = join(admin, "hub-c", endpoint="hub-c.example")
    assert again.status_code == 202 and again.json()["jobs"] == []  # nothing changed
    moved = join(admin, "hub-a", endpoint="198.18.0.11")
    assert {(j["hub"], j["peer_hub"]) for j in moved.json()["jobs"]} == {
        ("hub-b", "hub-a"),  # the far ends dial the new endpoint
        ("hub-c", "hub-a"),
        ("hub-a", "hub-b"),  # and hub-a converges its own device once
    }
    mesh = reader.get("/v1/hubs/hub-a").json()["mesh"]
    assert mesh["meshed"] is True and mesh["listen_port"] == 51900
    assert [link["hub"] for link in mesh["links"]] == ["hub-b", "hub-c"]
    assert mesh["links"][0]["last_handshake_at"] is None  # no worker ran them here
    actions = db.execute("SELECT action, target FROM audit WHERE action LIKE 'mesh.%'").fetchall()
    assert {"action": "mesh.join", "target": "hub:hub-c"} in actions
    assert "/v1/hubs/{name}/mesh" in reader.get("/openapi.json").json()["paths"]


def test_peers_narrow_the_links_and_a_hub_cannot_mesh_with_itself(
    admin: Api, reader: Api, db: psycopg.Connection[Any]
) -> None:
    for name, ip in (("hub-a", "198.18.0.1"), ("hub-b", "198.18.0.2"), ("hub-c", "198.18.0.3")):
        hub(admin, name, ip)
    r = join(admin, "hub-a", peers=["hub-a"])
    assert r.status_code == 400 and set(r.json()["error"]["fields"]) == {"peers.0"}
    r = join(admin, "hub-a", peers=["hub-b", "nope"])
    assert r.status_code == 400 and set(r.json()["error"]["fields"]) == {"peers.1"}
    assert join(admin, "hub-a", peers=["hub-b"]).status_code == 202
    join(admin, "hub-b")
    join(admin, "hub-c")
    assert [link["hub"] for link in reader.get("/v1/hubs/hub-a/mesh").json()["links"]] == ["hub-b"]
    assert [link["hub"] for link in reader.get("/v1/hubs/hub-c/mesh").json()["links"]] == ["hub-b"]
    assert ("hub-a", "hub-c") not in links(db) and ("hub-c", "hub-a") not in links(db)


def test_bad_mesh_endpoints_are_400_and_write_nothing(
    admin: Api, db: psycopg.Connection[Any]
) -> None:
    hub(admin, "hub-a", "198.18.0.1")
    for endpoint in ("not a host", "198.18.0.1:99999", "300.1.1.1", "[fd00::1", "0.0.0.0:51900"):
        r = join(admin, "hub-a", endpoint=endpoint)
        assert r.status_code == 400, endpoint
        assert set(r.json()["error"]["fields"]) == {"endpoint"}, endpoint
    r = admin.put("/v1/hubs/hub-a/mesh", json={"listen_port": 0})
    assert r.status_code == 400 and set(r.json()["error"]["fields"]) == {"listen_port"}
    row = db.execute("SELECT mesh_port FROM hubs").fetchone()
    assert row == {"mesh_port": None}


def test_overlapping_networks_across_meshed_hubs_are_409(
    admin: Api, db: psycopg.Connection[Any]
) -> None:
    hub(admin, "hub-a", "198.18.0.1", "10.44.0.0/24")
    hub(admin, "hub-b", "198.18.0.2", "10.44.0.128/25")
    assert join(admin, "hub-a").status_code == 202
    r = join(admin, "hub-b")
    assert r.status_code == 409 and r.json()["error"]["code"] == "mesh_networks_overlap"
    assert "mesh" in r.json()["error"]["fields"]
    assert db.execute("SELECT mesh_port FROM hubs WHERE name = 'hub-b'").fetchone() == {
        "mesh_port": None
    }
    assert links(db) == []
    # an interface added later on a meshed hub is checked the same way
    hub(admin, "hub-c", "198.18.0.3")
    join(admin, "hub-c")
    r = admin.post(
        "/v1/hubs/hub-c/interfaces",
        json={"name": "wg1", "network": "10.44.0.0/25", "listen_port": 51821},
    )
    assert r.status_code == 409 and set(r.json()["error"]["fields"]) == {"network"}
    r = admin.post(
        "/v1/hubs/hub-c/interfaces",
        json={"name": "elymesh", "network": "10.45.0.0/24", "listen_port": 51822},
    )
    assert r.status_code == 400 and set(r.json()["error"]["fields"]) == {"name"}
    r = admin.post(
        "/v1/hubs/hub-c/interfaces",
        json={"name": "wg2", "network": "10.46.0.0/24", "listen_port": 51900},
    )
    assert r.status_code == 409 and set(r.json()["error"]["fields"]) == {"listen_port"}


def test_pushed_routes_that_overlap_across_linked_hubs_are_409(
    admin: Api, db: psycopg.Connection[Any]
) -> None:
    a = hub(admin, "hub-a", "198.18.0.1", "10.54.0.0/24")
    b = hub(admin, "hub-b", "198.18.0.2", "10.55.0.0/24")
    for iface, route in ((a, "192.168.50.0/24"), (b, "192.168.50.0/25")):
        assert admin.patch(f"/v1/interfaces/{iface}", json={"routes": [route]}).status_code == 202
    join(admin, "hub-a")
    r = join(admin, "hub-b")  # both would route 192.168.50.0/25: the mesh would carry it two ways
    assert r.status_code == 409 and r.json()["error"]["code"] == "mesh_networks_overlap"
    assert admin.patch(f"/v1/interfaces/{b}", json={"routes": []}).status_code == 202
    assert join(admin, "hub-b").status_code == 202
    r = admin.patch(f"/v1/interfaces/{b}", json={"routes": ["10.54.0.128/25"]})
    assert r.status_code == 409 and set(r.json()["error"]["fields"]) == {"routes"}
    row = db.execute("SELECT routes::text[] AS r FROM interfaces WHERE id = %s", (b,)).fetchone()
    assert row == {"r": []}


def test_a_peer_change_reaches_only_the_hubs_that_must_act(
    admin: Api, db: psycopg.Connection[Any], clean_db: str
) -> None:
    a = hub(admin, "hub-a", "198.18.0.1", "10.47.0.0/24")
    b = hub(admin, "hub-b", "198.18.0.2", "10.48.0.0/24")
    hub(admin, "hub-c", "198.18.0.3", "10.49.0.0/24")
    for name in ("hub-a", "hub-b", "hub-c"):
        join(admin, name)
    token = admin.post(
        f"/v1/interfaces/{b}/enrollment-tokens", json={"ttl_seconds": 60, "tags": ["ops"]}
    )
    assert token.status_code == 201, token.text
    policy = {"default": "accept", "rules": [{"from": "tag:ops", "to": "any", "action": "drop"}]}
    r = admin.put(f"/v1/interfaces/{a}/policy", json=policy)
    assert r.status_code == 202, r.text  # hub-b's tag is known across the mesh
    mark = count(db)
    plain = admin.post(f"/v1/interfaces/{b}/peers", json={"name": "p1", "public_key": new_key()})
    assert plain.status_code == 202
    assert jobs_since(db, mark) == [("add_peer", "hub-b")]
    mark = count(db)
    tagged = admin.post(
        f"/v1/interfaces/{b}/peers",
        json={"name": "p2", "public_key": new_key(), "tags": ["ops"]},
    )
    assert tagged.status_code == 202, tagged.text
    # hub-a's policy names tag:ops, hub-c's does not
    assert jobs_since(db, mark) == [("add_peer", "hub-b"), ("mesh_link", "hub-a")]
    mark = count(db)
    routed = admin.post(
        f"/v1/interfaces/{b}/peers",
        json={"name": "p3", "public_key": new_key(), "subnets": ["192.168.77.0/24"]},
    )
    assert routed.status_code == 202, routed.text
    assert jobs_since(db, mark) == [
        ("add_peer", "hub-b"),
        ("mesh_link", "hub-a"),
        ("mesh_link", "hub-c"),
    ]
    mark = count(db)
    peer_id = plain.json()["peer_id"]
    assert admin.patch(f"/v1/peers/{peer_id}", json={"tags": ["ops"]}).status_code == 202
    assert jobs_since(db, mark) == [("mesh_link", "hub-a"), ("update_peer", "hub-b")]
    mark = count(db)
    assert admin.patch(f"/v1/peers/{peer_id}", json={"tags": []}).status_code == 202
    assert jobs_since(db, mark) == [("mesh_link", "hub-a"), ("update_peer", "hub-b")]
    mark = count(db)
    nat = admin.patch(f"/v1/interfaces/{b}", json={"nat": {"egress": "eth0"}})
    assert nat.status_code == 202, nat.text
    assert jobs_since(db, mark) == [("update_interface", "hub-b")]  # nothing behind it moved
    mark = count(db)
    # the routes behind hub-b reach hub-a's peers' configs
    mine = admin.post(f"/v1/interfaces/{a}/peers", json={"name": "a1", "public_key": new_key()})
    with psycopg.connect(clean_db, row_factory=dict_row) as conn:
        config = peer_config(conn, mine.json()["peer_id"])
    assert "10.48.0.0/24" in config["allowed_ips"] and "192.168.77.0/24" in config["allowed_ips"]
    assert "10.49.0.0/24" in config["mesh_routes"]
    assert a is not None


def test_policy_keeps_denied_networks_out_of_a_peers_routes(admin: Api, clean_db: str) -> None:
    a = hub(admin, "hub-a", "198.18.0.1", "10.51.0.0/24")
    hub(admin, "hub-b", "198.18.0.2", "10.52.0.0/24")
    hub(admin, "hub-c", "198.18.0.3", "10.53.0.0/24")
    for name in ("hub-a", "hub-b", "hub-c"):
        join(admin, name)
    policy = {
        "default": "accept",
        "rules": [{"from": "any", "to": "10.52.0.0/24", "action": "drop"}],
    }
    assert admin.put(f"/v1/interfaces/{a}/policy", json=policy).status_code == 202
    mine = admin.post(f"/v1/interfaces/{a}/peers", json={"name": "a1", "public_key": new_key()})
    with psycopg.connect(clean_db, row_factory=dict_row) as conn:
        config = peer_config(conn, mine.json()["peer_id"])
    assert config["mesh_routes"] == ["10.53.0.0/24"]
    assert "10.52.0.0/24" not in config["allowed_ips"]


def test_leaving_drops_both_ends_of_each_link(
    admin: Api, reader: Api, db: psycopg.Connection[Any]
) -> None:
    hub(admin, "hub-a", "198.18.0.1")
    hub(admin, "hub-b", "198.18.0.2")
    join(admin, "hub-a")
    join(admin, "hub-b")
    mark = count(db)
    r = admin.delete("/v1/hubs/hub-b/mesh")
    assert r.status_code == 202 and r.json()["meshed"] is False
    assert jobs_since(db, mark) == [("mesh_link", "hub-a"), ("mesh_link", "hub-b")]
    assert reader.get("/v1/hubs/hub-a/mesh").json()["links"] == []
    assert admin.delete("/v1/hubs/hub-b/mesh").status_code == 409
    assert reader.put("/v1/hubs/hub-a/mesh", json={"listen_port": 51900}).status_code == 403

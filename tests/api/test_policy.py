"""An interface's policy over HTTP: replaced as a job, read back, refused with the field named,
and asked who may talk to whom (no hub runs here: the answers come from the database)."""

from __future__ import annotations

from typing import Any

import psycopg

from tests.api.conftest import Api, new_key


def add(api: Api, interface_id: int, name: str, tags: list[str]) -> int:
    r = api.post(
        f"/v1/interfaces/{interface_id}/peers",
        json={"name": name, "public_key": new_key(), "tags": tags},
    )
    assert r.status_code == 202, r.text
    return int(r.json()["peer_id"])


POLICY = {
    "default": "drop",
    "rules": [
        {"from": "tag:ops", "to": "tag:servers", "proto": "tcp", "ports": [22], "action": "accept"},
        {"from": "tag:laptop", "to": "routes", "action": "accept"},
    ],
}


def test_a_new_interface_denies_by_default(reader: Api, interface_id: int) -> None:
    assert reader.get(f"/v1/interfaces/{interface_id}/policy").json() == {
        "default": "drop",
        "rules": [],
    }


def test_a_policy_is_replaced_by_a_job_and_read_back(
    admin: Api, operator: Api, interface_id: int, db: psycopg.Connection[Any]
) -> None:
    add(operator, interface_id, "ops1", ["ops"])
    add(operator, interface_id, "srv1", ["servers"])
    add(operator, interface_id, "lap1", ["laptop"])
    r = admin.put(f"/v1/interfaces/{interface_id}/policy", json=POLICY)
    assert r.status_code == 202, r.text
    job = db.execute("SELECT kind FROM jobs WHERE id = %s", (r.json()["job_id"],)).fetchone()
    assert job == {"kind": "set_policy"}
    got = admin.get(f"/v1/interfaces/{interface_id}/policy").json()
    assert got["rules"][0]["ports"] == ["22"] and got["rules"][1]["to"] == "routes"
    audit = db.execute("SELECT actor FROM audit WHERE action = 'set_policy'").fetchall()
    assert len(audit) == 1


def test_the_check_names_the_deciding_rule(
    admin: Api, operator: Api, reader: Api, interface_id: int
) -> None:
    ops = add(operator, interface_id, "ops1", ["ops"])
    srv = add(operator, interface_id, "srv1", ["servers"])
    lap = add(operator, interface_id, "lap1", ["laptop"])
    assert admin.put(f"/v1/interfaces/{interface_id}/policy", json=POLICY).status_code == 202
    url = f"/v1/interfaces/{interface_id}/policy/check"
    ssh = {"from": f"peer:{ops}", "to": f"peer:{srv}", "proto": "tcp", "port": 22}
    r = reader.get(url, params=ssh).json()
    assert r["action"] == "allow" and r["rule"] == 0 and r["matched"]["to"] == "tag:servers"
    r = reader.get(url, params={**ssh, "port": 80}).json()
    assert r["action"] == "deny" and r["rule"] is None and r["default"] is True
    r = reader.get(url, params={"from": f"peer:{lap}", "to": f"peer:{ops}"}).json()
    assert r["action"] == "deny"
    r = reader.get(url, params={"from": "10.30.0.200", "to": "peer:999"})
    assert r.status_code == 400 and "to" in r.json()["error"]["fields"]


def test_bad_policies_are_400_naming_the_field_and_change_nothing(
    admin: Api, operator: Api, interface_id: int, db: psycopg.Connection[Any]
) -> None:
    add(operator, interface_id, "ops1", ["ops"])
    cases = [
        ({"from": "tag:nosuch", "to": "tag:ops", "action": "accept"}, "rules.0.from"),
        ({"from": "10.0.0.0/33", "to": "tag:ops", "action": "accept"}, "rules.0.from"),
        ({"from": "peer:424242", "to": "tag:ops", "action": "accept"}, "rules.0.from"),
        (
            {"from": "tag:ops", "to": "routes", "proto": "tcp", "ports": [0], "action": "accept"},
            "rules.0.ports.0",
        ),
        (
            {"from": "tag:ops", "to": "routes", "proto": "icmp", "ports": [22], "action": "accept"},
            "rules.0.ports",
        ),
        ({"from": "10.0.0.0/8", "to": "fd00::/8", "action": "accept"}, "rules.0"),
        ({"from": "tag:ops", "to": "routes", "action": "allow"}, "rules.0.action"),
    ]
    for rule, field in cases:
        r = admin.put(f"/v1/interfaces/{interface_id}/policy", json={"rules": [rule]})
        assert r.status_code == 400, (rule, r.text)
        fields = r.json()["error"]["fields"]
        assert any(f == field or f.startswith(field + ".") for f in fields), (field, fields)
    assert db.execute("SELECT count(*) AS n FROM jobs WHERE kind = 'set_policy'").fetchone() == {
        "n": 0
    }


def test_readers_cannot_change_a_policy(reader: Api, interface_id: int) -> None:
    r = reader.put(f"/v1/interfaces/{interface_id}/policy", json={"rules": []})
    assert r.status_code == 403

"""Who may talk directly, read from the compiled policy; which candidates a peer may report."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from elysium.direct import PeerClasses, candidate_endpoints, may_talk, parse_candidates
from elysium.errors import ValidationError
from elysium.policy import (
    PeerMembership,
    SetIndex,
    compile_policy,
    members_for,
    parse_policy,
)

A, B, C = "10.9.0.2", "10.9.0.3", "10.9.0.4"
PEERS = [
    PeerMembership(1, ("ops",), (A,)),
    PeerMembership(2, ("srv",), (B,)),
    PeerMembership(3, (), (C,)),
]


def talks(body: dict[str, Any], x: str, y: str) -> bool:
    parsed = parse_policy(body, known_tags={"ops", "srv"}, known_peers={1, 2, 3})
    compiled = compile_policy("wg0", parsed)
    members = members_for("wg0", PEERS, [], ["10.9.0.1/24"])
    return may_talk(compiled, SetIndex(members), [x], [y])


def test_a_rule_either_way_lets_a_pair_talk_and_nobody_else() -> None:
    body = {"default": "drop", "rules": [{"from": "tag:ops", "to": "tag:srv", "action": "accept"}]}
    assert talks(body, A, B) and talks(body, B, A)
    assert not talks(body, A, C) and not talks(body, B, C)


def test_a_port_limited_accept_still_lets_a_pair_talk() -> None:
    rule = {"from": "tag:ops", "to": "tag:srv", "proto": "tcp", "ports": [22], "action": "accept"}
    assert talks({"default": "drop", "rules": [rule]}, A, B)


def test_a_full_drop_before_an_accept_keeps_them_apart_but_a_port_drop_does_not() -> None:
    accept_all = {"from": "any", "to": "any", "action": "accept"}
    drop = {"from": "peer:1", "to": "peer:2", "action": "drop"}
    back = {"from": "peer:2", "to": "peer:1", "action": "drop"}
    assert not talks({"default": "accept", "rules": [drop, back, accept_all]}, A, B)
    assert talks({"default": "accept", "rules": [drop, back, accept_all]}, A, C)
    ssh = {**drop, "proto": "tcp", "ports": [22]}
    assert talks({"default": "drop", "rules": [ssh, back, accept_all]}, A, B)


def test_the_default_decides_when_no_rule_matches() -> None:
    assert talks({"default": "accept", "rules": []}, A, C)
    assert not talks({"default": "drop", "rules": []}, A, C)


NETS = [ipaddress.ip_network("10.9.0.0/24")]


def test_good_candidates_are_kept_once_in_order() -> None:
    got = parse_candidates(["192.168.1.2", "2001:db8::2", "192.168.1.2"], 40000, NETS, [])
    assert got == (["192.168.1.2", "2001:db8::2"], 40000)


@pytest.mark.parametrize(
    ("addresses", "port", "field"),
    [
        (["127.0.0.1"], 1, "addresses.0"),
        (["::1"], 1, "addresses.0"),
        (["224.0.0.5"], 1, "addresses.0"),
        (["ff02::1"], 1, "addresses.0"),
        (["169.254.3.3"], 1, "addresses.0"),
        (["fe80::1"], 1, "addresses.0"),
        (["0.0.0.0"], 1, "addresses.0"),
        (["::"], 1, "addresses.0"),
        (["192.168.1.2", "10.9.0.7"], 1, "addresses.1"),
        (["172.16.0.9"], 1, "addresses.0"),  # another peer's tunnel address (below)
        ([5], 1, "addresses.0"),
        ("192.168.1.2", 1, "addresses"),
        ([f"192.168.1.{i}" for i in range(9)], 1, "addresses"),
        ([], 0, "listen_port"),
        ([], 70000, "listen_port"),
        ([], True, "listen_port"),
    ],
)
def test_bad_candidates_name_the_field(addresses: Any, port: Any, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse_candidates(addresses, port, NETS, ["172.16.0.9"])
    assert field in err.value.fields


def test_the_hub_seen_endpoint_comes_first() -> None:
    got = candidate_endpoints("198.51.100.7:4000", ["192.168.1.2", "2001:db8::2"], 4000)
    assert got == ["198.51.100.7:4000", "192.168.1.2:4000", "[2001:db8::2]:4000"]
    assert candidate_endpoints(None, ["192.168.1.2"], None) == []


def test_peer_classes_answer_who_gets_whom_as_each_pair_asked_alone() -> None:
    tagged = [PeerMembership(i, (("ops",), ("srv",), ())[i % 3], (f"10.9.1.{i}",))
              for i in range(2, 40)]  # fmt: skip
    body = {
        "default": "drop",
        "rules": [
            {"from": "tag:ops", "to": "tag:srv", "proto": "tcp", "ports": ["22"],
             "action": "accept"},
            {"from": "peer:7", "to": "any", "action": "drop"},
            {"from": "any", "to": "peer:9", "action": "accept"},
        ],
    }  # fmt: skip
    parsed = parse_policy(body, known_tags={"ops", "srv"}, known_peers={7, 9})
    compiled = compile_policy("wg0", parsed)
    sets = SetIndex(members_for("wg0", tagged, [], ["10.9.1.1/24"]))
    classes = PeerClasses(compiled, sets, {p.peer_id: p.addresses for p in tagged})

    assert len(classes.members) < len(tagged)  # peers the policy sees alike share a class
    for p in tagged:
        expected = [q.peer_id for q in tagged if may_talk(compiled, sets, p.addresses, q.addresses)]
        assert classes.talks_with(classes.of[p.peer_id]) == expected

"""The access policy: what the API accepts (and the field it blames), what it compiles to,
and the verdicts ``check`` reads from that compiled form."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from elysium.errors import ValidationError
from elysium.policy import (
    MAX_RULES,
    Decision,
    PeerMembership,
    Policy,
    Rule,
    check,
    check_tag,
    compile_policy,
    members_for,
    parse_policy,
    policy_to_json,
)

TAGS = {"ops", "web", "db"}
PEERS = {1, 2, 3}


def parse(rules: list[dict[str, Any]], default: str = "drop") -> Policy:
    return parse_policy({"default": default, "rules": rules}, known_tags=TAGS, known_peers=PEERS)


def rule(**fields: Any) -> dict[str, Any]:
    return {"from": "tag:ops", "to": "tag:web", "action": "accept", **fields}


def refused(body: Any) -> dict[str, str]:
    with pytest.raises(ValidationError) as info:
        parse_policy(body, known_tags=TAGS, known_peers=PEERS)
    return info.value.fields


# ---------------------------------------------------------------- parsing


def test_a_policy_round_trips_through_its_json_form() -> None:
    policy = parse(
        [
            rule(proto="tcp", ports=["22", 443, "8000-8100"]),
            rule(**{"from": "peer:2", "to": "10.1.0.0/16", "action": "drop"}),
            rule(**{"from": "any", "to": "hub", "proto": "icmp"}),
        ],
        default="accept",
    )
    again = parse_policy(policy_to_json(policy), known_tags=TAGS, known_peers=PEERS)
    assert again == policy
    assert policy.rules[0] == Rule(
        "tag:ops", "tag:web", "tcp", ("22", "443", "8000-8100"), "accept"
    )


def test_a_missing_default_is_drop() -> None:
    assert parse_policy({"rules": []}, known_tags=set(), known_peers=set()).default == "drop"


def test_addresses_are_written_as_cidrs_and_overlapping_ports_merged() -> None:
    policy = parse([rule(to="10.1.2.3", proto="udp", ports=["53", "50-60", "61"])])
    assert policy.rules[0].dst == "10.1.2.3/32"
    assert policy.rules[0].ports == ("50-61",)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"default": "allow"}, "default"),
        ({"rules": {}}, "rules"),
        ({"rules": [], "nat": {}}, "nat"),
        ({"rules": [rule(), rule(**{"from": "tag:nobody"})]}, "rules.1.from"),
        ({"rules": [rule(to="tag:Bad")]}, "rules.0.to"),
        ({"rules": [rule(to="peer:9")]}, "rules.0.to"),
        ({"rules": [rule(to="peer:x")]}, "rules.0.to"),
        ({"rules": [rule(to="10.1.0.0/33")]}, "rules.0.to"),
        ({"rules": [rule(to="10.1.0.1/16")]}, "rules.0.to"),
        ({"rules": [rule(to=None)]}, "rules.0.to"),
        ({"rules": [rule(proto="sctp")]}, "rules.0.proto"),
        ({"rules": [rule(action="reject")]}, "rules.0.action"),
        ({"rules": [rule(proto="tcp", ports=["22", "0"])]}, "rules.0.ports.1"),
        ({"rules": [rule(proto="tcp", ports=["65536"])]}, "rules.0.ports.0"),
        ({"rules": [rule(proto="tcp", ports=["9000-8000"])]}, "rules.0.ports.0"),
        ({"rules": [rule(proto="tcp", ports=["22-"])]}, "rules.0.ports.0"),
        ({"rules": [rule(proto="tcp", ports="22")]}, "rules.0.ports"),
        ({"rules": [rule(proto="icmp", ports=["22"])]}, "rules.0.ports"),
        ({"rules": [rule(ports=["22"])]}, "rules.0.ports"),
        ({"rules": [rule(colour="red")]}, "rules.0.colour"),
        ({"rules": ["allow all"]}, "rules.0"),
    ],
)
def test_bad_input_is_refused_naming_the_field(body: dict[str, Any], field: str) -> None:
    assert field in refused(body)


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        ("10.0.0.0/8", "2001:db8::/32"),
        ("peer:1", "peer:1"),
        ("10.0.0.5/32", "10.0.0.5"),
        ("hub", "hub"),
        ("hub", "routes"),
        ("routes", "routes"),
    ],
)
def test_a_rule_that_can_never_match_is_refused(src: str, dst: str) -> None:
    fields = refused({"rules": [rule(**{"from": src, "to": dst})]})
    assert "never" in fields["rules.0.to"]


def test_too_many_rules_are_refused() -> None:
    assert "rules" in refused({"rules": [rule()] * (MAX_RULES + 1)})


def test_tag_names_are_checked() -> None:
    assert check_tag("tags.0", "ops_2") == "ops_2"
    for bad in ("", "2ops", "Ops", "a" * 32, "o-ps", 3):
        with pytest.raises(ValidationError):
            check_tag("tags.0", bad)


# ---------------------------------------------------------------- compiling


def test_tags_compile_to_named_sets_per_family_and_cidrs_to_literals() -> None:
    compiled = compile_policy("wg0", parse([rule(to="10.1.0.0/16", proto="tcp", ports=["22"])]))
    (only,) = compiled.rules  # an IPv4 destination leaves no IPv6 form
    assert only.family == 4 and only.chain == "forward"
    assert only.src is not None and only.src.sets == ("wg0_t_ops_4", "wg0_t_ops_4n")
    assert only.dst is not None and only.dst.cidr == "10.1.0.0/16"
    assert {(s.name, s.interval) for s in compiled.sets} == {
        ("wg0_t_ops_4", False),
        ("wg0_t_ops_4n", True),
    }


def test_rules_to_or_from_the_hub_go_to_the_input_and_output_chains() -> None:
    compiled = compile_policy(
        "wg0",
        parse([rule(to="hub"), rule(**{"from": "hub", "to": "peer:1"}), rule(to="routes")]),
    )
    assert [(r.index, r.chain, r.family) for r in compiled.rules] == [
        (0, "input", 4),
        (0, "input", 6),
        (1, "output", 4),
        (1, "output", 6),
        (2, "forward", 4),
        (2, "forward", 6),
    ]
    assert compiled.default_for("forward") == "drop"
    assert compiled.default_for("input") == "accept"
    assert "wg0_routes_4" in {s.name for s in compiled.sets}


def test_any_to_any_is_one_rule_for_both_families() -> None:
    compiled = compile_policy("wg0", parse([rule(**{"from": "any", "to": "any"})]))
    assert [(r.family, r.src, r.dst) for r in compiled.rules] == [(None, None, None)]


def test_an_interface_name_starting_with_a_digit_gets_a_valid_prefix() -> None:
    assert compile_policy("0wg", parse([rule()])).sets[0].name.startswith("_0wg_t_")


# ---------------------------------------------------------------- members and check

OPS = PeerMembership(1, ("ops",), ("10.99.0.2/32", "192.168.5.0/24", "fd00::2"))
WEB = PeerMembership(2, ("web",), ("10.99.0.3",))
OTHER = PeerMembership(3, (), ("10.99.0.4",))


def members() -> dict[str, list[str]]:
    return members_for("wg0", [OPS, WEB, OTHER], ["10.50.0.0/16", "10.50.1.0/24"], ["10.99.0.1/24"])


def test_members_split_host_addresses_from_routed_subnets() -> None:
    found = members()
    assert found["wg0_t_ops_4"] == ["10.99.0.2"]
    assert found["wg0_t_ops_4n"] == ["192.168.5.0/24"]
    assert found["wg0_t_ops_6"] == ["fd00::2"]
    assert found["wg0_p_3_4"] == ["10.99.0.4"]
    assert found["wg0_routes_4"] == ["10.50.0.0/16"]  # merged
    assert found["wg0_hub_4"] == ["10.99.0.1"]


def test_check_takes_the_first_matching_rule_and_names_it() -> None:
    compiled = compile_policy(
        "wg0",
        parse(
            [
                rule(proto="tcp", ports=["22"], action="drop"),
                rule(proto="tcp"),
                rule(**{"from": "any", "to": "routes", "proto": "icmp"}),
            ]
        ),
    )
    m = members()
    assert check(compiled, m, "10.99.0.2", "10.99.0.3", "tcp", 22) == Decision("drop", 0)
    assert check(compiled, m, "10.99.0.2", "10.99.0.3", "tcp", 80) == Decision("accept", 1)
    assert check(compiled, m, "192.168.5.7", "10.99.0.3", "tcp", 80) == Decision("accept", 1)
    assert check(compiled, m, "10.99.0.2", "10.99.0.3", "udp", 53) == Decision("drop", None)
    assert check(compiled, m, "10.99.0.4", "10.50.9.9", "icmp", None) == Decision("accept", 2)
    assert check(compiled, m, "10.99.0.4", "10.99.0.3", "tcp", 80) == Decision("drop", None)


def test_check_sends_traffic_to_the_hub_through_the_input_chain() -> None:
    compiled = compile_policy(
        "wg0", parse([rule(**{"from": "peer:3", "to": "hub"}, action="drop")])
    )
    m = members()
    assert check(compiled, m, "10.99.0.4", "10.99.0.1", None, None) == Decision("drop", 0)
    assert check(compiled, m, "10.99.0.2", "10.99.0.1", None, None) == Decision("accept", None)


def test_check_refuses_what_is_not_an_address() -> None:
    compiled = compile_policy("wg0", parse([]))
    with pytest.raises(ValidationError) as info:
        check(compiled, members(), "tag:ops", "10.99.0.3", None, None)
    assert "from" in info.value.fields
    with pytest.raises(ValidationError) as info:
        check(compiled, members(), "10.99.0.2", "10.99.0.3", "icmp", 22)
    assert "port" in info.value.fields


addresses4 = st.integers(min_value=0, max_value=255).map(lambda i: f"10.99.0.{i}")


@given(src=addresses4, dst=addresses4, port=st.integers(min_value=1, max_value=65535))
def test_check_agrees_with_a_direct_reading_of_the_rules(src: str, dst: str, port: int) -> None:
    """For any flow, the compiled check gives what reading the policy rule by rule gives."""
    policy = parse(
        [
            rule(**{"from": "10.99.0.0/28", "to": "tag:web"}, proto="tcp", ports=["1-1000"]),
            rule(**{"from": "tag:ops", "to": "any"}, action="drop"),
            rule(**{"from": "any", "to": "10.99.0.128/25"}, proto="tcp"),
        ]
    )
    m = members()
    tags = {"10.99.0.2": "ops", "10.99.0.3": "web"}

    def selects(selector: str, addr: str) -> bool:
        if selector == "any":
            return True
        if selector.startswith("tag:"):
            return tags.get(addr) == selector[4:]
        return ipaddress.ip_address(addr) in ipaddress.ip_network(selector)

    expected = Decision("drop", None)
    if "10.99.0.1" in (src, dst):  # the hub's own: input or output chain, no rules there
        expected = Decision("accept", None)
    else:
        for index, r in enumerate(policy.rules):
            in_ports = not r.ports or 1 <= port <= 1000
            if selects(r.src, src) and selects(r.dst, dst) and in_ports:
                expected = Decision(r.action, index)
                break
    assert check(compile_policy("wg0", policy), m, src, dst, "tcp", port) == expected

"""The peer's own table for what reaches it (``client/receiver_policy.py``): rendered from the
config's ``inbound`` and loaded by nft in a namespace of the test's."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from client import receiver_policy
from tests.netns import in_ns, run

pytestmark = pytest.mark.netns

INBOUND: dict[str, Any] = {
    "default": "drop",
    "hub": ["10.9.0.1", "fd09::1"],
    "sets": {"src_0": ["10.9.0.1"], "src_1": ["10.9.0.2", "fd09::2", "fd09:77::/64"]},
    "rules": [
        {
            "index": 0,
            "from_hub": True,
            "family": 4,
            "src": "src_0",
            "proto": "tcp",
            "ports": ["22"],
            "action": "drop",
        },
        {
            "index": 1,
            "from_hub": False,
            "family": None,
            "src": "src_1",
            "proto": "tcp",
            "ports": ["22", "8000-8080"],
            "action": "accept",
        },
        {
            "index": 2,
            "from_hub": False,
            "family": 6,
            "src": None,
            "proto": "icmp",
            "ports": [],
            "action": "accept",
        },
        {
            "index": 3,
            "from_hub": False,
            "family": None,
            "src": None,
            "proto": None,
            "ports": [],
            "action": "accept",
        },
    ],
}


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"ely-rp-{secrets.token_hex(3)}"
    run("ip", "netns", "add", name)
    yield name
    run("ip", "netns", "del", name, check=False)


def test_the_table_loads_replaces_itself_and_goes(netns: str) -> None:
    receiver_policy.apply(netns, "elysium0", INBOUND)
    listed = in_ns(netns, "nft", "list", "table", "inet", "elysium_peer").stdout
    assert 'iifname != "elysium0" return' in listed
    assert (
        "ip saddr 10.9.0.1 jump from_hub" in listed and "ip6 saddr fd09::1 jump from_hub" in listed
    )
    assert "ip6 saddr @src_1_6 tcp dport { 22, 8000-8080 }" in listed
    assert "ip6 saddr @src_1_6n tcp dport { 22, 8000-8080 }" in listed
    assert elements(netns, "src_1_6") == ["fd09::2"]
    assert elements(netns, "src_1_6n") == ["fd09:77::/64"]
    assert 'counter name "default" drop' in listed
    receiver_policy.apply(netns, "elysium0", {**INBOUND, "rules": [], "default": "accept"})
    listed = in_ns(netns, "nft", "list", "table", "inet", "elysium_peer").stdout
    assert "8000-8080" not in listed and 'counter name "default" accept' in listed
    receiver_policy.apply(netns, "elysium0", None)
    assert "elysium_peer" not in in_ns(netns, "nft", "list", "tables").stdout
    receiver_policy.remove(netns)  # twice is fine


def elements(netns: str, name: str) -> list[str]:
    """A set's elements as nft lists them (networks as CIDRs)."""
    shown = json.loads(
        in_ns(netns, "nft", "-j", "list", "set", "inet", "elysium_peer", name).stdout
    )
    found = next(o["set"] for o in shown["nftables"] if "set" in o).get("elem", [])
    return [e if isinstance(e, str) else f"{e['prefix']['addr']}/{e['prefix']['len']}"
            for e in found]  # fmt: skip


def test_a_source_gaining_and_losing_members_changes_set_elements_only(netns: str) -> None:
    receiver_policy.apply(netns, "elysium0", INBOUND)
    # Something the table holds that no config says: a table replaced whole would lose it.
    in_ns(netns, "nft", "add", "element", "inet", "elysium_peer", "src_0_4", "{ 10.9.0.99 }")
    joined = {**INBOUND, "sets": {"src_0": ["10.9.0.1"],
                                  "src_1": ["10.9.0.3", "fd09::2", "192.168.5.0/24"]}}  # fmt: skip

    script = receiver_policy.element_changes(INBOUND, joined)
    receiver_policy.apply(netns, "elysium0", joined, previous=INBOUND)

    assert script is not None and "delete element" in script and "add element" in script
    assert elements(netns, "src_1_4") == ["10.9.0.3"]  # .2 left, .3 came
    assert elements(netns, "src_1_4n") == ["192.168.5.0/24"]
    assert elements(netns, "src_1_6n") == []
    assert sorted(elements(netns, "src_0_4")) == ["10.9.0.1", "10.9.0.99"]  # not reloaded
    # More than elements moved (a rule): the table is replaced whole.
    assert receiver_policy.element_changes(joined, {**joined, "default": "accept"}) is None
    receiver_policy.apply(netns, "elysium0", {**joined, "default": "accept"}, previous=joined)
    assert elements(netns, "src_0_4") == ["10.9.0.1"]


def test_a_table_not_as_expected_is_put_in_place_whole(netns: str) -> None:
    receiver_policy.apply(netns, "elysium0", INBOUND)
    in_ns(netns, "nft", "delete", "table", "inet", "elysium_peer")
    joined = {**INBOUND, "sets": {**INBOUND["sets"], "src_0": ["10.9.0.1", "10.9.0.5"]}}

    receiver_policy.apply(netns, "elysium0", joined, previous=INBOUND)

    assert sorted(elements(netns, "src_0_4")) == ["10.9.0.1", "10.9.0.5"]
    assert elements(netns, "src_1_4") == ["10.9.0.2"]

"""The peer's own table for what reaches it (``client/receiver_policy.py``): rendered from the
config's ``inbound`` and loaded by nft in a namespace of the test's."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from client import receiver_policy
from tests.netns import in_ns, run

pytestmark = pytest.mark.netns

INBOUND = {
    "default": "drop",
    "hub": ["10.9.0.1", "fd09::1"],
    "rules": [
        {
            "index": 0,
            "from_hub": True,
            "family": 4,
            "src": ["10.9.0.1/32"],
            "proto": "tcp",
            "ports": ["22"],
            "action": "drop",
        },
        {
            "index": 1,
            "from_hub": False,
            "family": None,
            "src": ["10.9.0.2/32", "fd09::2/128"],
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
    assert "ip6 saddr fd09::2 tcp dport { 22, 8000-8080 }" in listed
    assert 'counter name "default" drop' in listed
    receiver_policy.apply(netns, "elysium0", {**INBOUND, "rules": [], "default": "accept"})
    listed = in_ns(netns, "nft", "list", "table", "inet", "elysium_peer").stdout
    assert "8000-8080" not in listed and 'counter name "default" accept' in listed
    receiver_policy.apply(netns, "elysium0", None)
    assert "elysium_peer" not in in_ns(netns, "nft", "list", "tables").stdout
    receiver_policy.remove(netns)  # twice is fine

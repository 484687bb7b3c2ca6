"""The hub as the client's one peer: allowed IPs from the config, routes for what is not local."""

from __future__ import annotations

from client.tunnel import hub_peer, routed_subnets
from elysium.keys import generate_private_key, public_key


def test_interface_networks_need_no_route_other_subnets_do() -> None:
    routes = routed_subnets(
        ["10.8.0.2/24", "fd00:8::2/64"],
        ("10.8.0.0/24", "fd00:8::/64", "192.168.50.0/24", "10.8.0.128/25", "fd00:9::/64"),
    )

    assert routes == ["192.168.50.0/24", "fd00:9::/64"]


def test_hub_peer_carries_key_endpoint_allowed_ips_keepalive_and_routes() -> None:
    hub_key = public_key(generate_private_key())

    peer = hub_peer(
        {
            "addresses": ["10.8.0.2/24"],
            "allowed_ips": ["10.8.0.0/24", "192.168.50.0/24"],
            "hub_public_key": hub_key,
            "endpoint": "198.18.0.1:51820",
            "keepalive": 25,
        }
    )

    assert peer.public_key == hub_key
    assert peer.allowed_ips == ("10.8.0.0/24", "192.168.50.0/24")
    assert peer.routes == ("192.168.50.0/24",)
    assert peer.endpoint == "198.18.0.1:51820"
    assert peer.keepalive == 25


def test_an_exit_hubs_default_routes_are_left_to_exit_routing() -> None:
    routes = routed_subnets(
        ["10.77.0.2/24", "fd77::2/64"],
        ("10.77.0.0/24", "fd77::/64", "192.168.50.0/24", "0.0.0.0/0", "::/0"),
    )
    assert routes == ["192.168.50.0/24"]  # the defaults go to a table of their own

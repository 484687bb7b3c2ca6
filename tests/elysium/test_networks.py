"""Address plans: which networks an interface may have and which subnets a peer may route."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from elysium.errors import ValidationError
from elysium.networks import (
    SPECIAL_RANGES,
    IPNetwork,
    check_subnets_clear_of,
    endpoint_address,
    hub_addresses,
    parse_network,
    parse_subnets,
)


def networks(version: int) -> st.SearchStrategy[IPNetwork]:
    """Any strict network of one IP version (prefix 1 and longer)."""
    bits = 32 if version == 4 else 128
    return st.builds(
        lambda addr, prefix: ipaddress.ip_network(f"{addr}/{prefix}", strict=False),
        st.ip_addresses(v=version),
        st.integers(min_value=1, max_value=bits),
    )


def touches_special(net: IPNetwork) -> bool:
    return any(net.version == s.version and net.overlaps(s) for s, _ in SPECIAL_RANGES)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "subnet",
    [
        "127.0.0.0/8",
        "127.0.0.1/32",
        "126.0.0.0/7",  # covers loopback
        "::1/128",
        "224.0.0.0/4",
        "239.1.2.0/24",
        "ff02::/16",
        "169.254.0.0/16",
        "169.254.10.0/24",
        "fe80::/64",
        "0.0.0.0/8",
        "0.0.0.0/1",
        "::/128",
        "::ffff:0:0/96",
        "240.0.0.0/4",
        "255.255.255.255/32",
    ],
)
def test_no_hub_routes_these_subnets_into_a_tunnel(subnet: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse_subnets(["192.168.7.0/24", subnet])
    assert list(err.value.fields) == ["subnets.1"]
    assert "no hub routes it" in err.value.fields["subnets.1"]


@pytest.mark.parametrize("subnet", ["0.0.0.0/0", "::/0"])
def test_a_default_route_is_no_routed_subnet(subnet: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse_subnets([subnet])
    assert err.value.fields == {"subnets.0": "a default route cannot be a routed subnet"}


@given(st.lists(networks(4) | networks(6), min_size=1, max_size=8, unique=True))
def test_a_subnet_is_accepted_exactly_when_it_touches_no_special_range(
    nets: list[IPNetwork],
) -> None:
    texts = [str(n) for n in nets]
    bad = [i for i, n in enumerate(nets) if touches_special(n)]
    if bad:
        with pytest.raises(ValidationError) as err:
            parse_subnets(texts)
        assert list(err.value.fields) == [f"subnets.{bad[0]}"]
    else:
        assert parse_subnets(texts) == nets


# Where the standard library's own flags say an address is loopback, multicast, link-local,
# unspecified or (IPv4) reserved: an independent oracle for the rule.
SPECIAL_ADDRESSES = st.sampled_from(
    ["127.0.0.0/8", "224.0.0.0/4", "169.254.0.0/16", "240.0.0.0/4", "ff00::/8", "fe80::/10"]
).flatmap(lambda net: st.ip_addresses(network=net)) | st.sampled_from(
    [ipaddress.ip_address(a) for a in ("0.0.0.0", "::", "::1", "255.255.255.255")]
)


@given(SPECIAL_ADDRESSES, st.integers(min_value=1, max_value=128))
def test_no_subnet_holding_a_special_address_is_accepted(
    addr: ipaddress.IPv4Address | ipaddress.IPv6Address, prefix: int
) -> None:
    assert (
        addr.is_loopback
        or addr.is_multicast
        or addr.is_link_local
        or addr.is_unspecified
        or addr.is_reserved
    )
    net = ipaddress.ip_network(f"{addr}/{min(prefix, addr.max_prefixlen)}", strict=False)
    with pytest.raises(ValidationError) as err:
        parse_subnets([str(net)])
    assert list(err.value.fields) == ["subnets.0"]


@pytest.mark.parametrize(
    ("field", "version", "network"),
    [
        ("network", 4, "224.0.0.0/24"),
        ("network", 4, "239.255.0.0/16"),
        ("network", 4, "127.0.0.0/24"),
        ("network", 4, "169.254.0.0/24"),
        ("network", 4, "0.0.0.0/24"),
        ("network", 4, "240.0.0.0/24"),
        ("network6", 6, "ff05::/64"),
        ("network6", 6, "fe80::/64"),
        ("network6", 6, "::/64"),  # holds :: and ::1
    ],
)
def test_an_interface_network_may_not_be_special(field: str, version: int, network: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse_network(network, field, version)
    assert list(err.value.fields) == [field]
    assert "cannot be an interface network" in err.value.fields[field]


@pytest.mark.parametrize(
    ("version", "network"),
    [(4, "10.8.0.0/24"), (4, "100.64.0.0/24"), (4, "192.168.1.0/30"), (6, "fd00:8::/64")],
)
def test_ordinary_interface_networks_are_still_accepted(version: int, network: str) -> None:
    assert str(parse_network(network, "network", version)) == network


@pytest.mark.parametrize(
    ("endpoint", "address"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("192.0.2.1:51820", "192.0.2.1"),
        ("[2001:db8::1]:51820", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("hub.example.net", None),
        ("hub.example.net:51820", None),
    ],
)
def test_the_address_of_an_endpoint_is_its_ip_literal(endpoint: str, address: str | None) -> None:
    found = endpoint_address(endpoint)
    assert (str(found) if found else None) == address


def test_a_subnet_covering_an_own_address_of_the_hub_is_refused() -> None:
    own = [("192.0.2.1", "the endpoint of hub h"), ("2001:db8::7", "an underlay address")]
    nets = parse_subnets(["10.1.0.0/16", "192.0.2.0/24"])
    with pytest.raises(ValidationError) as err:
        check_subnets_clear_of(nets, own)
    assert err.value.fields == {"subnets.1": "covers 192.0.2.1, the endpoint of hub h"}
    check_subnets_clear_of(parse_subnets(["192.0.3.0/24", "2001:db8:1::/48"]), own)
    with pytest.raises(ValidationError):
        check_subnets_clear_of(parse_subnets(["2001:db8::/64"]), own)


def test_the_hub_keeps_the_first_address_of_each_network_with_its_prefix() -> None:
    assert hub_addresses("10.8.0.0/24", None) == ["10.8.0.1/24"]
    assert hub_addresses("10.8.0.0/24", "fd00:8::/64") == ["10.8.0.1/24", "fd00:8::1/64"]

"""Peer validation with the cache a converge keeps of the specs it checked last time."""

from __future__ import annotations

import pytest

from dataplane import PeerSpec
from dataplane.peer_state import PeerState
from dataplane.validation import desired_peers
from elysium.errors import DataplaneError
from elysium.keys import generate_private_key, public_key


def new_key() -> str:
    return public_key(generate_private_key())


def test_a_changed_spec_is_checked_again_and_never_served_from_the_cache() -> None:
    key = new_key()
    checked: dict[PeerSpec, PeerState] = {}
    desired_peers([PeerSpec(key, ("10.5.0.2/32",), keepalive=25)], checked)

    again = desired_peers([PeerSpec(key, ("10.5.0.2/32",), keepalive=25)], checked)
    changed = desired_peers([PeerSpec(key, ("10.5.0.0/24",), keepalive=5)], checked)

    assert again == desired_peers([PeerSpec(key, ("10.5.0.2/32",), keepalive=25)])
    assert changed[key].allowed_ips == {"10.5.0.0/24"} and changed[key].keepalive == 5
    assert list(checked) == [PeerSpec(key, ("10.5.0.0/24",), keepalive=5)]  # only the last call


def test_a_float_keepalive_is_refused_even_when_the_equal_int_was_cached() -> None:
    key = new_key()
    checked: dict[PeerSpec, PeerState] = {}
    desired_peers([PeerSpec(key, ("10.5.0.2/32",), keepalive=25)], checked)

    with pytest.raises(DataplaneError) as exc:
        desired_peers([PeerSpec(key, ("10.5.0.2/32",), keepalive=25.0)], checked)  # type: ignore[arg-type]

    assert exc.value.code == "invalid_peer"


def test_a_spec_with_a_list_or_a_host_name_is_checked_but_not_cached() -> None:
    listed, named = new_key(), new_key()
    checked: dict[PeerSpec, PeerState] = {}
    peers = [
        PeerSpec(listed, ["10.5.0.3/32"]),  # type: ignore[arg-type]
        PeerSpec(named, ("10.5.0.4/32",), endpoint="localhost:51820"),
    ]

    first = desired_peers(peers, checked)
    second = desired_peers(peers, checked)

    assert first == second == desired_peers(peers)
    assert first[named].endpoint == "127.0.0.1:51820"
    assert checked == {}


def test_a_refused_call_leaves_the_cache_as_the_last_good_one_left_it() -> None:
    good = PeerSpec(new_key(), ("10.5.0.2/32",))
    checked: dict[PeerSpec, PeerState] = {}
    desired_peers([good], checked)

    with pytest.raises(DataplaneError) as exc:
        desired_peers([good, PeerSpec(new_key(), ("10.5.0.2/32",))], checked)

    assert exc.value.code == "duplicate_address"
    assert list(checked) == [good]

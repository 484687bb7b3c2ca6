"""Config deltas: what moved between two versions, and the whole config rebuilt from one."""

from __future__ import annotations

from typing import Any

from elysium.config_delta import apply_delta, canonical, config_delta, config_version


def config(**fields: Any) -> dict[str, Any]:
    body = {"peer_id": 1, "dns": [], **fields}
    return {**body, "version": config_version(body)}


def peer(i: int, endpoint: str = "198.51.100.1:1") -> dict[str, Any]:
    return {"peer_id": i, "public_key": f"k{i}", "addresses": [f"10.0.0.{i}/32"],
            "endpoints": [endpoint], "keepalive": 1}  # fmt: skip


def test_a_join_carries_one_entry_and_rebuilds_the_same_version() -> None:
    old = config(direct=True, direct_peers=[peer(2), peer(3)])
    new = config(direct=True, direct_peers=[peer(2), peer(3), peer(4)])
    delta = config_delta(old, new)
    assert delta["set"] == {} and delta["direct_peers"]["upsert"] == [peer(4)]
    assert apply_delta(old, delta) == new


def test_moves_removals_and_fields_round_trip() -> None:
    old = config(direct=True, direct_peers=[peer(2), peer(3)], mtu=1420)
    new = config(direct=True, direct_peers=[peer(3, "198.51.100.9:9")], dns=["10.0.0.1"])
    delta = config_delta(old, new)
    assert delta["direct_peers"]["remove"] == [2] and delta["unset"] == ["mtu"]
    assert apply_delta(old, delta) == new


def test_direct_off_drops_the_list() -> None:
    old = config(direct=True, direct_peers=[peer(2)])
    new = config()
    assert apply_delta(old, config_delta(old, new)) == new


def test_a_delta_from_another_base_or_a_wrong_result_does_not_apply() -> None:
    old = config(direct=True, direct_peers=[peer(2)])
    new = config(direct=True, direct_peers=[])
    delta = config_delta(old, new)
    assert apply_delta(config(dns=["x"]), delta) is None
    assert apply_delta(old, {**delta, "version": "0" * 16}) is None


def test_fields_of_the_followers_own_are_left_out_of_the_rebuilt_config() -> None:
    old = config(direct=True, direct_peers=[peer(2)])
    new = config(direct=True, direct_peers=[peer(2), peer(3)])
    assert apply_delta({**old, "batch": 7}, config_delta(old, new)) == new


def test_a_version_from_spliced_canonical_parts_is_the_same() -> None:
    body = config(direct=True, direct_peers=[peer(2), peer(3)], inbound={"default": "drop"})
    spliced = {"direct_peers": canonical(body["direct_peers"]), "inbound": canonical(None)}
    assert config_version(body, spliced) != body["version"]  # inbound spliced as null
    spliced["inbound"] = canonical(body["inbound"])
    assert config_version(body, spliced) == body["version"]

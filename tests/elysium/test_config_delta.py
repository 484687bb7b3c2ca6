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


def inbound(*sources: str, default: str = "drop") -> dict[str, Any]:
    rule = {"index": 0, "from_hub": False, "family": 4, "src": "src_0", "proto": None,
            "ports": [], "action": "accept"}  # fmt: skip
    return {"default": default, "hub": ["10.0.0.1"], "sets": {"src_0": list(sources)},
            "rules": [rule]}  # fmt: skip


def test_a_join_to_an_inbound_source_carries_the_one_element_not_the_set() -> None:
    many = [f"10.0.{i // 250}.{i % 250 + 2}" for i in range(1000)]
    old = config(direct=True, direct_peers=[peer(2)], inbound=inbound(*many))
    new = config(direct=True, direct_peers=[peer(2), peer(4)], inbound=inbound(*many, "10.0.9.9"))
    delta = config_delta(old, new)
    assert delta["set"] == {} and "inbound" not in delta["set"]
    assert delta["inbound_sets"] == {"src_0": {"add": ["10.0.9.9"], "remove": []}}
    assert len(canonical(delta)) < 1000  # whatever the set's size
    assert apply_delta(old, delta) == new
    gone = config(direct=True, direct_peers=[peer(2)], inbound=inbound(*many[1:]))
    assert config_delta(new, gone)["inbound_sets"]["src_0"] == {
        "add": [],
        "remove": ["10.0.0.2", "10.0.9.9"],
    }
    assert apply_delta(new, config_delta(new, gone)) == gone


def test_more_than_elements_moving_sends_inbound_whole() -> None:
    old = config(direct=True, direct_peers=[], inbound=inbound("10.0.0.2"))
    new = config(direct=True, direct_peers=[], inbound=inbound("10.0.0.2", default="accept"))
    delta = config_delta(old, new)
    assert delta["set"] == {"inbound": new["inbound"]} and delta["inbound_sets"] == {}
    assert apply_delta(old, delta) == new

"""The direct-path decisions of ``elysium-client run``, without a device: tries, fallback to
the hub, retries at shared wall-clock slots."""

from __future__ import annotations

from datetime import UTC, datetime

from client.direct import STALE_S, TRY_S, Actions, PathTable, retry_slot
from dataplane import PeerStats

KEY = "k" * 43 + "="
PEER = {
    "peer_id": 7,
    "public_key": KEY,
    "addresses": ["10.9.0.7/32"],
    "endpoints": ["198.51.100.7:4000", "192.168.1.7:4000"],
    "keepalive": 1,
}


def stat(rx: int, endpoint: str = "198.51.100.7:4000", allowed: tuple[str, ...] = ()) -> PeerStats:
    return PeerStats(KEY, endpoint, datetime.now(UTC) if rx else None, rx, 0, allowed)


def table() -> tuple[PathTable, list[str]]:
    lines: list[str] = []
    return PathTable(lines.append), lines


def test_a_listed_peer_is_tried_at_its_first_candidate_without_an_allowed_ip() -> None:
    paths, _ = table()
    actions = Actions()
    paths.update([PEER], 0.0, actions)
    (spec,) = actions.fresh
    assert spec.endpoint == "198.51.100.7:4000" and spec.allowed_ips == () and spec.keepalive == 1


def test_an_answer_makes_the_path_direct_and_moves_the_address_to_it() -> None:
    paths, lines = table()
    paths.update([PEER], 0.0, Actions())
    actions = paths.step({KEY: stat(148)}, 1.0, 1000.0)
    (spec,) = actions.update
    assert spec.allowed_ips == ("10.9.0.7/32",) and paths.paths[KEY].state == "direct"
    assert "direct via 198.51.100.7:4000" in lines[-1]


def test_silent_candidates_are_tried_in_turn_then_the_hub_relays() -> None:
    paths, _ = table()
    paths.update([PEER], 0.0, Actions())
    assert not paths.step({KEY: stat(0)}, TRY_S - 0.5, 1000.0)
    second = paths.step({KEY: stat(0)}, TRY_S, 1000.0)
    assert second.fresh[0].endpoint == "192.168.1.7:4000"
    gone = paths.step({KEY: stat(0)}, 2 * TRY_S, 1001.0)
    assert gone.remove == [KEY] and paths.paths[KEY].state == "relayed"
    assert paths.paths[KEY].retry_at == 1005.0  # the next 5 s slot
    assert not paths.step({}, 2 * TRY_S + 1, 1004.0)
    again = paths.step({}, 2 * TRY_S + 2, 1005.0)
    assert again.fresh[0].endpoint == "198.51.100.7:4000"


def test_a_direct_path_silent_for_long_goes_back_to_the_hub() -> None:
    paths, _ = table()
    paths.update([PEER], 0.0, Actions())
    paths.step({KEY: stat(100)}, 1.0, 1000.0)
    assert not paths.step({KEY: stat(200)}, 2.0, 1001.0)  # still heard
    assert not paths.step({KEY: stat(200)}, 2.0 + STALE_S - 0.5, 1005.0)
    back = paths.step({KEY: stat(200)}, 2.0 + STALE_S, 1006.0)
    assert back.remove == [KEY] and "silent" in paths.paths[KEY].why


def test_a_peer_no_longer_listed_leaves_the_device() -> None:
    paths, lines = table()
    paths.update([PEER], 0.0, Actions())
    actions = Actions()
    paths.update([], 1.0, actions)
    assert actions.remove == [KEY] and paths.paths == {} and "no longer listed" in lines[-1]


def test_retry_slots_are_shared_wall_clock_multiples_that_grow() -> None:
    assert retry_slot(1001.0, 1) == 1005.0
    assert retry_slot(1001.0, 2) == 1010.0
    assert retry_slot(1001.0, 3) == 1020.0
    assert retry_slot(1001.0, 20) == 1020.0  # 60 s at most

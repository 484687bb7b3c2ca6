"""Drift under load: a peer added by hand and a deleted interface, each during a burst of
enrollments, are repaired within one reconcile period (a deleted device is often rebuilt even
sooner, by the next burst's job: the hub converges a device that stopped answering).

``tests/workers/test_control.py`` shows each repair on a quiet hub; here the hub worker is
busy with a burst when the drift happens, and the burst must still end exactly right.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from dataplane.uapi_protocol import b64_to_hex, transact
from dataplane.wireguard_go import WireguardGo
from elysium.keys import public_key
from tests.faults.conftest import IFACE, Burst, FaultStack, wait_until
from tests.netns import run

pytestmark = pytest.mark.netns

RECONCILE_S = 2.0
SLACK_S = 2.0  # beat → control → hub queue → converge
BURST = 250
HOLD = 50  # the burst waits at post 50 until the drift is made
ROGUE_IP = "10.90.15.250/32"


@pytest.fixture
def stack(make_stack: Callable[..., FaultStack]) -> Iterator[FaultStack]:
    s = make_stack(reconcile_interval_s=RECONCILE_S, beat_lease_s=2.0)
    s.start_api()
    s.start_hub()
    s.start_control()
    s.declare_interface()
    yield s


def test_a_peer_added_by_hand_during_a_burst_is_removed_within_one_period(
    stack: FaultStack,
) -> None:
    token = stack.enrollment_token(uses=BURST)
    burst = Burst(stack, token, BURST, holds=(HOLD,))  # surely running at the drift
    intruder = public_key(stack.ledger.private_key())
    socket_path = WireguardGo(stack.hub_dir, stack.topology.hub).socket_path(IFACE)
    try:
        stack.wait_enrolled(10)
        assert burst.running(), "the burst ended before the drift: nothing was tested"
        transact(
            socket_path,
            f"set=1\npublic_key={b64_to_hex(intruder)}\nallowed_ip={ROGUE_IP}\n\n".encode(),
        )
        assert intruder in {p.public_key for p in stack.device_peers()}
        burst.release()  # the rest of the burst goes on while reconcile repairs
        repaired_s = wait_until(
            lambda: intruder not in {p.public_key for p in stack.device_peers()},
            RECONCILE_S + SLACK_S,
            "reconcile to remove the hand-added peer",
        )
    finally:
        keys = burst.join()

    assert stack.wait_jobs(list(keys.values()), 60) == {"succeeded": BURST}
    stack.assert_converged(set(keys))
    print(f"\nrogue peer removed after {repaired_s:.1f}s (period {RECONCILE_S}s)")


def interface_present(stack: FaultStack) -> bool:
    return run("ip", "-n", stack.topology.hub, "link", "show", IFACE, check=False).returncode == 0


def delete_interface(stack: FaultStack, then: Callable[[], None] = lambda: None) -> float:
    """``ip link del wg0`` in the hub namespace, then ``then()``; answers seconds until the
    interface is back."""
    run("ip", "-n", stack.topology.hub, "link", "del", IFACE)
    then()
    return wait_until(
        lambda: interface_present(stack), RECONCILE_S + SLACK_S, "wg0 to be recreated"
    )


def test_an_interface_deleted_during_and_after_a_burst_comes_back_with_every_peer(
    stack: FaultStack,
) -> None:
    token = stack.enrollment_token(uses=BURST)
    burst = Burst(stack, token, BURST, holds=(HOLD,))  # surely running at the drift
    try:
        stack.wait_enrolled(10)
        assert burst.running(), "the burst ended before the drift: nothing was tested"
        # The burst goes on once wg0 is gone: its next job rebuilds it, or reconcile does.
        during_s = delete_interface(stack, then=burst.release)
    finally:
        keys = burst.join()
    assert stack.wait_jobs(list(keys.values()), 60) == {"succeeded": BURST}
    stack.assert_converged(set(keys))

    after_s = delete_interface(stack)  # no job comes: only reconcile can rebuild it
    wait_until(
        lambda: {p.public_key for p in stack.device_peers()} == set(keys),
        SLACK_S,
        "the peers to be back on wg0",
    )

    stack.assert_converged(set(keys))
    changed = "SELECT count(*) AS n FROM audit WHERE action = 'reconcile' AND outcome = 'changed'"
    # The reconcile audits once it has converged everything (the firewall too), a moment
    # after the peers are back on the device.
    wait_until(lambda: stack.query(changed)[0]["n"] >= 1, SLACK_S, "the reconcile's audit")
    print(f"\nwg0 back after {during_s:.1f}s during the burst, {after_s:.1f}s after it")

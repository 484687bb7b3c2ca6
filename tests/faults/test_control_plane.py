"""A control worker, or the beat leader, SIGKILLed during a burst while a second one runs.

Every enrollment carries a CSR, so its job passes a control worker (which signs it) on its
way to the hub. A killed control worker's jobs stay queued in PostgreSQL: the janitor sends
them again and the other worker signs them. A killed beat leader's lease lapses and the other
beat takes it (the janitor's schedule goes on). Writes are never refused: the API needs
neither.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.api.conftest import Pki
from tests.faults.conftest import Burst, FaultStack
from tests.faults.figures import HA_POOL_MAX, burst_size
from tests.faults.tunnel_ping import TunnelPing
from tests.stack import Process, wait_for

pytestmark = pytest.mark.netns

BURST = burst_size(400)
LEASE_S = 2.0


def beat_leader(stack: FaultStack, beats: list[Process]) -> Process:
    """The one of ``beats`` whose pid the ``beat`` lease names, once it names one of them (a
    killed leader's name stays on the lease until the lease runs out)."""

    def holder() -> Process | None:
        rows = stack.query("SELECT holder FROM leases WHERE name = 'beat'")
        pid = int(rows[0]["holder"].split(":")[1]) if rows else None
        return next((b for b in beats if b.pid == pid), None)

    leader = wait_for(holder, 15 + LEASE_S, "a beat leader among the running beats")
    assert isinstance(leader, Process)
    return leader


@pytest.mark.parametrize("fault", ["control_worker", "beat_leader"])
def test_a_burst_across_a_killed_control_process_ends_every_acknowledged_enrollment_once(
    fault: str, make_stack: Callable[..., FaultStack], api_pki: Pki, tmp_path: Path
) -> None:
    stack = make_stack(
        tls_ca=api_pki.ca,  # the control workers sign the CSRs with the test CA
        ca_key=api_pki.ca_key,
        janitor_interval_s=0.5,
        job_requeue_after_s=2.0,
        beat_lease_s=LEASE_S,
        db_pool_max=HA_POOL_MAX,
    )
    replicas = stack.start_api_replicas(2)
    stack.start_hub()
    pairs = [stack.start_control(), stack.start_control("2")]
    stack.declare_interface()
    token = stack.enrollment_token(uses=BURST + TunnelPing.PEERS)
    tunnel = TunnelPing(stack, token, tmp_path)
    try:
        tunnel.start()
        started = time.monotonic()
        burst = Burst(stack, token, BURST, threads=8, holds=(BURST // 2,), retry_s=30, csr=True)
        try:
            stack.wait_enrolled(BURST // 10)
            assert burst.running(), "the burst ended before the kill: nothing was tested"
            if fault == "control_worker":
                victim = pairs[0][0]
            else:
                victim = beat_leader(stack, [beat for _, beat in pairs])
            victim.kill_group()
            killed = time.monotonic()
            burst.release()
        finally:
            submitted = burst.join()
        statuses = stack.wait_jobs(list(submitted.values()), timeout=90)
        ended_s = time.monotonic() - started
        if fault == "beat_leader":
            survivor = beat_leader(stack, [beat for _, beat in pairs if beat is not victim])
            assert survivor is not victim
            taken_over_s = time.monotonic() - killed
        pinged = tunnel.stop()
    finally:
        tunnel.close()

    stack.judge(fault, submitted, statuses, pinged, tunnel.public_keys)
    results = [job["result"] for job in stack.job_results(list(submitted.values()))]
    assert all(r["certificate"].startswith("-----BEGIN CERTIFICATE") for r in results)
    assert stack.writes.refused == 0, "the API refused writes: it needs no control process"
    assert replicas.balancer.alive()
    assert all(p.alive() for p in stack.processes if p is not victim)
    detail = f", lease taken over within {taken_over_s:.1f}s" if fault == "beat_leader" else ""
    print(
        f"\n{fault} killed: all {BURST} ended at {ended_s:.1f}s, {pinged[1]} of {pinged[0]}"
        f" pings through the hub lost{detail}"
    )

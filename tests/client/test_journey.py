"""A peer's whole journey against the real stack, its tunnel in a namespace of its own:
enroll → up → ping the hub → status → rotate → ping with the new key → down."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from client.errors import EXIT_TOKEN
from dataplane.uapi import UapiDriver
from tests.client.conftest import HUB_TUNNEL_IP, HubStack, run_client
from tests.client.test_errors import assert_one_line_error
from tests.netns import in_ns, ping

pytestmark = pytest.mark.netns


def hub_peer_keys(stack: HubStack) -> set[str]:
    driver = UapiDriver(stack.hub_state_dir, stack.topology.hub)
    try:
        return {p.public_key for p in driver.dump("wg0")}
    finally:
        driver.close()


def ok(*args: str, state_dir: Path) -> str:
    run = run_client(*args, state_dir=state_dir)
    assert run.returncode == 0, (args, run.stdout, run.stderr)
    return run.stdout


def test_enroll_up_ping_status_rotate_down(hub_stack: HubStack, tmp_path: Path) -> None:
    api, peer_ns = hub_stack.api, hub_stack.topology.peers[0]
    state = tmp_path / "client"
    token = api.enrollment_token(hub_stack.interface_id)

    out = ok(
        "enroll",
        "--server",
        api.url,
        "--ca",
        str(api.ca),
        "--token",
        token,
        "--name",
        "laptop",
        "--netns",
        peer_ns,
        state_dir=state,
    )
    assert "enrolled laptop as peer" in out and "10.77.0.2/24" in out
    for secret in ("wg.key", "tls.key", "tls.pem", "client.json"):
        assert stat.S_IMODE((state / secret).stat().st_mode) == 0o600, secret

    ok("up", state_dir=state)
    assert ping(peer_ns, HUB_TUNNEL_IP)

    status = json.loads(ok("status", "--json", state_dir=state))
    assert status["up"] is True and status["interface"] == "elysium0"
    assert status["addresses"] == ["10.77.0.2/24"]
    assert status["endpoint"] == "198.18.0.1:51820"
    assert status["handshake_age_s"] is not None and status["handshake_age_s"] < 30
    assert status["rx_bytes"] > 0 and status["tx_bytes"] > 0
    old_key = status["public_key"]
    assert old_key in hub_peer_keys(hub_stack)

    out = ok("rotate", state_dir=state)
    new_key = out.strip().rsplit(" ", 1)[-1]
    assert new_key != old_key
    assert hub_peer_keys(hub_stack) == {new_key}
    assert not (state / "wg.key.next").exists()
    assert stat.S_IMODE((state / "wg.key").stat().st_mode) == 0o600
    assert ping(peer_ns, HUB_TUNNEL_IP)
    assert json.loads(ok("status", "--json", state_dir=state))["public_key"] == new_key

    wg_quick = ok("config", state_dir=state)
    assert f"PrivateKey = {(state / 'wg.key').read_text().strip()}" in wg_quick

    pidfile = state / "netns" / peer_ns / "elysium0.pid"
    pid = int(pidfile.read_text())
    ok("down", state_dir=state)
    assert in_ns(peer_ns, "ip", "link", "show", "elysium0", check=False).returncode != 0
    assert not Path(f"/proc/{pid}").exists()
    assert not list((state / "netns" / peer_ns).glob("elysium0.*sock"))
    assert not pidfile.exists()
    assert not ping(peer_ns, HUB_TUNNEL_IP, tries=1)


def test_a_used_token_is_refused(hub_stack: HubStack, tmp_path: Path) -> None:
    api = hub_stack.api
    token = api.enrollment_token(hub_stack.interface_id)
    first = ["enroll", "--server", api.url, "--ca", str(api.ca), "--token", token]
    ok(
        *first,
        "--name",
        "first",
        "--netns",
        hub_stack.topology.peers[1],
        state_dir=tmp_path / "first",
    )

    run = run_client(*first, "--name", "second", state_dir=tmp_path / "second")

    assert_one_line_error(run, EXIT_TOKEN, "the enrollment token has already been used")

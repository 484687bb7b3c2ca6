"""``elysium-client run`` follows its network live, against the real stack: a peer that
enrolls with a subnet is routed to; an API away for 20 s leaves the tunnel
working and the daemon catches up when it is back; a killed daemon's successor adopts the
tunnel without a gap in traffic."""

from __future__ import annotations

import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from elysium import pki
from elysium.keys import generate_private_key, public_key
from elysium.settings import Settings
from tests.api.conftest import Pki, api_env, free_port
from tests.client.conftest import HUB_TUNNEL_IP, HubStack, run_client
from tests.netns import in_ns, ping
from tests.stack import Process, elysium_command, settings_env, wait_for

pytestmark = pytest.mark.netns


def ok(*args: str, state_dir: Path) -> str:
    run = run_client(*args, state_dir=state_dir)
    assert run.returncode == 0, (args, run.stdout, run.stderr)
    return run.stdout


def enroll(
    stack: HubStack, state: Path, name: str, ns: str, subnets: list[str], server: str = ""
) -> None:
    api = stack.api
    body = {"ttl_seconds": 600, "uses": 1, "subnets": subnets}
    token = api.call("POST", f"/v1/interfaces/{stack.interface_id}/enrollment-tokens", json=body)
    args = ["enroll", "--server", server or api.url, "--ca", str(api.ca)]
    args += ["--token", token["token"], "--name", name, "--netns", ns]
    for subnet in subnets:
        args += ["--subnet", subnet]
    ok(*args, state_dir=state)


def start_follower(state: Path, log: Path) -> Process:
    env = settings_env(Settings.from_env({}, wg_driver="userspace"))
    env["ELYSIUM_CLIENT_STATE_DIR"] = str(state)
    process = Process([sys.executable, "-m", "client", "run", "--wait", "20"], env, log)
    wait_for(lambda: " up:" in process.log() or " adopted:" in process.log(), 60, "run to start")
    return process


@pytest.fixture
def followers() -> Iterator[list[tuple[Process, Path]]]:
    """Daemons a test starts (stopped by pid) and client states to take down at the end."""
    started: list[tuple[Process, Path]] = []
    yield started
    for process, state in started:
        process.stop()
        run_client("down", state_dir=state)


def logged(follower: Process, line: str) -> None:
    """The daemon logs a change just after applying it."""
    wait_for(lambda: line in follower.log(), 2, repr(line))


def routes(ns: str, subnet: str) -> str:
    return in_ns(ns, "ip", "route", "show", subnet).stdout


def test_a_new_peers_subnet_is_routed_on_a_follower_and_reachable_through_the_hub(
    hub_stack: HubStack, tmp_path: Path, followers: list[tuple[Process, Path]]
) -> None:
    topo = hub_stack.topology
    a_ns, b_ns = topo.peers
    a, b = tmp_path / "a", tmp_path / "b"
    enroll(hub_stack, a, "follower-a", a_ns, [])
    follower = start_follower(a, tmp_path / "a.log")
    followers.append((follower, a))
    assert ping(a_ns, HUB_TUNNEL_IP)
    subnet = "192.168.77.0/24"
    # The hub forwards (converge turns it on); its policy lets the tunnel reach the subnet.
    rule = {"from": "10.77.0.0/24", "to": subnet, "action": "accept"}
    sub = hub_stack.api.call(
        "PUT", f"/v1/interfaces/{hub_stack.interface_id}/policy", json={"rules": [rule]}
    )
    hub_stack.api.wait_job(sub["job_id"])
    enroll(hub_stack, b, "site-b", b_ns, [subnet])
    # A generous bound: how soon the route follows is a figure for bench/ (bench/follow.py).
    wait_for(lambda: "elysium0" in routes(a_ns, subnet), 30, "a route to B's subnet on A")
    logged(follower, "allowed IPs +192.168.77.0/24")

    followers.append((follower, b))  # B's tunnel is taken down at the end too
    ok("up", state_dir=b)
    in_ns(b_ns, "ip", "addr", "add", "192.168.77.1/32", "dev", "lo")
    assert ping(a_ns, "192.168.77.1")

    status = ok("status", state_dir=a)
    assert "config" in status and "since" in status


def test_the_tunnel_outlives_the_api_and_the_daemon_catches_up_when_it_is_back(
    hub_stack: HubStack,
    settings: Settings,
    api_pki: Pki,
    tmp_path: Path,
    followers: list[tuple[Process, Path]],
) -> None:
    port = free_port()
    env = api_env(settings, api_pki, port)
    url = f"https://127.0.0.1:{port}"

    def start_api(log: str) -> Process:
        server = Process(elysium_command("api"), env, tmp_path / log)
        wait_for(
            lambda: requests.get(f"{url}/healthz", verify=str(api_pki.ca), timeout=2).ok,
            30,
            "the private API",
        )
        return server

    server = start_api("api-1.log")
    a_ns = hub_stack.topology.peers[0]
    a = tmp_path / "a"
    try:
        enroll(hub_stack, a, "steady", a_ns, [], server=url)
        follower = start_follower(a, tmp_path / "a.log")
        followers.append((follower, a))
        assert ping(a_ns, HUB_TUNNEL_IP)
        server.stop()
        away = time.monotonic()
        while time.monotonic() - away < 20:
            assert ping(a_ns, HUB_TUNNEL_IP, tries=2), "the tunnel stopped while the API was away"
            time.sleep(2)
        assert "server unreachable" in follower.log()
        server = start_api("api-2.log")
        subnet = "192.168.78.0/24"
        hub_stack.api.call(
            "POST",
            f"/v1/interfaces/{hub_stack.interface_id}/peers",
            json={
                "name": "late-site",
                "public_key": public_key(generate_private_key()),
                "subnets": [subnet],
            },
        )
        wait_for(lambda: "elysium0" in routes(a_ns, subnet), 15, "the change made after")
        assert "server back" in follower.log()
    finally:
        server.stop()


def test_a_killed_daemons_successor_adopts_the_tunnel_without_a_gap(
    hub_stack: HubStack, tmp_path: Path, followers: list[tuple[Process, Path]]
) -> None:
    a_ns = hub_stack.topology.peers[0]
    a = tmp_path / "a"
    enroll(hub_stack, a, "phoenix", a_ns, [])
    first = start_follower(a, tmp_path / "a1.log")
    assert ping(a_ns, HUB_TUNNEL_IP)
    pinger = subprocess.Popen(
        ["ip", "netns", "exec", a_ns, "ping", "-n", "-i", "0.2", "-c", "40", HUB_TUNNEL_IP],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1)
        first.kill()
        second = start_follower(a, tmp_path / "a2.log")
        followers.append((second, a))
        assert " adopted:" in second.log()
        out, _ = pinger.communicate(timeout=30)
    finally:
        if pinger.poll() is None:
            pinger.kill()
            pinger.wait()
    first.stop()
    assert " 0% packet loss" in out, out


def test_after_a_hub_key_rotation_the_ping_resumes_through_the_new_key(
    hub_stack: HubStack, tmp_path: Path, followers: list[tuple[Process, Path]]
) -> None:
    api, a_ns = hub_stack.api, hub_stack.topology.peers[0]
    a = tmp_path / "a"
    enroll(hub_stack, a, "rotating", a_ns, [])
    follower = start_follower(a, tmp_path / "a.log")
    followers.append((follower, a))
    assert ping(a_ns, HUB_TUNNEL_IP)
    old_key = api.call("GET", f"/v1/interfaces/{hub_stack.interface_id}")["public_key"]

    job = api.call("POST", f"/v1/interfaces/{hub_stack.interface_id}/rotate-key")
    result = api.wait_job(job["job_id"])["result"]
    assert result["old_public_key"] == old_key and result["public_key"] != old_key
    assert (
        api.call("GET", f"/v1/interfaces/{hub_stack.interface_id}")["public_key"]
        == (result["public_key"])
    )
    # A generous bound: how soon the ping resumes is a figure for bench/, not a test's.
    wait_for(
        lambda: (
            in_ns(a_ns, "ping", "-c1", "-W0.3", "-n", HUB_TUNNEL_IP, check=False).returncode == 0
        ),
        30,
        "the ping through the new key",
        interval=0.05,
    )
    logged(follower, "hub key")
    key_file = next(hub_stack.hub_state_dir.rglob("wg0.key"))
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert result["public_key"] not in key_file.read_text()  # the private key, not the public


def test_the_interfaces_dns_is_applied_in_the_namespace_and_restored_at_down(
    hub_stack: HubStack, settings: Settings, tmp_path: Path, followers: list[tuple[Process, Path]]
) -> None:
    a_ns = hub_stack.topology.peers[0]
    a = tmp_path / "a"
    resolv = Path("/etc/netns") / a_ns / "resolv.conf"
    assert not resolv.exists()
    enroll(hub_stack, a, "resolver", a_ns, [])
    follower = start_follower(a, tmp_path / "a.log")
    set_dns = "UPDATE interfaces SET dns = %s WHERE id = %s"
    try:
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            conn.execute(set_dns, (["10.77.0.53"], hub_stack.interface_id))
        wait_for(lambda: resolv.exists() and "10.77.0.53" in resolv.read_text(), 3, "the DNS")
        assert "nameserver 10.77.0.53" in in_ns(a_ns, "cat", "/etc/resolv.conf").stdout
        logged(follower, "DNS none -> 10.77.0.53")
        follower.stop()
        ok("down", state_dir=a)
        assert not resolv.exists() and not resolv.parent.exists()
        ok("up", state_dir=a)
        assert "nameserver 10.77.0.53" in resolv.read_text()
        ok("down", state_dir=a)
        assert not resolv.exists()
    finally:
        follower.stop()
        run_client("down", state_dir=a)
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            conn.execute(set_dns, ([], hub_stack.interface_id))


def near_its_end(state: Path, ca: Pki) -> x509.Certificate:
    """Our certificate re-issued as lived 20 of its 21 days (same subject, key and extensions)."""
    old = pki.load_certificate(state / "tls.pem")
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(old.subject)
        .issuer_name(old.issuer)
        .public_key(pki.load_private_key(state / "tls.key").public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=20))
        .not_valid_after(now + timedelta(days=1))
    )
    for ext in old.extensions:
        builder = builder.add_extension(ext.value, ext.critical)
    cert = builder.sign(pki.load_private_key(ca.ca_key), hashes.SHA256())
    pki.write_certificate(state / "tls.pem", cert)
    return cert


def test_a_certificate_near_its_end_is_renewed_by_the_daemon(
    hub_stack: HubStack,
    settings: Settings,
    api_pki: Pki,
    tmp_path: Path,
    followers: list[tuple[Process, Path]],
) -> None:
    a_ns = hub_stack.topology.peers[0]
    a = tmp_path / "a"
    enroll(hub_stack, a, "renewing", a_ns, [])
    old = near_its_end(a, api_pki)
    with psycopg.connect(settings.database_url, autocommit=True) as conn:  # as if issued here
        conn.execute(
            "UPDATE peers SET certificate_serial = %s WHERE id = %s",
            (pki.serial_hex(old), pki.peer_id_from_certificate(old)),
        )
    follower = start_follower(a, tmp_path / "a.log")
    followers.append((follower, a))
    logged(follower, "client certificate renewed")
    new = pki.load_certificate(a / "tls.pem")
    assert new.serial_number != old.serial_number
    assert new.not_valid_after_utc > datetime.now(UTC) + timedelta(days=20)
    assert pki.peer_id_from_certificate(new) == pki.peer_id_from_certificate(old)
    for secret in ("tls.pem", "tls.key"):
        assert stat.S_IMODE((a / secret).stat().st_mode) == 0o600
    with psycopg.connect(settings.database_url) as conn:
        row = conn.execute(
            "SELECT certificate_serial FROM peers WHERE id = %s",
            (pki.peer_id_from_certificate(new),),
        ).fetchone()
    assert row == (pki.serial_hex(new),)
    refreshed = run_client("up", state_dir=a)  # the new pair works with the server
    assert refreshed.returncode == 0 and "warning" not in refreshed.stderr, refreshed.stderr

"""Direct peer-to-peer paths, end to end: a hub, two peers each behind its own home router
(masquerade, an input firewall), the real API (TLS), control and hub workers, beat and
``elysium-client run`` per peer, on an interface whose policy lets the two talk.

- ``direct_established_p50_s``/``_max_s``: from ``direct: true`` (its job ended) until both
  peers' ``status`` says ``direct``, over ``repetitions`` (direct off and on again; the peers
  stay up). Goal: p50 ≤ 5 s.
- ``fallback_s``: from a router starting to drop UDP between the two NATs until a ping from
  A to B answers again (through the hub), probes every 0.1 s. Goal ≤ 10 s.
- ``hub_bytes_per_mb_direct`` / ``_relayed``: what the hub's device moves for A and B (their
  counters, both directions) while about 1 MB goes from A to B and back (800 pings of 1,300
  bytes), direct and then relayed (direct off), same run. Goal direct ≈ 0.
- ``rtt_direct_ms`` / ``rtt_relayed_ms``: ping's average over 20 probes, same run.
- ``throughput_direct_mbps`` / ``throughput_relayed_mbps``: iperf3 (Debian's) TCP from A to
  B for 3 s, same run.
- ``join_fanout_1000_p99_s`` and ``join_delta_bytes_1000``: 1,000 followers (``bench.follow``'s
  light TLS followers, one keep-alive connection and client certificate each, no tunnel) on
  one direct interface of the real API (2 workers) whose policy is ``tag:all → tag:all``
  accept, every peer tagged ``all``. Each holds its whole config and long-polls
  ``GET /v1/peer/config?version=V&wait=55&delta=true``, applying each delta
  (``elysium.config_delta.apply_delta``). One peer joins (a row, tagged ``all``, committed in
  one transaction): the p99 over followers of the time from the commit until the follower
  holds a config listing the new peer (goal ≤ 2 s), and the most bytes any follower received
  for it: HTTP status line, headers and body of the answers from the join until it has it,
  as they come out of TLS (goal ≤ 2 KB). ``join_whole_config_bytes_1000``: one follower's
  whole config, what it would get without deltas.
Run: ``.venv/bin/python -m bench.direct`` (writes bench/results/direct.json);
``.venv/bin/python -m bench.direct join`` runs only the join and prints its figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from bench.api import api_server, tls_settings
from bench.client import Api, client, follower, hub_interface, in_ns
from bench.follow import WAIT_S, Follower, connect_all, peers_with_certificates
from bench.scaffold import (
    elysium_processes,
    percentile,
    random_key,
    size,
    throwaway_database,
    throwaway_redis_prefix,
    throwaway_underlay,
    wait_until,
    write_result,
)
from dataplane.uapi import UapiDriver
from dataplane.wireguard_go import WireguardGo
from db.peers import create_peer
from db.tokens import create_api_token
from elysium.config_delta import apply_delta
from elysium.policy import parse_policy, policy_to_json

UNDERLAY = "198.18.79"
HUB = "hub-d"
NETWORK = "10.79.0.0/24"
REPETITIONS = size(full=10, small=1)
JOIN_FOLLOWERS = size(full=1000, small=10)
ALL_TALK = {"default": "drop", "rules": [{"from": "tag:all", "to": "tag:all", "action": "accept"}]}
B_WAN = f"{UNDERLAY}.51"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def ns_run(ns: str, *cmd: str) -> None:
    subprocess.run(["ip", "netns", "exec", ns, *cmd], check=True, capture_output=True, timeout=30)


@contextlib.contextmanager
def homes(hub_ns: str) -> Iterator[list[str]]:
    """Two home routers on the hub's underlay (``.50``, ``.51``), each with one peer namespace
    behind it (``192.168.8x.2``); everything in them is ours and is killed at the end."""
    sfx = hub_ns.rsplit("-", 1)[1]
    underlay, made = f"ely-bu-{sfx}", []
    try:
        peers = []
        for i, (wan, lan) in enumerate(((f"{UNDERLAY}.50", "192.168.81"),
                                        (B_WAN, "192.168.82"))):  # fmt: skip
            router, peer = f"ely-bdr{i}-{sfx}", f"ely-bdp{i}-{sfx}"
            for ns in (router, peer):
                ip("netns", "add", ns)
                made.append(ns)
                ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", underlay, "link", "add", f"vdr{i}", "type", "veth", "peer", "name", "eth0",
               "netns", router)  # fmt: skip
            ip("-n", underlay, "link", "set", f"vdr{i}", "master", "br0", "up")
            ip("-n", router, "addr", "add", f"{wan}/24", "dev", "eth0")
            ip("-n", router, "link", "set", "eth0", "up")
            ip("-n", router, "link", "add", "lan", "type", "veth", "peer", "name", "eth0",
               "netns", peer)  # fmt: skip
            ip("-n", router, "addr", "add", f"{lan}.1/24", "dev", "lan")
            ip("-n", router, "link", "set", "lan", "up")
            ip("-n", peer, "addr", "add", f"{lan}.2/24", "dev", "eth0")
            ip("-n", peer, "link", "set", "eth0", "up")
            ip("-n", peer, "route", "add", "default", "via", f"{lan}.1")
            ns_run(router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            script = (
                "table ip nat { chain post { type nat hook postrouting priority srcnat;\n"
                f'oifname "eth0" ip saddr {lan}.0/24 masquerade\n}}\n}}\n'
                "table inet home { chain input { type filter hook input priority 0;\n"
                'iifname "eth0" ct state new drop\n}\n}\n'
            )
            subprocess.run(["ip", "netns", "exec", router, "nft", "-f", "-"], input=script,
                           text=True, check=True, capture_output=True)  # fmt: skip
            peers.append(peer)
        yield peers
    finally:
        for ns in reversed(made):
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
            for pid in pids.stdout.split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def status(state: Path) -> dict[str, Any]:
    return dict(json.loads(client(state, "status", "--json").stdout))


def direct(state: Path) -> bool:
    return any(p["path"] == "direct" for p in status(state).get("paths", []))


def hub_bytes(hub_state: Path, hub_ns: str, keys: list[str]) -> int:
    driver = UapiDriver(hub_state, hub_ns)
    try:
        return sum(p.rx_bytes + p.tx_bytes for p in driver.dump("wg0") if p.public_key in keys)
    finally:
        driver.close()


def transfer_1mb(ns: str, address: str) -> None:
    cmd = ["ping", "-q", "-c", "800", "-i", "0.002", "-s", "1300", "-W", "1", address]
    done = in_ns(ns, *cmd)
    if " 0% packet loss" not in done.stdout:
        raise RuntimeError(f"the 1 MB transfer lost packets: {done.stdout}")


def rtt_ms(ns: str, address: str) -> float:
    done = in_ns(ns, "ping", "-q", "-c", "20", "-i", "0.05", "-W", "1", address).stdout
    match = re.search(r"= [\d.]+/([\d.]+)/", done)
    if not match:
        raise RuntimeError(f"no RTT from ping: {done}")
    return float(match.group(1))


def throughput_mbps(src: str, dst: str, address: str) -> float:
    server = subprocess.Popen(["ip", "netns", "exec", dst, "iperf3", "-s", "-1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        time.sleep(0.5)
        out = subprocess.run(["ip", "netns", "exec", src, "iperf3", "-c", address, "-t", "3",
                              "-J"], capture_output=True, text=True, timeout=60)  # fmt: skip
        bits = json.loads(out.stdout)["end"]["sum_received"]["bits_per_second"]
        return round(bits / 1e6, 1)
    finally:
        server.terminate()
        server.wait(10)


def set_direct(api: Api, interface_id: int, on: bool) -> None:
    api.wait_job(api.call("PATCH", f"/v1/interfaces/{interface_id}", json={"direct": on})["job_id"])


def measure(
    api: Api, interface_id: int, hub: tuple[str, Path], peers: list[dict[str, Any]]
) -> dict[str, Any]:
    hub_ns, hub_state = hub
    a, b = peers
    keys = [a["key"], b["key"]]
    established = []
    for _ in range(REPETITIONS):
        set_direct(api, interface_id, False)
        wait_until(lambda: not status(a["state"]).get("paths"), 30, "direct off")
        set_direct(api, interface_id, True)
        t = time.monotonic()
        wait_until(lambda: direct(a["state"]) and direct(b["state"]), 90, "a direct path", 0.1)
        established.append(time.monotonic() - t)
    before = hub_bytes(hub_state, hub_ns, keys)
    transfer_1mb(a["ns"], b["address"])
    hub_direct = hub_bytes(hub_state, hub_ns, keys) - before
    rtt_direct = rtt_ms(a["ns"], b["address"])
    tput_direct = throughput_mbps(a["ns"], b["ns"], b["address"])
    router = a["router"]
    cut = (
        "table inet cut { chain forward_cut { type filter hook forward priority 0;\n"
        f"ip daddr {B_WAN} meta l4proto udp drop\n"
        f"ip saddr {B_WAN} meta l4proto udp drop\n}}\n}}\n"
    )
    subprocess.run(["ip", "netns", "exec", router, "nft", "-f", "-"], input=cut, text=True,
                   check=True)  # fmt: skip
    t = time.monotonic()
    wait_until(lambda: in_ns(a["ns"], "ping", "-c1", "-W0.3", "-n", b["address"]).returncode == 0,
               30, "traffic through the hub", 0.1)  # fmt: skip
    fallback = time.monotonic() - t
    ns_run(router, "nft", "delete", "table", "inet", "cut")
    set_direct(api, interface_id, False)
    wait_until(lambda: not status(a["state"]).get("paths"), 30, "direct off")
    before = hub_bytes(hub_state, hub_ns, keys)
    transfer_1mb(a["ns"], b["address"])
    hub_relayed = hub_bytes(hub_state, hub_ns, keys) - before
    return {
        "repetitions": REPETITIONS,
        "direct_established_p50_s": round(percentile(established, 0.5), 2),
        "direct_established_max_s": round(max(established), 2),
        "fallback_s": round(fallback, 2),
        "hub_bytes_per_mb_direct": hub_direct,
        "hub_bytes_per_mb_relayed": hub_relayed,
        "rtt_direct_ms": rtt_direct,
        "rtt_relayed_ms": rtt_ms(a["ns"], b["address"]),
        "throughput_direct_mbps": tput_direct,
        "throughput_relayed_mbps": throughput_mbps(a["ns"], b["ns"], b["address"]),
    }


def run(url: str, hub_ns: str, peer_nss: list[str], d: Path) -> dict[str, Any]:
    with throwaway_redis_prefix() as prefix:
        settings = tls_settings(url, d, prefix, wg_driver="userspace", ca_key=d / "ca.key",
                                liveness_interval_s=2.0, heartbeat_interval_s=1.0)  # fmt: skip
        with psycopg.connect(url, autocommit=True) as conn:
            _, token = create_api_token(conn, "bench-direct", "admin", 3600, "bench")
        with api_server(settings, d) as api_url, elysium_processes(settings, d) as start:
            api = Api(api_url, d / "ca.pem", token)
            start("control-worker", ["control-worker", "--concurrency", "1"])
            start("beat", ["beat"])
            hub_state = d / "hub"
            interface_id = hub_interface(
                api, start, HUB, f"{UNDERLAY}.1", hub_ns, hub_state, NETWORK
            )
            policy = {"default": "accept", "rules": []}
            api.wait_job(
                api.call("PUT", f"/v1/interfaces/{interface_id}/policy", json=policy)["job_id"]
            )
            peers = []
            for i, ns in enumerate(peer_nss):
                state = d / f"peer{i}"
                done = client(state, "enroll", "--server", api_url, "--ca", str(d / "ca.pem"),
                              "--token", api.token_for(interface_id), "--name", f"p{i}",
                              "--netns", ns)  # fmt: skip
                if done.returncode != 0:
                    raise RuntimeError(f"enroll: {done.stderr.strip()}")
                shown = status(state)
                peers.append({"ns": ns, "state": state, "key": shown["public_key"],
                              "address": shown["addresses"][0].split("/")[0],
                              "router": ns.replace("ely-bdp", "ely-bdr")})  # fmt: skip
            try:
                with (
                    follower(peers[0]["state"], d / "run-a.log"),
                    follower(peers[1]["state"], d / "run-b.log"),
                ):
                    figures = measure(api, interface_id, (hub_ns, hub_state / "hubs" / HUB), peers)
            finally:
                devices = WireguardGo(hub_state / "hubs" / HUB, hub_ns)
                for name in devices.names():
                    devices.stop(name)
    return figures


class JoinFollower(Follower):
    """A light follower that holds its whole config and takes deltas (as ``run`` does)."""

    config: dict[str, Any]

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(
            self.host, self.port, ssl=self.context, server_hostname=self.host
        )
        self.config = await self.get("")
        self.version = self.config["version"]

    async def wait_for(self, key: str) -> None:
        """Follow until an answer lists the peer with public ``key``; note when it came (the
        answers are applied afterwards, by ``check``: this one process plays 1,000 clients)."""
        self.answers: list[dict[str, Any]] = []
        while True:
            self.waiting.set()
            body = await self.get(f"?version={self.version}&wait={WAIT_S}&delta=true")
            arrived = time.time()
            self.answers.append(body)
            self.version = body["version"]
            listed = body["direct_peers"]["upsert"] if "base" in body else body["direct_peers"]
            if any(p["public_key"] == key for p in listed):
                self.changed_at = arrived
                return

    def check(self, key: str) -> None:
        """The answers, applied in turn to the config held, lead to one listing ``key``."""
        for body in self.answers:
            whole = apply_delta(self.config, body) if "base" in body else body
            if whole is None:
                raise RuntimeError(f"the delta to {body['version']} did not apply")
            self.config = whole
        assert any(p["public_key"] == key for p in self.config["direct_peers"])


def all_talk(url: str) -> None:
    """Every peer tagged ``all``; the interface direct, its policy ``tag:all → tag:all``."""
    policy = policy_to_json(parse_policy(ALL_TALK, known_tags={"all"}, known_peers=set()))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE peers SET tags = '{all}'")
        conn.execute("UPDATE interfaces SET direct = true, policy = %s", (Jsonb(policy),))


def cpu_s(root_pid: int) -> float:
    """CPU time of a process and its children so far (the gunicorn master and workers)."""
    out = subprocess.run(["ps", "-o", "pid=,ppid=", "-e"], capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    rows = [tuple(int(x) for x in line.split()) for line in out.splitlines() if line.strip()]
    family = {root_pid}
    for _ in range(3):
        family |= {pid for pid, ppid in rows if ppid in family}
    total = 0
    for pid in family:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def wait_quiet(root_pid: int, timeout: float = 120) -> None:
    """Until the API spends under 5% of a CPU over a second: its followers all wait."""
    deadline = time.monotonic() + timeout
    last = cpu_s(root_pid)
    while time.monotonic() < deadline:
        time.sleep(1)
        now = cpu_s(root_pid)
        if now - last < 0.05:
            return
        last = now
    raise TimeoutError("the API did not go quiet")


async def follow_a_join(base: str, contexts: list[Any], url: str, api_root: int) -> dict[str, Any]:
    host, port = base.removeprefix("https://").split(":")
    followers = [JoinFollower(host, int(port), c) for c in contexts]
    await connect_all(followers)
    whole = followers[0].received
    key = random_key()
    tasks = [asyncio.create_task(f.wait_for(key)) for f in followers]
    await asyncio.gather(*(f.waiting.wait() for f in followers))
    await asyncio.sleep(2)
    await asyncio.to_thread(wait_quiet, api_root)  # every request reached the API and waits
    before = [f.received for f in followers]
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        iface = conn.execute("SELECT id FROM interfaces").fetchone()
        assert iface is not None
        with conn.transaction():
            create_peer(conn, iface["id"], "joiner", key, (), None, "bench", tags=("all",))
        joined_at = time.time()
    done, pending = await asyncio.wait(tasks, timeout=60)
    for t in pending:
        t.cancel()
    for t in done:
        t.result()
    for f in followers:
        f.close()
        f.check(key)
    delays = [f.changed_at - joined_at for f in followers if f.changed_at is not None]
    got = [f.received - b for f, b in zip(followers, before, strict=True)]
    return {
        "join_followers": len(followers),
        "join_reached": len(delays),
        "join_fanout_1000_p50_s": round(percentile(delays, 0.5), 3),
        "join_fanout_1000_p99_s": round(percentile(delays, 0.99), 3),
        "join_delta_bytes_1000": max(got),
        "join_delta_bytes_1000_p50": round(percentile([float(g) for g in got], 0.5)),
        "join_whole_config_bytes_1000": whole,
    }


def join_fanout() -> dict[str, Any]:
    """``JOIN_FOLLOWERS`` peers following one direct interface (all may talk); one joins."""
    with (
        throwaway_database() as url,
        throwaway_redis_prefix() as prefix,
        tempfile.TemporaryDirectory() as tmp,
    ):
        d = Path(tmp)
        settings = tls_settings(url, d, prefix)
        contexts = peers_with_certificates(url, d, JOIN_FOLLOWERS)
        all_talk(url)
        pids: list[int] = []
        with api_server(settings, d, pids) as base:
            return asyncio.run(follow_a_join(base, contexts, url, pids[0]))


def main() -> None:
    if sys.argv[1:] == ["join"]:
        print(json.dumps(join_fanout(), indent=2))
        return
    if shutil.which("iperf3") is None:
        sys.exit("bench.direct needs iperf3 (make deps installs it)")
    d = Path(tempfile.mkdtemp(prefix="ely-bd-", dir="/tmp"))
    try:
        with (
            throwaway_database() as url,
            throwaway_underlay(1, UNDERLAY) as (hub_ns,),
            homes(hub_ns) as peer_nss,
        ):
            figures = run(url, hub_ns, peer_nss, d)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    figures |= join_fanout()
    figures["goals"] = {
        "direct_established_p50_s": 5.0,
        "fallback_s": 10.0,
        "join_fanout_1000_p99_s": 2.0,
        "join_delta_bytes_1000": 2048,
    }
    write_result("direct", figures)


if __name__ == "__main__":
    main()

"""Many hubs, one network: hub-a and hub-b (later hub-c), each with its own hub worker in its
own namespace on one underlay bridge, meshed through the API; peers on each hub follow their
configs with ``elysium-client run``. Real API, workers, beat, wireguard-go and nftables;
every packet stays inside the namespaces this module makes.

::

    LAN a 192.168.50.10 ── hub-a (wg0 10.61.0.0/24) ─┐            ┌─ peers A1 (ops), A2
                                                      ├─ underlay ─┤
    LAN b 192.168.60.10 ── hub-b (wg0 10.62.0.0/24) ─┤  elymesh   ├─ peer B (laptop)
                           hub-c (wg0 10.63.0.0/24) ─┘            └─ peer C (joins last)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests

from elysium.settings import Settings
from tests.api.conftest import Pki, free_port
from tests.client.conftest import ApiServer, run_client, stop_devices
from tests.client.test_follow import start_follower
from tests.netns import Topology, can_run, in_ns, ping
from tests.stack import Process, elysium_command, settings_env, wait_for

pytestmark = pytest.mark.netns

MESH_PORT = 51900
LAN_A, LAN_B = "192.168.50.10", "192.168.60.10"
NETWORKS = {"hub-a": "10.61.0.0/24", "hub-b": "10.62.0.0/24", "hub-c": "10.63.0.0/24"}
LANS = {"hub-a": "192.168.50.0/24", "hub-b": "192.168.60.0/24"}
STALE_AFTER_S = 3


@dataclass
class Peer:
    ns: str
    state: Path
    address: str
    follower: Process


@dataclass
class Hub:
    name: str
    ns: str
    ip: str
    state_dir: Path
    interface_id: int
    worker: Process


@dataclass
class Mesh:
    api: ApiServer
    topology: Topology
    tmp: Path
    env: dict[str, str]
    hubs: dict[str, Hub] = field(default_factory=dict)
    peers: dict[str, Peer] = field(default_factory=dict)
    processes: list[Process] = field(default_factory=list)
    metrics_ports: dict[str, int] = field(default_factory=lambda: {"hub-a": free_port()})

    def start_worker(self, name: str, ns: str, state_dir: Path) -> Process:
        args = ["hub-worker", "--hub", name, "--netns", ns, "--state-dir", str(state_dir)]
        log = self.tmp / f"{name}-worker.log"
        env = {**self.env, "ELYSIUM_METRICS_PORT": str(self.metrics_ports.get(name, 0))}
        process = Process(elysium_command(*args), env, log)
        self.processes.append(process)
        return process

    def add_hub(self, name: str, ns: str, ip: str) -> Hub:
        self.api.call("POST", "/v1/hubs", json={"name": name, "endpoint": ip})
        state_dir = self.tmp / name
        worker = self.start_worker(name, ns, state_dir)
        made = self.api.call(
            "POST",
            f"/v1/hubs/{name}/interfaces",
            json={"name": "wg0", "network": NETWORKS[name], "listen_port": 51820},
        )
        interface_id = int(made["interface_id"])
        self.api.wait_job(made["job_id"])
        body: dict[str, Any] = {"routes": [LANS[name]]} if name in LANS else {}
        if body:
            self.api.wait_job(
                self.api.call("PATCH", f"/v1/interfaces/{interface_id}", json=body)["job_id"]
            )
        self.put_policy(interface_id, [])
        hub = self.hubs[name] = Hub(name, ns, ip, state_dir, interface_id, worker)
        return hub

    def put_policy(self, interface_id: int, rules: list[dict[str, Any]]) -> None:
        body = {"default": "accept", "rules": rules}
        sub = self.api.call("PUT", f"/v1/interfaces/{interface_id}/policy", json=body)
        self.api.wait_job(sub["job_id"])

    def enroll(self, label: str, hub: str, ns: str, tags: list[str]) -> Peer:
        token = self.api.call(
            "POST",
            f"/v1/interfaces/{self.hubs[hub].interface_id}/enrollment-tokens",
            json={"ttl_seconds": 600, "tags": tags},
        )["token"]
        state = self.tmp / f"peer-{label}"
        args = ["--server", self.api.url, "--ca", str(self.api.ca), "--token", token]
        run = run_client("enroll", *args, "--name", label, "--netns", ns, state_dir=state)
        assert run.returncode == 0, run.stderr
        follower = start_follower(state, self.tmp / f"follow-{label}.log")
        self.processes.append(follower)
        address = json.loads((state / "client.json").read_text())["config"]["address"]
        peer = self.peers[label] = Peer(ns, state, address, follower)
        return peer

    def join(self, hub: str, workers: set[str] | None = None) -> list[dict[str, Any]]:
        """Mesh ``hub``; wait for the link jobs of that round (those on ``workers``' hubs,
        by default all) and return them, each with its ``hub`` and ``peer_hub``."""
        joined = self.api.call("PUT", f"/v1/hubs/{hub}/mesh", json={"listen_port": MESH_PORT})
        return [
            {**ref, **self.api.call("GET", f"/v1/jobs/{ref['job_id']}", params={"wait": 30})}
            for ref in joined["jobs"]
            if workers is None or ref["hub"] in workers
        ]

    def mesh_view(self, hub: str) -> dict[str, Any]:
        return self.api.call("GET", f"/v1/hubs/{hub}")["mesh"]


def reaches(ns: str, address: str, timeout: float = 20) -> bool:
    """``address`` answers a ping from ``ns`` within ``timeout`` (configs follow, links
    handshake): polled, so the time is measured rather than spent."""
    try:
        wait_for(lambda: ping(ns, address, tries=1), timeout, f"{ns} -> {address}", 0.3)
    except TimeoutError:
        return False
    return True


@pytest.fixture(scope="module")
def mesh(
    api_server: ApiServer,
    api_pki: Pki,
    settings: Settings,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Mesh]:
    reason = can_run()
    if reason:
        pytest.fail(f"network namespaces: {reason}")
    topo = Topology(peer_count=4).create()
    tmp = tmp_path_factory.mktemp("mesh")
    env = settings_env(
        settings,
        ELYSIUM_TLS_CA=str(api_pki.ca),
        ELYSIUM_CA_KEY=str(api_pki.ca_key),
        ELYSIUM_HEARTBEAT_INTERVAL_S="1",
        ELYSIUM_LIVENESS_INTERVAL_S="1",
        ELYSIUM_HUB_STALE_AFTER_S=str(STALE_AFTER_S),
    )
    m = Mesh(api_server, topo, tmp, env)
    try:
        for name, args in (
            ("control-worker", ["control-worker", "--concurrency", "1"]),
            ("beat", ["beat"]),
        ):
            m.processes.append(Process(elysium_command(*args), env, tmp / f"{name}.log"))
        hub_b_ns, hub_b_ip = topo.add_hub(2)
        topo.add_behind_hub("lana", "192.168.50.1/24", f"{LAN_A}/24", route=True)
        topo.add_behind_hub("lanb", "192.168.60.1/24", f"{LAN_B}/24", route=True, hub=hub_b_ns)
        m.add_hub("hub-a", topo.hub, topo.hub_ip)
        m.add_hub("hub-b", hub_b_ns, hub_b_ip)
        m.enroll("a1", "hub-a", topo.peers[0], ["ops"])
        m.enroll("a2", "hub-a", topo.peers[1], ["ops"])
        m.enroll("b", "hub-b", topo.peers[2], ["laptop"])
        assert m.join("hub-a") == []
        jobs = m.join("hub-b")
        assert sorted(j["status"] for j in jobs) == ["succeeded", "succeeded"], jobs
        yield m
    finally:
        for process in reversed(m.processes):
            process.stop()
        for peer in m.peers.values():
            run_client("down", state_dir=peer.state)
        for hub in m.hubs.values():
            stop_devices(hub.state_dir / "hubs" / hub.name, hub.ns)
        topo.destroy()


def test_a_peer_reaches_a_peer_and_the_lan_behind_another_hub(mesh: Mesh) -> None:
    a1, b = mesh.peers["a1"], mesh.peers["b"]
    assert reaches(a1.ns, b.address)  # after a1's follower took the route across the mesh
    assert reaches(a1.ns, LAN_B)
    assert reaches(b.ns, a1.address)
    assert reaches(b.ns, LAN_A)
    config = json.loads((a1.state / "client.json").read_text())["config"]
    assert {"10.62.0.0/24", "192.168.60.0/24"} <= set(config["mesh_routes"])
    assert "10.62.0.0/24" in in_ns(a1.ns, "ip", "route").stdout

    def handshake() -> object:
        links = mesh.mesh_view("hub-a")["links"]
        return links and links[0]["last_handshake_at"]

    wait_for(handshake, 15, "hub-a's liveness to report its link's handshake")
    assert mesh.mesh_view("hub-a")["links"][0]["hub"] == "hub-b"
    scrape = f"http://127.0.0.1:{mesh.metrics_ports['hub-a']}/metrics"
    text = requests.get(scrape, timeout=5).text
    line = 'elysium_mesh_link_last_handshake_timestamp_seconds{peer_hub="hub-b"}'
    assert line in text and float(text.split(line)[1].split()[0]) > 0


def test_a_deny_rule_across_hubs_stops_that_traffic(mesh: Mesh) -> None:
    a1, b = mesh.peers["a1"], mesh.peers["b"]
    hub_a = mesh.hubs["hub-a"]
    try:
        # tag:laptop names a peer of hub-b: hub-a's set holds its address
        mesh.put_policy(
            hub_a.interface_id, [{"from": "tag:ops", "to": "tag:laptop", "action": "drop"}]
        )
        assert not ping(a1.ns, b.address, tries=2)
        assert reaches(a1.ns, LAN_B)  # the rule names peers, not the LAN behind hub-b
        assert reaches(b.ns, a1.address)  # laptop -> ops is not denied; replies pass
    finally:
        mesh.put_policy(hub_a.interface_id, [])
    assert reaches(a1.ns, b.address)


def test_a_link_the_hub_cannot_reach_fails_alone(mesh: Mesh, database_url: str) -> None:
    a1, b = mesh.peers["a1"], mesh.peers["b"]
    mesh.api.call("POST", "/v1/hubs", json={"name": "hub-x", "endpoint": "203.0.113.99"})
    with psycopg.connect(database_url, autocommit=True) as conn:  # as its worker would
        conn.execute(
            "UPDATE hubs SET mesh_public_key = %s WHERE name = 'hub-x'",
            ("xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=",),
        )
    try:
        jobs = mesh.join("hub-x", workers={"hub-a", "hub-b"})  # hub-x has no worker
        on_a = next(j for j in jobs if j["hub"] == "hub-a")
        assert on_a["error"]["code"] == "mesh_peer_unreachable", on_a
        assert "203.0.113.99" in on_a["error"]["message"]
        links = {link["hub"]: link for link in mesh.mesh_view("hub-a")["links"]}
        assert links["hub-x"]["error"]["code"] == "mesh_peer_unreachable"
        assert reaches(a1.ns, b.address)  # the other link is as it was
    finally:
        mesh.api.call("DELETE", "/v1/hubs/hub-x/mesh")


def test_a_killed_hub_is_stale_the_others_keep_working_and_it_converges_on_return(
    mesh: Mesh,
) -> None:
    a1, a2, b = mesh.peers["a1"], mesh.peers["a2"], mesh.peers["b"]
    hub_b = mesh.hubs["hub-b"]
    hub_b.worker.kill()  # SIGKILL, as a crash would
    in_ns(hub_b.ns, "ip", "link", "del", "elymesh")  # and its mesh device is lost with it
    wait_for(lambda: mesh.api.call("GET", "/v1/hubs/hub-b")["stale"], STALE_AFTER_S + 10, "stale")
    assert reaches(a1.ns, a2.address)
    assert reaches(a1.ns, LAN_A)
    assert not ping(a1.ns, b.address, tries=1)
    hub_b.worker = mesh.start_worker("hub-b", hub_b.ns, hub_b.state_dir)
    assert reaches(a1.ns, b.address, timeout=30)  # links and routes converged at start
    assert reaches(b.ns, LAN_A)
    wait_for(lambda: not mesh.api.call("GET", "/v1/hubs/hub-b")["stale"], 10, "hub-b live")


def test_a_third_hub_joins_and_all_three_reach_each_other(mesh: Mesh) -> None:
    topo = mesh.topology
    ns, ip = topo.add_hub(3)
    mesh.add_hub("hub-c", ns, ip)
    c = mesh.enroll("c", "hub-c", topo.peers[3], [])
    jobs = mesh.join("hub-c")
    assert len(jobs) == 4 and all(j["status"] == "succeeded" for j in jobs), jobs
    a1, b = mesh.peers["a1"], mesh.peers["b"]
    for src, dst in ((a1, c), (c, a1), (b, c), (c, b), (a1, b)):
        assert reaches(src.ns, dst.address), (src.ns, dst.address)
    assert reaches(c.ns, LAN_A) and reaches(c.ns, LAN_B)

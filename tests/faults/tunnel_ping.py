"""Two peers that ping each other through the hub while a fault test breaks the control plane.

Each peer is enrolled through the API like any other, its WireGuard device (wireguard-go)
made in a peer namespace of the test's topology from the job's result. The interface's policy
lets the first ping the second (replies pass as an established flow); ``ping`` runs from the
first to the second's tunnel address, through the hub, 10 times a second for as long as the
fault lasts. The hub forwards without the control plane, so not one ping may be lost.
"""

from __future__ import annotations

import re
import secrets
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from dataplane.base import InterfaceSpec, PeerSpec
from dataplane.uapi import UapiDriver
from elysium.keys import public_key
from tests.faults.conftest import MIN_PINGS, FaultStack
from tests.netns import ping
from tests.stack import Process

INTERVAL_S = "0.1"
ENOUGH_TIMEOUT_S = 30.0  # for MIN_PINGS replies; then it stops anyway and the judge says why
_SUMMARY = re.compile(r"(\d+) packets transmitted")
_REPLY = re.compile(r"icmp_seq=(\d+)")


class TunnelPeer:
    """One enrolled peer with its own device in ``ns``."""

    def __init__(self, stack: FaultStack, token: str, ns: str, work: Path) -> None:
        self.ns = ns
        self.dir = work
        self.dir.mkdir(mode=0o700)
        private = stack.ledger.private_key()
        self.public_key = public_key(private)
        key_file = self.dir / "wg0.key"
        key_file.write_text(private + "\n")
        key_file.chmod(0o600)
        self.driver = UapiDriver(self.dir, ns)
        config = self._enroll(stack, token)
        self.peer_id = int(config["peer_id"])
        self.address = str(config["address"])
        self.driver.ensure_interface(
            InterfaceSpec("wg0", key_file, None, tuple(config["addresses"]))
        )
        hub = PeerSpec(
            config["hub_public_key"],
            tuple(config["allowed_ips"]),
            endpoint=config["endpoint"],
            keepalive=5,
        )
        self.driver.converge("wg0", [hub])

    def _enroll(self, stack: FaultStack, token: str) -> dict[str, Any]:
        body = {
            "token": token,
            "name": f"ping-{secrets.token_hex(3)}",
            "public_key": self.public_key,
        }
        r = stack.client().post("/v1/enroll", json=body)
        assert r.status_code == 202, r.text
        assert stack.admin is not None
        job = stack.admin.get(f"/v1/jobs/{r.json()['job_id']}", params={"wait": 30}).json()
        assert job["status"] == "succeeded", job
        return dict(job["result"])

    def close(self) -> None:
        self.driver.remove_interface("wg0")
        self.driver.close()


class TunnelPing:
    """Peers in ``stack.topology.peers[0]`` and ``[1]``, the first pinging the second."""

    PEERS = 2  # enrollment token uses it takes

    def __init__(self, stack: FaultStack, token: str, work: Path) -> None:
        self.dir = work / "tunnel-peers"
        self.dir.mkdir(mode=0o700)
        self.peers: list[TunnelPeer] = []
        for i, ns in enumerate(stack.topology.peers[: self.PEERS]):
            self.peers.append(TunnelPeer(stack, token, ns, self.dir / f"peer{i}"))
        self.public_keys = {p.public_key for p in self.peers}
        self.process: Process | None = None
        self.source, self.target = self.peers
        self._allow_ping(stack)
        assert ping(self.source.ns, self.target.address), "no first ping through the hub"

    def _allow_ping(self, stack: FaultStack) -> None:
        assert stack.admin is not None
        rule = {
            "from": f"peer:{self.source.peer_id}",
            "to": f"peer:{self.target.peer_id}",
            "proto": "icmp",
            "action": "accept",
        }
        r = stack.admin.put(
            f"/v1/interfaces/{stack.interface_id}/policy",
            json={"default": "drop", "rules": [rule]},
        )
        assert r.status_code == 202, r.text
        job = stack.admin.get(f"/v1/jobs/{r.json()['job_id']}", params={"wait": 30}).json()
        assert job["status"] == "succeeded", job

    def start(self) -> None:
        args = ["ip", "netns", "exec", self.source.ns, "ping", "-n", "-i", INTERVAL_S]
        self.process = Process(
            [*args, self.target.address], {"PATH": "/usr/sbin:/usr/bin:/bin"}, self.dir / "ping.log"
        )

    def stop(self) -> tuple[int, int]:
        """Stop pinging; (sent, lost). The last ping may still be under way when ping is
        stopped: it is not counted. Pings go on until ``MIN_PINGS`` have been sent."""
        assert self.process is not None
        # Until a reply past MIN_PINGS came back, not for a time: ping starting late on a busy
        # machine sent 19 in the time 20 take (a lost ping still fails the judge, not this).
        deadline = time.monotonic() + ENOUGH_TIMEOUT_S
        while time.monotonic() < deadline:
            if max(map(int, _REPLY.findall(self.process.log())), default=0) > MIN_PINGS:
                break
            time.sleep(float(INTERVAL_S))
        self.process.signal_group(signal.SIGINT)  # ping prints its summary on SIGINT
        try:
            self.process.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.process.stop()
        found = _SUMMARY.search(self.process.log())
        assert found, self.process.log()[-500:]
        sent = int(found.group(1)) - 1
        answered = {int(seq) for seq in _REPLY.findall(self.process.log())}
        return sent, sum(1 for seq in range(1, sent + 1) if seq not in answered)

    def close(self) -> None:
        if self.process is not None and self.process.alive():
            self.process.kill()
        for peer in self.peers:
            peer.close()

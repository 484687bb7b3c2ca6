"""A peer that pings the hub through its tunnel while a fault test breaks the control plane.

The peer is enrolled through the API like any other, its WireGuard device (wireguard-go)
made in a peer namespace of the test's topology from the job's result; ``ping`` runs there
10 times a second for as long as the fault lasts. The hub forwards without the control
plane, so not one ping may be lost.
"""

from __future__ import annotations

import re
import secrets
import signal
import subprocess
from pathlib import Path

from dataplane.base import InterfaceSpec, PeerSpec
from dataplane.uapi import UapiDriver
from elysium.keys import public_key
from tests.faults.conftest import FaultStack
from tests.netns import ping
from tests.stack import Process

INTERVAL_S = "0.1"
_SUMMARY = re.compile(r"(\d+) packets transmitted")
_REPLY = re.compile(r"icmp_seq=(\d+)")


class TunnelPing:
    """One enrolled peer in ``stack.topology.peers[0]`` pinging the hub's tunnel address."""

    def __init__(self, stack: FaultStack, token: str, work: Path) -> None:
        self.stack = stack
        self.dir = work / "tunnel-peer"
        self.dir.mkdir(mode=0o700)
        self.ns = stack.topology.peers[0]
        private = stack.ledger.private_key()
        self.public_key = public_key(private)
        self.key_file = self.dir / "wg0.key"
        self.key_file.write_text(private + "\n")
        self.key_file.chmod(0o600)
        self.driver = UapiDriver(self.dir, self.ns)
        self.process: Process | None = None
        self.hub_address = ""
        self._enroll_and_connect(token)

    def _enroll_and_connect(self, token: str) -> None:
        api = self.stack.client()
        body = {
            "token": token,
            "name": f"ping-{secrets.token_hex(3)}",
            "public_key": self.public_key,
        }
        r = api.post("/v1/enroll", json=body)
        assert r.status_code == 202, r.text
        assert self.stack.admin is not None
        job = self.stack.admin.get(f"/v1/jobs/{r.json()['job_id']}", params={"wait": 30}).json()
        assert job["status"] == "succeeded", job
        config = job["result"]
        self.driver.ensure_interface(
            InterfaceSpec("wg0", self.key_file, None, tuple(config["addresses"]))
        )
        hub = PeerSpec(
            config["hub_public_key"],
            tuple(config["allowed_ips"]),
            endpoint=config["endpoint"],
            keepalive=5,
        )
        self.driver.converge("wg0", [hub])
        self.hub_address = config["hub_addresses"][0].split("/")[0]
        assert ping(self.ns, self.hub_address), "the tunnel does not carry a first ping"

    def start(self) -> None:
        args = ["ip", "netns", "exec", self.ns, "ping", "-n", "-i", INTERVAL_S, self.hub_address]
        self.process = Process(args, {"PATH": "/usr/sbin:/usr/bin:/bin"}, self.dir / "ping.log")

    def stop(self) -> tuple[int, int]:
        """Stop pinging; (sent, lost). The last ping may still be under way when ping is
        stopped: it is not counted."""
        assert self.process is not None
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
        self.driver.remove_interface("wg0")
        self.driver.close()

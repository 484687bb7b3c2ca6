"""Dataplane benchmark: the wireguard-go UAPI driver against ``wg`` on a 10,000-peer interface.

Run as root: ``.venv/bin/python -m bench.dataplane``. Everything happens inside one throwaway
network namespace; results go to ``bench/results/dataplane.json``.

``wg`` finds a device by ``/run/wireguard/<if>.sock``; our socket lives under the driver's
state directory, so each ``wg`` run is ``ip netns exec NS sh -c 'mount --bind DIR
/run/wireguard && wg ...'``. The cost of that wrapper (measured with ``true``) is subtracted
from the ``wg`` figures, which makes the baselines a little faster than they really are here.

``dump_10k_s`` dumps an idle device again and again, as the liveness loop does: the driver
reuses the stats of every peer whose text did not change. ``dump_uncached_10k_s`` is the
first dump of a device (every peer parsed), against the same ``wg`` runs.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.scaffold import RESULTS_DIR, size
from dataplane import InterfaceSpec, PeerSpec
from dataplane.uapi import UapiDriver
from elysium.keys import generate_private_key

PEERS = size(10_000, 50)
ADD_SAMPLES = size(1_000, 10)
WG_SET_LOOP = size(500, 10)
RESULTS = RESULTS_DIR / "dataplane.json"


def random_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def host_peer(i: int, key: str) -> PeerSpec:
    return PeerSpec(key, (f"10.{100 + i // 65536}.{(i // 256) % 256}.{i % 256}/32",))


def median_time(
    fn: Callable[[], object],
    repeat: int,
    before: Callable[[], object] | None = None,
) -> float:
    samples = []
    for _ in range(repeat):
        if before is not None:
            before()
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def paired(
    ours: Callable[[], object],
    theirs: Callable[[], object],
    repeat: int,
    before: Callable[[], object] | None = None,
) -> tuple[float, float]:
    """Median times of two contenders, run alternately."""
    a: list[float] = []
    b: list[float] = []
    for _ in range(repeat):
        for fn, samples in ((ours, a), (theirs, b)):
            if before is not None:
                before()
            start = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - start)
    return statistics.median(a), statistics.median(b)


class Bench:
    def __init__(self, ns: str, state: Path) -> None:
        self.ns = ns
        self.state = state
        self.driver = UapiDriver(state, ns)
        self.private_key = generate_private_key()
        (state / "wg0.key").write_text(self.private_key + "\n")
        self.spec = InterfaceSpec("wg0", state / "wg0.key", 51820, ("10.99.0.1/16",))
        self.keys = [random_key() for _ in range(PEERS)]
        self.peers = [host_peer(i, k) for i, k in enumerate(self.keys)]

    def fresh(self) -> None:
        """An empty wg0, as a new device."""
        self.driver.remove_interface("wg0")
        self.driver.ensure_interface(self.spec)

    def wg(self, command: str) -> None:
        sock_dir = self.driver.processes.dir
        subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                self.ns,
                "sh",
                "-c",
                f'mount --bind "{sock_dir}" /run/wireguard && {command}',
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def write_conf(self, path: Path, peers: list[PeerSpec]) -> None:
        lines = ["[Interface]", f"PrivateKey = {self.private_key}", "ListenPort = 51820"]
        for p in peers:
            lines += ["[Peer]", f"PublicKey = {p.public_key}", f"AllowedIPs = {p.allowed_ips[0]}"]
        path.write_text("\n".join(lines) + "\n")

    def run(self) -> dict[str, float]:
        out: dict[str, float] = {}
        overhead = median_time(lambda: self.wg("true"), 7)
        out["wg_exec_overhead_s"] = overhead

        conf = self.state / "wg0.conf"
        self.write_conf(conf, self.peers)
        # Alternate ours and wg's run by run, so load from elsewhere hits both alike.
        ours, theirs = paired(
            lambda: self.driver.converge("wg0", self.peers),
            lambda: self.wg(f"wg setconf wg0 {conf}"),
            repeat=5,
            before=self.fresh,
        )
        out["converge_10k_s"] = ours
        out["wg_setconf_10k_s"] = theirs - overhead
        out["wg_setconf_10k_with_exec_s"] = theirs
        out["converge_ratio"] = out["converge_10k_s"] / out["wg_setconf_10k_s"]

        self.fresh()
        self.driver.converge("wg0", self.peers)
        out["converge_unchanged_10k_s"] = median_time(
            lambda: self.driver.converge("wg0", self.peers), 3
        )
        ours, theirs = paired(
            lambda: self.driver.dump("wg0"),
            lambda: self.wg("wg show wg0 dump > /dev/null"),
            repeat=15,
        )
        out["dump_10k_s"] = ours
        out["wg_show_dump_10k_s"] = theirs - overhead
        out["wg_show_dump_10k_with_exec_s"] = theirs
        out["dump_ratio"] = out["dump_10k_s"] / out["wg_show_dump_10k_s"]
        # The dump above reuses the stats of peers whose text did not change (an idle device:
        # all of them after the first dump); the first dump of a device parses every peer.
        ours, theirs = paired(
            lambda: self.driver.dump("wg0"),
            lambda: self.wg("wg show wg0 dump > /dev/null"),
            repeat=15,
            before=self.driver.forget_dumps,
        )
        out["dump_uncached_10k_s"] = ours
        out["dump_uncached_ratio"] = ours / (theirs - overhead)

        lat = []
        for i in range(ADD_SAMPLES):
            peer = host_peer(PEERS + i, random_key())
            start = time.perf_counter()
            self.driver.apply_peers("wg0", [peer], [])
            lat.append(time.perf_counter() - start)
        lat.sort()
        out["add_one_p50_ms"] = lat[len(lat) // 2] * 1000
        out["add_one_p99_ms"] = lat[int(len(lat) * 0.99)] * 1000

        self.fresh()
        self.driver.converge("wg0", self.peers)
        extra = [host_peer(PEERS + ADD_SAMPLES + i, random_key()) for i in range(3)]

        def syncconf_add(i: int) -> None:
            self.write_conf(conf, [*self.peers, *extra[: i + 1]])
            self.wg(f"wg syncconf wg0 {conf}")

        samples = []
        for i in range(3):
            start = time.perf_counter()
            syncconf_add(i)
            samples.append(time.perf_counter() - start - overhead)
        out["syncconf_add_one_s"] = statistics.median(samples)

        self.fresh()
        start = time.perf_counter()
        for p in self.peers:
            self.driver.apply_peers("wg0", [p], [])
        out["single_adds_per_peer_ms"] = (time.perf_counter() - start) / PEERS * 1000

        self.fresh()
        script = self.state / "wgset.sh"
        script.write_text(
            "\n".join(
                f"wg set wg0 peer {p.public_key} allowed-ips {p.allowed_ips[0]}"
                for p in self.peers[:WG_SET_LOOP]
            )
            + "\n"
        )
        start = time.perf_counter()
        self.wg(f"sh {script}")
        out["wg_set_loop_per_peer_ms"] = (
            (time.perf_counter() - start - overhead) / WG_SET_LOOP * 1000
        )
        return out


def main() -> None:
    ns = f"ely-bench-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    bench: Bench | None = None
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        with tempfile.TemporaryDirectory(prefix="elysium-bench-") as tmp:
            bench = Bench(ns, Path(tmp))
            bench.fresh()
            results = bench.run()
            bench.driver.remove_interface("wg0")
    finally:
        if bench is not None:
            with contextlib.suppress(Exception):
                bench.driver.remove_interface("wg0")
        for pid in subprocess.run(
            ["ip", "netns", "pids", ns], capture_output=True, text=True
        ).stdout.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)  # only ours can live in our fresh namespace
        subprocess.run(["ip", "netns", "del", ns], check=False)
    report = {
        "peers": PEERS,
        **{k: round(v, 6) for k, v in results.items()},
        "goals": {"converge_ratio": 1.2, "dump_ratio": 1.2, "add_one_p50_ms": 1.0},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

"""``make compose-up`` / ``make compose-down``: compose.yaml for real, on podman.

Up: the images (from Debian's packages only: the base image is made here with mmdebstrap
where no registry is reachable), then the stack with podman-compose inside a network namespace
of its own (``elysium-podman``: netavark's bridge, rules and forwarding stay in it), then a
demo: wg0 on the containerised hub, a peer in its own namespace (``elysium-cpeer``, a veth away)
enrolled with ``elysium-client``, and its ping through the tunnel. Down: the containers,
volumes, network, certificates, the peer and both namespaces; the images stay for a warm start.

Run: ``.venv/bin/python deploy/containers/stack.py up|down`` (the Makefile does).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "deploy" / "containers"
BIN = Path(sys.executable).parent
STATE = ROOT / ".state" / "compose"
PROJECT = "elysium"
NETNS = "elysium-podman"  # podman and every container network live in here
PEER_NS = "elysium-cpeer"  # the demo peer, a veth away from the hub
HUB_VETH, PEER_VETH = "ely-c-hub", "ely-c-peer"
HUB_ADDRESS, PEER_ADDRESS = "10.213.0.1", "10.213.0.2"
API_PORT = 8443
BASE_IMAGE = "localhost/elysium-debian:bookworm"
IMAGES = {
    "localhost/elysium:latest": "Containerfile",
    "localhost/elysium-postgres:15": "postgres.Containerfile",
    "localhost/elysium-redis:7": "redis.Containerfile",
}
PACKAGES = [  # from Debian: podman with runc (crun fails here), netavark and its firewall driver
    "podman",
    "runc",
    "netavark",
    "aardvark-dns",
    "iptables",  # netavark 1.4 programs the namespace's firewall through iptables (nf_tables)
    "catatonit",
    "mmdebstrap",
]
ENV = {
    **os.environ,
    "CONTAINERS_CONF": str(HERE / "containers.conf"),
    "ELYSIUM_BASE_IMAGE": BASE_IMAGE,
    "ELYSIUM_HUB_ENDPOINT": HUB_ADDRESS,
    "ELYSIUM_API_ADDRESS": HUB_ADDRESS,
    "ELYSIUM_API_PORT": str(API_PORT),
}


class StackError(Exception):
    """One line saying what went wrong and what to do."""


def log(message: str) -> None:
    print(f"compose: {message}", flush=True)


def run(*cmd: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``cmd`` (in network namespace ``ns``: nsenter, as ``ip netns exec`` remounts /sys,
    which breaks runc's cgroup set-up); a failure raises StackError with its last line."""
    full = [*(["nsenter", f"--net=/run/netns/{ns}"] if ns else []), *cmd]
    done = subprocess.run(full, env=ENV, text=True, capture_output=True, check=False)
    if check and done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise StackError(f"{' '.join(cmd[:3])} failed: {last}")
    return done


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run("podman", *args, ns=NETNS, check=check)


def compose(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    command = [str(BIN / "podman-compose"), "-p", PROJECT, "-f", str(ROOT / "compose.yaml")]
    return run(*command, *args, ns=NETNS, check=check)


def container(service: str) -> str:
    return f"{PROJECT}_{service}_1"


# --- preflight ------------------------------------------------------------------------------


def install_missing() -> None:
    status = run("dpkg-query", "-W", "-f", "${Package} ${Status}\n", *PACKAGES, check=False)
    have = {line.split()[0] for line in status.stdout.splitlines() if line.endswith(" installed")}
    missing = [p for p in PACKAGES if p not in have]
    if not missing:
        return
    log(f"installing {' '.join(missing)}")
    run("apt-get", "update", "-qq")
    run("apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing)


def preflight() -> None:
    if os.geteuid() != 0:
        raise StackError("run as root (podman, namespaces and the hub's tunnel need it)")
    if not Path("/dev/net/tun").exists():
        raise StackError("/dev/net/tun is missing: load the tun module (modprobe tun) first")
    install_missing()


# --- namespaces -----------------------------------------------------------------------------


def namespaces() -> list[str]:
    return run("ip", "netns", "list").stdout.split()


def make_namespaces() -> None:
    """The podman namespace and the peer's, joined by a veth pair (hub side 10.213.0.1)."""
    have = namespaces()
    for ns in (NETNS, PEER_NS):
        if ns not in have:
            run("ip", "netns", "add", ns)
            run("ip", "link", "set", "lo", "up", ns=ns)
    if run("ip", "link", "show", HUB_VETH, ns=NETNS, check=False).returncode != 0:
        run("ip", "link", "add", HUB_VETH, "type", "veth", "peer", "name", PEER_VETH, ns=NETNS)
        run("ip", "link", "set", PEER_VETH, "netns", PEER_NS, ns=NETNS)
        run("ip", "addr", "add", f"{HUB_ADDRESS}/24", "dev", HUB_VETH, ns=NETNS)
        run("ip", "link", "set", HUB_VETH, "up", ns=NETNS)
        run("ip", "addr", "add", f"{PEER_ADDRESS}/24", "dev", PEER_VETH, ns=PEER_NS)
        run("ip", "link", "set", PEER_VETH, "up", ns=PEER_NS)


def remove_namespaces() -> None:
    have = namespaces()
    for ns in (PEER_NS, NETNS):
        if ns in have:
            run("ip", "netns", "del", ns)


# --- images ---------------------------------------------------------------------------------


def image_exists(name: str) -> bool:
    return run("podman", "image", "exists", name, check=False).returncode == 0


def make_base_image() -> None:
    """Debian 12 from Debian's mirror (mmdebstrap), imported as BASE_IMAGE; kept for reuse."""
    if image_exists(BASE_IMAGE):
        return
    log(f"making {BASE_IMAGE} from Debian's packages (mmdebstrap)")
    with tempfile.TemporaryDirectory() as tmp:
        tarball = Path(tmp) / "base.tar"
        try:
            run("mmdebstrap", "--variant=apt", "--quiet", "bookworm", str(tarball))
        except StackError as exc:
            why = f"cannot reach Debian's package mirror to make the base ({exc})"
            raise StackError(why) from None
        run("podman", "import", "--change", "CMD=/bin/bash", str(tarball), BASE_IMAGE)


def download_wheels() -> None:
    """requirements.lock's packages as files (pip's host cache), for an offline image build."""
    wheels = HERE / ".wheels"
    lock = ROOT / "requirements.lock"
    stamp = wheels / ".lock"
    if stamp.exists() and stamp.read_text() == lock.read_text():
        return
    log("downloading the locked Python packages for the image")
    for req in (lock, HERE / "requirements-py3112.txt"):
        run(str(BIN / "pip"), "download", "-q", "--no-deps", "--require-hashes",
            "--only-binary=:all:", "-r", str(req), "-d", str(wheels))  # fmt: skip
    stamp.write_text(lock.read_text())


def build_images() -> None:
    """The three images FROM the local base; pip installs offline from the wheels."""
    download_wheels()
    for name, containerfile in IMAGES.items():
        log(f"building {name}")
        # Host network for the build's apt-get only: a build adds no rules or routes.
        run("podman", "build", "--network=host", "-q", "-t", name, "-f", str(HERE / containerfile),
            "--build-arg", f"BASE={BASE_IMAGE}", "--build-arg", "PIP_ARGS=--no-index",
            str(ROOT))  # fmt: skip


# --- the stack ------------------------------------------------------------------------------


def wait(what: str, ready: Callable[[], bool], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise StackError(f"{what} not ready after {timeout:.0f}s; see podman logs")
        time.sleep(0.5)


def finished(service: str) -> None:
    """A one-shot service ended with exit code 0 (podman 4.3 cannot wait for that itself)."""
    code = podman("wait", container(service)).stdout.strip()
    if code != "0":
        tail = podman("logs", "--tail", "1", container(service), check=False).stderr.strip()
        raise StackError(f"{service} exited with {code}: {tail or 'see podman logs'}")


def healthy(service: str) -> bool:
    return podman("healthcheck", "run", container(service), check=False).returncode == 0


def check_port() -> None:
    """The API's port is free in the namespace, unless our API holds it already."""
    running = podman("container", "exists", container("api"), check=False).returncode == 0
    if not running and run("ss", "-Htln", f"sport = :{API_PORT}", ns=NETNS).stdout.strip():
        raise StackError(f"port {API_PORT} is taken in {NETNS}: stop what listens there")


def start_stack() -> None:
    """In the order depends_on says (podman-compose 1.x starts without waiting on conditions)."""
    compose("up", "-d", "--no-build", "--no-deps", "pki")
    finished("pki")
    compose("up", "-d", "--no-build", "--no-deps", "postgres", "redis")
    wait("postgres", lambda: healthy("postgres"))
    wait("redis", lambda: healthy("redis"))
    compose("up", "-d", "--no-build", "--no-deps", "migrate")
    finished("migrate")
    compose("up", "-d", "--no-build", "--no-deps", "api", "control-worker", "beat", "hub-worker")


def volume_path(name: str) -> Path:
    out = podman("volume", "inspect", f"{PROJECT}_{name}").stdout
    return Path(json.loads(out)[0]["Mountpoint"])


def admin_token() -> Path:
    """An admin token made in the API container, saved 0600 (kept while the database is)."""
    path = STATE / "admin.token"
    if path.exists():
        return path
    made = podman("exec", container("api"), "python3", "-m", "cli", "token", "create",
                  "--db", "--scope", "admin", "--name", "compose-admin")  # fmt: skip
    STATE.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.touch(mode=0o600)
    path.write_text(made.stdout.strip().splitlines()[-1] + "\n")
    return path


def demo() -> None:
    """wg0 on hub-a and a peer enrolled by elysium-client whose ping proves the tunnel."""
    ca = volume_path("tls") / "ca.pem"
    url = f"https://{HUB_ADDRESS}:{API_PORT}"
    token = admin_token()
    client_state = STATE / "client"
    made = run(str(BIN / "python"), str(HERE / "provision.py"), url, str(ca), str(token),
               str(client_state), ns=PEER_NS)  # fmt: skip
    enroll_token = made.stdout.strip()
    client = str(BIN / "elysium-client")
    if enroll_token:
        run(client, "enroll", "--server", url, "--token", enroll_token, "--name", "demo-peer",
            "--ca", str(ca), "--interface", "wg0", "--state-dir", str(client_state),
            ns=PEER_NS)  # fmt: skip
    run(client, "up", "--state-dir", str(client_state), ns=PEER_NS)
    wait("the tunnel", lambda: run("ping", "-c1", "-W1", "-n", "10.214.0.1", ns=PEER_NS,
                                   check=False).returncode == 0, timeout=30)  # fmt: skip


def up() -> None:
    preflight()
    make_namespaces()
    check_port()
    make_base_image()
    build_images()
    start_stack()
    demo()
    log(
        f"up. In namespace {NETNS}: postgres, redis, api (:{API_PORT}), control-worker, beat,"
        f" hub-worker (hub-a, wg0 10.214.0.1); the demo peer in {PEER_NS}.\n"
        f"  nsenter --net=/run/netns/{PEER_NS} curl --cacert {volume_path('tls')}/ca.pem"
        f" https://{HUB_ADDRESS}:{API_PORT}/readyz\n"
        f"  nsenter --net=/run/netns/{PEER_NS} ping -c3 10.214.0.1\n"
        f"  podman ps -a --filter label=io.podman.compose.project={PROJECT}"
    )


def down() -> None:
    client_state = STATE / "client"
    if PEER_NS in namespaces() and (client_state / "client.json").exists():
        run(str(BIN / "elysium-client"), "down", "--state-dir", str(client_state), ns=PEER_NS,
            check=False)  # fmt: skip
    if NETNS in namespaces() and shutil.which("podman"):
        compose("down", "-v", check=False)
        podman("network", "rm", "-f", f"{PROJECT}_default", check=False)
        for volume in ("pgdata", "ca", "tls", "hubstate"):
            podman("volume", "rm", "-f", f"{PROJECT}_{volume}", check=False)
    remove_namespaces()
    shutil.rmtree(STATE, ignore_errors=True)
    log("down: containers, volumes, network, certificates and namespaces removed")


def main() -> None:
    action = sys.argv[1] if len(sys.argv) > 1 else ""
    if action not in ("up", "down"):
        raise SystemExit("usage: stack.py up|down")
    try:
        if action == "up":
            try:
                up()
            except BaseException:
                down()  # nothing half-started stays
                raise
        else:
            down()
    except StackError as exc:
        raise SystemExit(f"compose-{action}: {exc}") from None


if __name__ == "__main__":
    main()

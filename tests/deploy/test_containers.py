"""`make compose-up` runs compose.yaml for real on podman and proves the tunnel with a demo
peer; `make compose-down` leaves nothing of the project behind, and the host namespace's
sysctls and firewall as they were.

The tests run in file order on one stack (module fixture): up, what it serves, up again,
down; then a port that is taken.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy" / "containers"))
import stack  # noqa: E402

pytestmark = pytest.mark.timeout(1200)

HOST_SYSCTLS = [
    "net/ipv4/ip_forward",
    "net/ipv6/conf/all/forwarding",
    "net/ipv4/conf/all/route_localnet",
    "net/ipv4/conf/all/send_redirects",
]


def make(target: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "-s", target], cwd=ROOT, text=True, capture_output=True, timeout=1000
    )


def host_state() -> dict[str, str]:
    state = {name: Path("/proc/sys", name).read_text() for name in HOST_SYSCTLS}
    state["nft"] = subprocess.run(
        ["nft", "list", "ruleset"], text=True, capture_output=True, check=True
    ).stdout
    return state


def in_podman_ns(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["nsenter", f"--net=/run/netns/{stack.NETNS}", *cmd],
        text=True,
        capture_output=True,
        env=stack.ENV,
    )


def project_leftovers() -> dict[str, str]:
    """Containers, volumes and networks of the compose project, and its namespaces."""
    label = f"label=io.podman.compose.project={stack.PROJECT}"
    podman = ["podman", "--log-level=error"]
    found = {
        "containers": subprocess.run(
            [*podman, "ps", "-a", "-q", "--filter", label], text=True, capture_output=True
        ).stdout.strip(),
        "volumes": subprocess.run(
            [*podman, "volume", "ls", "-q", "--filter", f"name={stack.PROJECT}_"],
            text=True,
            capture_output=True,
        ).stdout.strip(),
        "networks": subprocess.run(
            [*podman, "network", "ls", "-q", "--filter", f"name={stack.PROJECT}_"],
            text=True,
            capture_output=True,
            env=stack.ENV,
        ).stdout.strip(),
        "namespaces": " ".join(
            ns for ns in stack.namespaces() if ns in (stack.NETNS, stack.PEER_NS)
        ),
        "state": str(stack.STATE) if stack.STATE.exists() else "",
    }
    return {what: listed for what, listed in found.items() if listed}


@pytest.fixture(scope="module")
def before() -> dict[str, str]:
    return host_state()


@pytest.fixture(scope="module")
def up(before: dict[str, str]) -> Iterator[str]:
    done = make("compose-up")
    try:
        assert done.returncode == 0, done.stdout + done.stderr
        yield done.stdout
    finally:
        make("compose-down")


def test_compose_up_ends_with_the_demo_ping(up: str) -> None:
    assert "compose: up." in up
    ping = subprocess.run(
        ["nsenter", f"--net=/run/netns/{stack.PEER_NS}", "ping", "-c1", "-W2", "10.214.0.1"],
        capture_output=True,
    )
    assert ping.returncode == 0


def test_readyz_answers_through_the_published_port(up: str) -> None:
    ca = stack.volume_path("tls") / "ca.pem"
    got = in_podman_ns(
        sys.executable,
        "-c",
        "import requests, sys; r = requests.get(sys.argv[1], verify=sys.argv[2], timeout=10);"
        " print(r.status_code, r.text)",
        f"https://127.0.0.1:{stack.API_PORT}/readyz",
        str(ca),
    )
    assert got.stdout.startswith("200"), got.stdout + got.stderr
    assert json.loads(got.stdout.split(" ", 1)[1])["status"] == "ok"


def test_the_api_container_holds_no_ca_key(up: str) -> None:
    ca_key = (stack.volume_path("ca") / "ca.key").read_bytes()
    api = stack.container("api")
    mounts = json.loads(stack.podman("inspect", api).stdout)[0]["Mounts"]
    assert [m["Name"] for m in mounts if m["Type"] == "volume"] == [f"{stack.PROJECT}_tls"]
    keys = stack.podman(
        "exec", api, "sh", "-c", "find / -xdev -type f \\( -name '*.key' -o -name '*.pem' \\)"
    ).stdout.split()
    keys += [f"/tls/{name}" for name in ("ca.pem", "server.pem", "server.key")]
    digests = stack.podman("exec", api, "sha256sum", *sorted(set(keys))).stdout
    assert hashlib.sha256(ca_key).hexdigest() not in digests
    assert "/tls/server.key" in digests  # its own key is there: the search did look


def test_the_hub_worker_runs_with_net_admin_only(up: str) -> None:
    hub = json.loads(stack.podman("inspect", stack.container("hub-worker")).stdout)[0]
    assert hub["EffectiveCaps"] == ["CAP_NET_ADMIN"]
    keys = stack.podman(
        "exec",
        stack.container("hub-worker"),
        "stat",
        "-c",
        "%a %n",
        "/var/lib/elysium/hubs/hub-a/keys/wg0.key",
    ).stdout
    assert keys.startswith("600 ")


def test_compose_up_again_changes_nothing(up: str) -> None:
    def containers() -> str:
        return stack.podman("ps", "-a", "--format", "{{.ID}} {{.Names}} {{.Status}}").stdout

    def ids() -> list[str]:
        return sorted(line.split()[0] for line in containers().splitlines())

    first = ids()
    peer = json.loads((stack.STATE / "client" / "client.json").read_text())["peer_id"]
    again = make("compose-up")
    assert again.returncode == 0, again.stdout + again.stderr
    assert ids() == first, containers()
    assert json.loads((stack.STATE / "client" / "client.json").read_text())["peer_id"] == peer


def test_compose_down_leaves_nothing_and_the_host_as_it_was(
    up: str, before: dict[str, str]
) -> None:
    for _ in range(2):
        down = make("compose-down")
        assert down.returncode == 0, down.stdout + down.stderr
        assert project_leftovers() == {}
    assert host_state() == before


def test_a_taken_port_stops_compose_up_in_one_line_leaving_nothing(
    before: dict[str, str],
) -> None:
    subprocess.run(["ip", "netns", "add", stack.NETNS], check=True)
    listener = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{stack.NETNS}", sys.executable, "-c",
         "import socket, time; s = socket.socket(); s.bind(('0.0.0.0', 8443)); s.listen();"
         " print('listening', flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert listener.stdout is not None and listener.stdout.readline().startswith("listening")
        refused = make("compose-up")
    finally:
        listener.kill()
        listener.wait()
        make("compose-down")
    assert refused.returncode != 0
    message = refused.stderr.strip().splitlines()
    assert message[0] == (
        f"compose-up: port 8443 is taken in {stack.NETNS}: stop what listens there"
    ), refused.stderr
    assert project_leftovers() == {}
    assert host_state() == before

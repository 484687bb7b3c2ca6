"""`make up` / `make down`: the whole stack on this machine with a live demo tunnel.

up: migrate, PKI, an admin token (0600), gunicorn (TLS, loopback), a control worker, beat and
a hub worker acting in a network namespace; then the hub and its wg0 through the API, a demo
peer enrolled with elysium-client in its own namespace, and a ping through the tunnel.
Every step checks what is already there first, so running `up` again changes nothing; the
database, not the state directory, says what exists (a hub and wg0 there are adopted, a saved
admin token or enrollment it does not know is replaced).

down: stops every process `up` started (by the pid it recorded), takes the tunnels down and
removes the namespaces. The database stays (`make clean` drops it).

Demo namespaces and addresses live only inside namespaces this script creates:
  ely-<name>-ul (bridge 198.18.99.254/24) ── ely-<name>-hub (198.18.99.1)
                                          └─ ely-<name>-peer (198.18.99.11)
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import requests

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
SERVICES = ("api", "control-worker", "beat", "hub-worker")
UNDERLAY = "198.18.99"
NETWORK = "10.99.0.0/24"
HUB_TUNNEL_IP = "10.99.0.1"


@dataclass(frozen=True)
class Demo:
    """Where this demo keeps its state, and the names it uses (all from the environment)."""

    name: str
    state: Path
    api_port: int

    @classmethod
    def from_env(cls) -> Demo:
        name = os.environ.get("ELYSIUM_DEMO_NAME", "demo")
        state = Path(os.environ.get("ELYSIUM_DEMO_DIR", ROOT / ".state" / name))
        return cls(name, state.resolve(), int(os.environ.get("ELYSIUM_DEMO_API_PORT", "8443")))

    @property
    def hub(self) -> str:
        return f"{self.name}-hub"

    def ns(self, role: str) -> str:
        return f"ely-{self.name}-{role}"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def pki(self) -> Path:
        return self.state / "pki"

    @property
    def token_file(self) -> Path:
        return self.state / "admin.token"

    def env(self) -> dict[str, str]:
        """The ELYSIUM_* settings every process of this demo reads (also saved as ``env``)."""
        ours = {
            "ELYSIUM_STATE_DIR": str(self.state / "server"),
            "ELYSIUM_API_BIND": f"127.0.0.1:{self.api_port}",
            "ELYSIUM_TLS_CERT": str(self.pki / "server.pem"),
            "ELYSIUM_TLS_KEY": str(self.pki / "server.key"),
            "ELYSIUM_TLS_CA": str(self.pki / "ca.pem"),
            "ELYSIUM_CA_KEY": str(self.pki / "ca.key"),
            "ELYSIUM_WG_DRIVER": os.environ.get("ELYSIUM_WG_DRIVER", "auto"),
        }
        passed = {k: v for k, v in os.environ.items() if k.startswith("ELYSIUM_") and k not in ours}
        return {**passed, **ours}


def log(message: str) -> None:
    print(f"up: {message}", flush=True)


def run(
    *cmd: str, check: bool = True, env: dict[str, str] | None = None, capture: bool = True
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {}), "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD": "1"}
    result = subprocess.run(cmd, capture_output=capture, text=True, env=full_env, timeout=180)
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout or "").strip().splitlines()
        raise SystemExit(
            f"up: {' '.join(cmd[:3])} failed: {detail[-1] if detail else result.returncode}"
        )
    return result


def elysium(*args: str, demo: Demo) -> subprocess.CompletedProcess[str]:
    return run(str(VENV_BIN / "elysium"), *args, env=demo.env())


# ---- namespaces ------------------------------------------------------------------------------
def netns_exists(ns: str) -> bool:
    return Path("/run/netns", ns).exists()


def make_namespaces(demo: Demo) -> None:
    ul, hub, peer = demo.ns("ul"), demo.ns("hub"), demo.ns("peer")
    if all(netns_exists(n) for n in (ul, hub, peer)):
        return
    remove_namespaces(demo)
    for ns in (ul, hub, peer):
        run("ip", "netns", "add", ns)
        run("ip", "-n", ns, "link", "set", "lo", "up")
    run("ip", "-n", ul, "link", "add", "br0", "type", "bridge")
    run("ip", "-n", ul, "addr", "add", f"{UNDERLAY}.254/24", "dev", "br0")
    run("ip", "-n", ul, "link", "set", "br0", "up")
    for ns, port, host in ((hub, "vhub", 1), (peer, "vpeer", 11)):
        run(
            "ip", "-n", ul, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns
        )
        run("ip", "-n", ul, "link", "set", port, "master", "br0", "up")
        run("ip", "-n", ns, "addr", "add", f"{UNDERLAY}.{host}/24", "dev", "eth0")
        run("ip", "-n", ns, "link", "set", "eth0", "up")
    log(f"namespaces {ul}, {hub}, {peer} created")


def remove_namespaces(demo: Demo) -> None:
    """Kill what runs in the demo's namespaces, wait until it has exited, delete them."""
    for role in ("peer", "hub", "ul"):
        ns = demo.ns(role)
        if not netns_exists(ns):
            continue
        # Whatever still runs in our namespace was started by this demo (wireguard-go).
        pids = [int(p) for p in run("ip", "netns", "pids", ns, check=False).stdout.split()]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        left = wait_gone(pids)
        if left:
            raise SystemExit(f"down: pid {', '.join(map(str, left))} in {ns} does not exit")
        run("ip", "netns", "del", ns, check=False)


# ---- processes -------------------------------------------------------------------------------
def wait_gone(pids: list[int], timeout: float = 30) -> list[int]:
    """Until every pid has exited (a signal is delivered, not yet acted on, when kill returns);
    returns those still running at the timeout."""
    deadline = time.monotonic() + timeout
    while any(process_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [p for p in pids if process_alive(p)]


def pid_file(demo: Demo, service: str) -> Path:
    return demo.state / "run" / f"{service}.pid"


def process_alive(pid: int) -> bool:
    """Running, or still exiting; gone once only its zombie is left (PID 1 here may not reap
    the daemons `up` left behind).

    A killed multi-threaded process (wireguard-go) shows its leader as a zombie while its
    other threads still exit, one of them closing the TUN device: it is gone only when no
    thread besides the zombie leader is left.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        threads = os.listdir(f"/proc/{pid}/task")
    except (FileNotFoundError, ProcessLookupError):
        return False
    if stat.rsplit(")", 1)[1].split()[0] != "Z":
        return True
    return any(t != str(pid) for t in threads)


def start_time(pid: int) -> int | None:
    """The process's start time (clock ticks after boot): with the pid, it names one process."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
        return None


def recorded_processes(demo: Demo) -> dict[int, int]:
    """Every live process the demo wrote a pid file for (its services, the wireguard-go
    devices of the hub and the demo peer), as pid -> start time."""
    found: dict[int, int] = {}
    for path in demo.state.rglob("*.pid"):
        pid = running_pid(path)
        started = start_time(pid) if pid is not None else None
        if pid is not None and started is not None:
            found[pid] = started
    return found


def running_pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None
    return pid if process_alive(pid) else None


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def start_service(demo: Demo, service: str) -> bool:
    """Start one service unless its recorded pid still runs; True when it was started."""
    path = pid_file(demo, service)
    if running_pid(path):
        return False
    if service == "api" and not port_free(demo.api_port):
        raise SystemExit(
            f"up: 127.0.0.1:{demo.api_port} is taken (another checkout's demo? `make down` there,"
            " or choose ELYSIUM_DEMO_API_PORT and ELYSIUM_DEMO_NAME)"
        )
    args = [str(VENV_BIN / "elysium"), service]
    if service == "hub-worker":
        args += ["--hub", demo.hub, "--netns", demo.ns("hub"), "--endpoint", f"{UNDERLAY}.1"]
    logs = demo.state / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **demo.env(), "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD": "1"}
    with open(logs / f"{service}.log", "ab") as out:
        proc = subprocess.Popen(
            args,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=ROOT,
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{proc.pid}\n")
    return True


def stop_service(demo: Demo, service: str) -> None:
    path = pid_file(demo, service)
    pid = running_pid(path)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and running_pid(path):
            time.sleep(0.1)
        if running_pid(path):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            if wait_gone([pid]):
                raise SystemExit(f"down: {service} (pid {pid}) does not exit")
    path.unlink(missing_ok=True)


# ---- the API ---------------------------------------------------------------------------------
class Api:
    def __init__(self, demo: Demo) -> None:
        self.demo = demo
        self.session = requests.Session()
        self.ca = str(demo.pki / "ca.pem")
        self.use_saved_token()

    def use_saved_token(self) -> None:
        token = self.demo.token_file.read_text().strip()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        # verify per request: a REQUESTS_CA_BUNDLE in the environment beats a Session's own.
        return self.session.request(
            method, self.demo.url + path, timeout=40, verify=self.ca, **kwargs
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.RequestException):
                if self.call("GET", "/readyz").status_code == 200:
                    return
            time.sleep(0.2)
        raise SystemExit(f"up: the API did not become ready; see {self.demo.state}/logs/api.log")

    def wait_job(self, job_id: str) -> dict[str, Any]:
        job: dict[str, Any] = self.call("GET", f"/v1/jobs/{job_id}", params={"wait": 30}).json()
        if job.get("status") != "succeeded":
            raise SystemExit(f"up: job {job_id} ended {job.get('status')}: {job.get('error')}")
        return job


def save_admin_token(demo: Demo) -> None:
    """A new admin token in the database, saved 0600 (replacing a refused one atomically)."""
    token = elysium(
        "token", "create", "--scope", "admin", "--name", f"{demo.name}-admin", demo=demo
    ).stdout.strip()
    partial = demo.token_file.with_name(f".{demo.token_file.name}.{os.getpid()}")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    os.replace(partial, demo.token_file)
    log(f"admin token saved to {demo.token_file} (0600)")


def ensure_admin_token(api: Api, demo: Demo) -> None:
    """The saved token must be one the database knows (another checkout's `make clean`, or a
    revocation, makes it unknown): if the API refuses it, a new one replaces it."""
    answer = api.call("GET", "/v1/hubs")
    if answer.status_code == 401:
        code = answer.json().get("error", {}).get("code", "refused")
        log(f"the saved admin token was refused ({code}); making a new one")
        save_admin_token(demo)
        api.use_saved_token()
        answer = api.call("GET", "/v1/hubs")
    if answer.status_code != 200:
        raise SystemExit(f"up: the API refuses the admin token: {answer.text}")


def wait_hub(api: Api, demo: Demo, timeout: float = 60) -> dict[str, Any]:
    """The demo hub with its interfaces; its worker declares it (--endpoint) if it is new."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = api.call("GET", f"/v1/hubs/{demo.hub}")
        if answer.status_code == 200:
            hub: dict[str, Any] = answer.json()
            return hub
        time.sleep(0.2)
    raise SystemExit(f"up: hub {demo.hub} was not declared; see {demo.state}/logs/hub-worker.log")


def ensure_interface(api: Api, demo: Demo) -> int:
    """The demo hub's wg0: adopted when the database already has it (the database, not this
    checkout's state directory, says what exists), else created."""
    for iface in wait_hub(api, demo)["interfaces"]:
        if iface["name"] != "wg0":
            continue
        if iface["network"] != NETWORK or iface["status"] == "deleting":
            raise SystemExit(
                f"up: hub {demo.hub} already has a wg0 ({iface['network']}, {iface['status']})"
                f" that is not the demo's {NETWORK}: delete it (DELETE /v1/interfaces/"
                f"{iface['id']}), or run a separate demo with ELYSIUM_DEMO_NAME=<another name>"
            )
        return int(iface["id"])
    answer = api.call(
        "POST",
        f"/v1/hubs/{demo.hub}/interfaces",
        json={"name": "wg0", "network": NETWORK, "listen_port": 51820, "keepalive": 15},
    )
    if answer.status_code != 202:
        raise SystemExit(
            f"up: creating wg0 failed: {answer.text.strip()} (run a separate demo with"
            " ELYSIUM_DEMO_NAME=<another name>)"
        )
    api.wait_job(answer.json()["job_id"])
    log(f"hub {demo.hub} has wg0 ({NETWORK})")
    return int(answer.json()["interface_id"])


def enrolled_peer(api: Api, demo: Demo, iface_id: int) -> int | None:
    """The demo peer's id when the database knows the client's saved enrollment: the peer is
    live, on wg0, with the client's key. None when there is none to use."""
    try:
        saved = json.loads((demo.state / "client" / "client.json").read_text())
        peer_id, key = int(saved["peer_id"]), saved["config"]["public_key"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    answer = api.call("GET", f"/v1/peers/{peer_id}")
    if answer.status_code != 200:
        return None
    peer = answer.json()
    live = peer["status"] not in ("removing", "removed", "expired", "failed")
    return (
        peer_id if live and peer["interface_id"] == iface_id and peer["public_key"] == key else None
    )


def ensure_peer(api: Api, demo: Demo, iface_id: int) -> None:
    client = [str(VENV_BIN / "elysium-client")]
    client_state = demo.state / "client"
    if (client_state / "client.json").exists() and enrolled_peer(api, demo, iface_id) is None:
        log("the database does not know the demo peer's saved enrollment; enrolling it again")
        run(*client, "down", "--state-dir", str(client_state), check=False)
        shutil.rmtree(client_state)
    if not (client_state / "client.json").exists():
        made = api.call(
            "POST",
            f"/v1/interfaces/{iface_id}/enrollment-tokens",
            json={"name": "demo-peer", "ttl_seconds": 600},
        )
        if made.status_code != 201:
            raise SystemExit(f"up: making an enrollment token failed: {made.text}")
        run(
            *client,
            "enroll",
            "--server",
            demo.url,
            "--token",
            made.json()["token"],
            "--name",
            "demo-peer",
            "--ca",
            str(demo.pki / "ca.pem"),
            "--netns",
            demo.ns("peer"),
            "--interface",
            "wg0",
            "--state-dir",
            str(client_state),
        )
        log("demo peer enrolled with elysium-client")
        remove_stale_peers(api, iface_id, enrolled_peer(api, demo, iface_id))
    run(*client, "up", "--state-dir", str(client_state))


def remove_stale_peers(api: Api, iface_id: int, ours: int | None) -> None:
    """Demo peers of wg0 whose client state is lost (their key with it) are removed."""
    answer = api.call("GET", "/v1/peers", params={"interface_id": iface_id, "limit": 1000})
    peers = answer.json()["items"] if answer.status_code == 200 else []
    stale = [p["id"] for p in peers if p["name"] == "demo-peer" and p["id"] != ours]
    for peer_id in stale:
        api.call("DELETE", f"/v1/peers/{peer_id}")
    if stale:
        log(f"removed {len(stale)} demo peer(s) whose client state was lost")


def ping_through_tunnel(demo: Demo, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = run(
            "ip",
            "netns",
            "exec",
            demo.ns("peer"),
            "ping",
            "-c1",
            "-W1",
            "-n",
            HUB_TUNNEL_IP,
            check=False,
        )
        if got.returncode == 0:
            return
    raise SystemExit("up: the demo peer cannot ping the hub through the tunnel")


# ---- commands --------------------------------------------------------------------------------
def up(demo: Demo) -> None:
    started = time.monotonic()
    demo.state.mkdir(parents=True, exist_ok=True, mode=0o700)
    env_file = demo.state / "env"
    env_file.write_text("".join(f"export {k}={v}\n" for k, v in sorted(demo.env().items())))
    elysium("db", "migrate", demo=demo)
    elysium("pki", "init", "--dir", str(demo.pki), demo=demo)
    if not demo.token_file.exists():
        save_admin_token(demo)
    make_namespaces(demo)
    for service in SERVICES:
        if start_service(demo, service):
            log(f"started {service}")
    api = Api(demo)
    api.wait_ready()
    ensure_admin_token(api, demo)
    iface_id = ensure_interface(api, demo)
    ensure_peer(api, demo, iface_id)
    ping_through_tunnel(demo)
    seconds = time.monotonic() - started
    print(
        f"""
Elysium is up ({seconds:.1f} s); the demo peer pings {HUB_TUNNEL_IP} through wg0.

  API            {demo.url}   (docs: {demo.url}/docs, OpenAPI: {demo.url}/openapi.json)
  dashboard      {demo.url}/ui/   sign in by pasting the admin token: cat {demo.token_file}
                 (the browser must trust {demo.pki / "ca.pem"}, or accept the certificate once)
  CA             {demo.pki / "ca.pem"}
  admin token    {demo.token_file}
  settings       source {env_file}
  logs           {demo.state / "logs"}/{{api,control-worker,beat,hub-worker}}.log
  hub            {demo.hub}: wg0 {NETWORK} in namespace {demo.ns("hub")} ({UNDERLAY}.1:51820)
  demo peer      namespace {demo.ns("peer")}, client state {demo.state / "client"}

Try:
  curl --cacert {demo.pki / "ca.pem"} -H "Authorization: Bearer $(cat {demo.token_file})" \\
       {demo.url}/v1/peers
  {VENV_BIN / "elysium-client"} status --state-dir {demo.state / "client"}
  ip netns exec {demo.ns("peer")} ping -c3 {HUB_TUNNEL_IP}
  make down
""",
        flush=True,
    )


def down(demo: Demo) -> None:
    """Returns only when nothing of the demo is left: every process it recorded has exited
    (killed by pid if need be) and its namespaces are gone; else exits non-zero saying what."""
    ours = recorded_processes(demo)  # before the steps below remove their pid files
    client_state = demo.state / "client"
    if (client_state / "client.json").exists():
        run(str(VENV_BIN / "elysium-client"), "down", "--state-dir", str(client_state), check=False)
    for service in reversed(SERVICES):
        stop_service(demo, service)
    remove_namespaces(demo)
    still = [pid for pid, started in ours.items() if start_time(pid) == started]
    for pid in still:  # e.g. a device process outside the namespaces, or one still exiting
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    left = wait_gone(still)
    if left:
        raise SystemExit(f"down: pid {', '.join(map(str, left))} of the demo does not exit")
    namespaces = [demo.ns(role) for role in ("peer", "hub", "ul") if netns_exists(demo.ns(role))]
    if namespaces:
        raise SystemExit(f"down: namespaces {', '.join(namespaces)} could not be removed")
    print(f"down: stopped the demo's processes and removed its namespaces ({demo.name})")


def clean(demo: Demo) -> None:
    """down, then forget the demo: its state directory and the database's contents."""
    down(demo)
    url = demo.env().get(
        "ELYSIUM_DATABASE_URL", "postgresql://elysium:elysium@127.0.0.1:5432/elysium"
    )
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    subprocess.run(["rm", "-rf", "--", str(demo.state)], check=False)
    print(f"clean: dropped the schema of {url.rsplit('@', 1)[-1]} and removed {demo.state}")


def main() -> None:
    command = sys.argv[1] if len(sys.argv) > 1 else "up"
    demo = Demo.from_env()
    {"up": up, "down": down, "clean": clean}[command](demo)


if __name__ == "__main__":
    main()

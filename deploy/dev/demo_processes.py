"""Supervising the demo's processes: each started with its pid recorded, stopped by that pid,
and waited for until it has really exited."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from demo_settings import ROOT, UNDERLAY, VENV_BIN, Demo

from elysium.haproxy import haproxy_config


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
    port = demo.replica_port(service) if service.startswith("api") else demo.api_port
    if service.startswith(("api", "haproxy")) and not port_free(port):
        raise SystemExit(
            f"up: 127.0.0.1:{port} is taken (another checkout's demo? `make down` there,"
            " or choose ELYSIUM_DEMO_API_PORT and ELYSIUM_DEMO_NAME)"
        )
    args = [str(VENV_BIN / "elysium"), "api" if service.startswith("api") else service]
    env = {**os.environ, **demo.env(), "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD": "1"}
    if service.startswith("api-"):  # one replica: its own port and state, as on its own host
        env["ELYSIUM_API_BIND"] = f"127.0.0.1:{port}"
        env["ELYSIUM_STATE_DIR"] = str(demo.state / "server" / service)
    if service == "haproxy":
        args = ["haproxy", "-db", "-f", str(write_haproxy_config(demo))]
    if service == "hub-worker":
        args += ["--hub", demo.hub, "--netns", demo.ns("hub"), "--endpoint", f"{UNDERLAY}.1"]
    logs = demo.state / "logs"
    logs.mkdir(parents=True, exist_ok=True)
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


def write_haproxy_config(demo: Demo) -> Path:
    """HAProxy on the API port in front of the demo's replicas (README "High availability")."""
    replicas = [f"127.0.0.1:{demo.replica_port(s)}" for s in demo.services if s.startswith("api")]
    path = demo.state / "haproxy.cfg"
    path.write_text(haproxy_config(f"127.0.0.1:{demo.api_port}", replicas, demo.pki / "ca.pem"))
    return path


def services_to_stop(demo: Demo) -> list[str]:
    """The demo's services, last started first, and any other it recorded a pid for (an
    earlier `up` with another ELYSIUM_DEMO_API_REPLICAS)."""
    recorded = sorted(p.stem for p in (demo.state / "run").glob("*.pid"))
    return [*reversed(demo.services), *(s for s in recorded if s not in demo.services)]


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

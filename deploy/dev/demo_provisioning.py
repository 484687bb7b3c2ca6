"""Provisioning the demo through the API: the admin token, the hub's wg0 and the demo peer
(each adopted when the database already has it), and the ping that proves the tunnel."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from typing import Any

import requests
from demo_settings import HUB_TUNNEL_IP, NETWORK, VENV_BIN, Demo, elysium, log, run


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
        "token", "create", "--db", "--scope", "admin", "--name", f"{demo.name}-admin", demo=demo
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

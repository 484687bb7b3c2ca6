"""The compose demo's API side, run in the peer's namespace by stack.py: wait for the API and
hub-a, make wg0 (10.214.0.0/24) unless it exists, and print an enrollment token for the demo
peer (nothing when the peer saved in the client state is still enrolled).

Usage: provision.py URL CA_FILE ADMIN_TOKEN_FILE CLIENT_STATE_DIR
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import requests

NETWORK = "10.214.0.0/24"


def main() -> None:
    url, ca, token_file, client_state = sys.argv[1:5]
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {Path(token_file).read_text().strip()}"

    def call(method: str, path: str, **kw: Any) -> requests.Response:
        # verify per call: a Session's own would lose to REQUESTS_CA_BUNDLE in the environment
        return s.request(method, f"{url}{path}", timeout=30, verify=ca, **kw)

    def until(ok: Any, what: str, timeout: float = 90) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                got = ok()
            except requests.RequestException:
                got = None
            if got:
                return got
            time.sleep(0.5)
        raise SystemExit(f"{what} not ready after {timeout:.0f}s")

    until(lambda: call("GET", "/readyz").ok, "the API")
    hub = until(lambda: (r := call("GET", "/v1/hubs/hub-a")).ok and r.json(), "hub-a")
    wg0 = [i for i in hub["interfaces"] if i["name"] == "wg0"]
    if wg0:
        iface_id = wg0[0]["id"]
    else:
        made = call("POST", "/v1/hubs/hub-a/interfaces",
                    json={"name": "wg0", "network": NETWORK, "listen_port": 51820})  # fmt: skip
        if made.status_code != 202:
            raise SystemExit(f"creating wg0 failed: {made.text.strip()}")
        iface_id = made.json()["interface_id"]
        job = call("GET", f"/v1/jobs/{made.json()['job_id']}", params={"wait": 30}).json()
        if job["status"] != "succeeded":
            raise SystemExit(f"creating wg0 failed: {job.get('error')}")
    try:
        saved = json.loads((Path(client_state) / "client.json").read_text())
        if call("GET", f"/v1/peers/{saved['peer_id']}").ok:
            return  # enrolled already: `elysium-client up` is all it takes
    except (OSError, ValueError, KeyError):
        pass
    made = call("POST", f"/v1/interfaces/{iface_id}/enrollment-tokens",
                json={"name": "demo-peer", "ttl_seconds": 600})  # fmt: skip
    if made.status_code != 201:
        raise SystemExit(f"making an enrollment token failed: {made.text.strip()}")
    print(made.json()["token"])


if __name__ == "__main__":
    main()

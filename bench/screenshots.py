"""Screenshots of the dashboard for the README, taken in headless Chromium (Debian's
``chromium`` and ``chromium-driver``, driven by selenium) at 1280x900.

A throwaway deployment is made through the real API (gunicorn, TLS) as an admin would make it:
three hubs, two of them meshed, four interfaces, a few dozen peers with tags, a disabled peer,
an interface change whose job failed. No hub worker runs; what the workers would have reported
(heartbeats, interface keys, peers online with handshakes and traffic, finished jobs, mesh
links) is then written with SQL. An operator signs in as a person does and each page is saved.
Not a benchmark: nothing goes to bench/results.
Run: ``.venv/bin/python -m bench.screenshots api/ui/screenshots`` (overview.png, interface.png,
hub.png).
"""

from __future__ import annotations

import base64
import hashlib
import sys
import tempfile
from pathlib import Path
from typing import Any

import psycopg
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from psycopg.rows import dict_row
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from bench.api import api_server, tls_settings
from bench.scaffold import random_key, throwaway_database, throwaway_redis_prefix
from bench.ui import https_session
from db.tokens import create_api_token

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WINDOW = (1280, 900)
HUBS = {"fra-1": "203.0.113.10", "ams-1": "203.0.113.20", "nyc-1": "198.51.100.30"}
MESHED = ("fra-1", "ams-1")
# hub, interface, network, port: the first is the one whose page is shown.
INTERFACES = [
    ("fra-1", "staff", "10.10.0.0/24", 51820),
    ("fra-1", "servers", "10.11.0.0/24", 51821),
    ("ams-1", "staff", "10.20.0.0/24", 51820),
    ("nyc-1", "lab", "10.30.0.0/24", 51820),
]
PEOPLE = [
    "alice",
    "bob",
    "carol",
    "dave",
    "erin",
    "frank",
    "grace",
    "heidi",
    "ivan",
    "judy",
    "mallory",
    "niaj",
    "olivia",
]
SERVERS = ["ci-runner-1", "ci-runner-2", "db-primary", "db-replica", "grafana", "backup"]


class Admin:
    """The API as an admin token calls it."""

    def __init__(self, base: str, ca: str, token: str) -> None:
        self.base = base
        self.http = https_session(ca)
        self.http.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        r = self.http.request(method, self.base + path, json=body, timeout=30)
        assert r.status_code in (200, 201, 202), (method, path, r.status_code, r.text)
        return dict(r.json())


def deploy(admin: Admin) -> dict[str, int]:
    """Hubs, mesh, interfaces, peers and changes through the API; interface ids by hub/name."""
    for name, ip in HUBS.items():
        admin.call("POST", "/v1/hubs", {"name": name, "endpoint": ip})
    for name in MESHED:
        admin.call("PUT", f"/v1/hubs/{name}/mesh", {"listen_port": 51900})
    ids = {}
    for hub, name, network, port in INTERFACES:
        body = {"name": name, "network": network, "listen_port": port, "dns": ["10.10.0.53"]}
        ids[f"{hub}/{name}"] = admin.call("POST", f"/v1/hubs/{hub}/interfaces", body)[
            "interface_id"
        ]
    admin.call("PATCH", f"/v1/interfaces/{ids['fra-1/staff']}", {"routes": ["192.168.10.0/24"]})
    peers: list[tuple[str, str, list[str]]] = []
    for person in PEOPLE:
        peers.append(("fra-1/staff", f"{person}-laptop", ["staff", "laptop"]))
        if person in ("alice", "dave", "grace", "judy", "olivia"):
            peers.append(("fra-1/staff", f"{person}-phone", ["staff", "phone"]))
    peers += [("fra-1/servers", name, ["ops"]) for name in SERVERS]
    peers += [("ams-1/staff", f"{p}-laptop", ["staff"]) for p in ("peggy", "rupert", "sybil")]
    peers += [("nyc-1/lab", f"bench-{n}", ["lab"]) for n in range(1, 5)]
    for where, name, tags in peers:
        body = {"name": name, "public_key": random_key(), "tags": tags}
        admin.call("POST", f"/v1/interfaces/{ids[where]}/peers", body)
    mallory = admin.http.get(
        f"{admin.base}/v1/peers?interface_id={ids['fra-1/staff']}&limit=1000", timeout=30
    ).json()["items"]
    mallory_id = next(p["id"] for p in mallory if p["name"] == "mallory-laptop")
    admin.call("PATCH", f"/v1/peers/{mallory_id}", {"enabled": False})
    admin.call(
        "PATCH",
        f"/v1/interfaces/{ids['ams-1/staff']}",
        {"exit": True, "nat": {"egress": "ens5"}},
    )
    return ids


def as_if_workers_ran(url: str, ids: dict[str, int]) -> None:
    """What the hub workers would have reported by now, written directly."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "UPDATE hubs SET stale = false, last_heartbeat_at = now() - interval '4 s',"
            " worker = jsonb_build_object('host', name, 'driver', 'KernelDriver'),"
            " mesh_public_key = CASE WHEN mesh_port IS NULL THEN NULL ELSE %s END"
            " WHERE name <> 'nyc-1'",
            (random_key(),),
        )
        conn.execute(
            "UPDATE hubs SET stale = true, last_heartbeat_at = now() - interval '7 min'"
            " WHERE name = 'nyc-1'"
        )
        conn.execute(
            "INSERT INTO mesh_links (hub_id, peer_hub_id, endpoint, last_handshake_at,"
            " rx_bytes, tx_bytes) SELECT a.id, b.id, b.mesh_endpoint, now() - interval '38 s',"
            " 48234112, 51022336 FROM hubs a, hubs b"
            " WHERE a.id <> b.id AND a.mesh_port IS NOT NULL AND b.mesh_port IS NOT NULL"
        )
        for iface in ids.values():
            conn.execute(
                "UPDATE interfaces SET status = 'ready', public_key = %s WHERE id = %s",
                (random_key(), iface),
            )
        # Peers: most online with a recent handshake and traffic, some gone quiet.
        conn.execute(
            "UPDATE peers SET status = 'active',"
            " online = enabled AND id % 5 <> 0 AND id % 7 <> 0,"
            " last_handshake_at = CASE WHEN enabled AND id % 5 <> 0 AND id % 7 <> 0"
            "   THEN now() - make_interval(secs => (id * 37) % 110 + 3)"
            "   ELSE now() - make_interval(hours => ((id * 11) % 60 + 2)::int) END,"
            " endpoint = '198.51.100.' || (id % 200 + 20) || ':' || (40000 + id * 97),"
            " rx_bytes = (id * 7919 * 104729) % 3000000000,"
            " tx_bytes = (id * 6007 * 15485863) % 900000000"
        )
        # Jobs: done, but the NAT change failed and the newest peers of the stale hub wait.
        conn.execute(
            "UPDATE jobs SET status = 'succeeded', attempts = 1,"
            " started_at = created_at + interval '40 ms', finished_at = created_at"
            " + interval '180 ms', result = '{}'"
        )
        conn.execute(
            "UPDATE jobs SET status = 'failed', error_code = 'nat_device_missing',"
            " error_message = 'staff: NAT device ''ens5'' does not exist on the hub',"
            " result = NULL WHERE interface_id = %s AND kind = 'update_interface'",
            (ids["ams-1/staff"],),
        )
        waiting = conn.execute(
            "UPDATE jobs SET status = 'queued', started_at = NULL, finished_at = NULL,"
            " result = NULL, attempts = 0 WHERE id IN (SELECT j.id FROM jobs j"
            " JOIN hubs h ON h.id = j.hub_id WHERE h.name = 'nyc-1' AND j.kind = 'add_peer'"
            " ORDER BY j.created_at DESC LIMIT 2) RETURNING peer_id"
        ).fetchall()
        conn.execute(
            "UPDATE peers SET status = 'pending', online = false, last_handshake_at = NULL,"
            " endpoint = NULL, rx_bytes = 0, tx_bytes = 0 WHERE id = ANY(%s)",
            ([r[0] for r in waiting],),
        )


def spki_hash(cert_path: Path) -> str:
    """What ``--ignore-certificate-errors-spki-list`` takes: Chromium trusts this key only."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def shoot(base: str, d: Path, token: str, ids: dict[str, int], out: Path) -> list[Path]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # run as root
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        f"--user-data-dir={d / 'chromium'}",
        f"--ignore-certificate-errors-spki-list={spki_hash(d / 'server.pem')}",
        "--no-proxy-server",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    saved = []
    try:
        # The page itself at WINDOW (--window-size counts the browser's own bars too).
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": WINDOW[0], "height": WINDOW[1], "deviceScaleFactor": 1, "mobile": False},
        )
        driver.get(f"{base}/ui/login")
        driver.find_element(By.ID, "token").send_keys(token)
        driver.find_element(By.ID, "sign-in").click()
        WebDriverWait(driver, 10).until(lambda d: d.current_url.endswith("/ui/"))
        pages = {
            "overview": "/ui/",
            "interface": f"/ui/interfaces/{ids['fra-1/staff']}",
            "hub": "/ui/hubs/fra-1",
        }
        for name, path in pages.items():
            driver.get(base + path)
            WebDriverWait(driver, 10).until(lambda d: d.find_element(By.TAG_NAME, "h1"))
            saved.append(out / f"{name}.png")
            assert driver.save_screenshot(str(saved[-1])), f"no screenshot of {path}"
    finally:
        driver.quit()
    return saved


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with (
        throwaway_database() as url,
        throwaway_redis_prefix() as prefix,
        tempfile.TemporaryDirectory() as tmp,
    ):
        d = Path(tmp)
        settings = tls_settings(url, d, prefix, db_pool_max=2)
        with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
            _, admin_token = create_api_token(conn, "setup", "admin", None, "bench")
            _, alice = create_api_token(conn, "alice", "operator", None, "bench")
        with api_server(settings, d) as base:
            ids = deploy(Admin(base, str(d / "ca.pem"), admin_token))
            as_if_workers_ran(url, ids)
            for path in shoot(base, d, alice, ids, out):
                print(f"wrote {path} ({path.stat().st_size:,} bytes)")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m bench.screenshots DIR")
    main(Path(sys.argv[1]))

"""The dashboard at 10,000 peers, as a signed-in browser gets it from the real API (gunicorn,
TLS, 2 workers; keep-alive connections, one request at a time).

Timed, each ``SAMPLES`` times and in turns so that drift hits every figure alike: the interface
page (``peers_page_10k_p50_ms``: its first 50 peers rendered on the server; goal ≤ 100 ms), the
peer-rows fragment the page re-fetches every 5 s, a name-prefix search, the last page (after
the 9,950th peer), the overview (the interface's 10,000 peers counted online and offline, and
10,000 jobs). Baselines in the same run: ``GET /healthz`` on the same connection, and the API's
JSON ``GET /v1/interfaces/{id}`` and ``GET /v1/peers?interface_id=…&limit=50`` (the same 50
peers as the page) with a bearer token. ``peers_page_bytes`` is the page's HTML (goal ≤ 200 KB);
``first_visit_bytes`` adds the stylesheet and htmx, which the browser then keeps.
Run: ``.venv/bin/python -m bench.ui`` (writes bench/results/ui.json).
"""

from __future__ import annotations

import re
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
import requests
from psycopg.rows import dict_row

from bench.api import api_server, tls_settings
from bench.scaffold import (
    percentile,
    size,
    throwaway_database,
    throwaway_redis_prefix,
    write_result,
)
from db.interfaces import create_interface
from db.tokens import create_api_token
from services.hubs import declare_hub

PEERS = 10_000  # small runs too: seeding is one INSERT, and the page checks expect 10k
SAMPLES = size(200, 3)
WARM_UP = size(20, 1)
PAGE_GOAL_MS = 100
PAGE_GOAL_BYTES = 200 * 1024
DB_POOL_MAX = 4  # per API worker: PostgreSQL is shared with other runs
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def seed(url: str, peers: int) -> int:
    """One hub, one interface with ``peers`` live peers (a third online, some tagged), and the
    job and audit row each one's creation leaves; the interface's id."""
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        hub = declare_hub(conn, "bench", "bench-hub", "192.0.2.1")
        conn.execute(
            "UPDATE hubs SET last_heartbeat_at = now(), stale = false WHERE id = %s", (hub["id"],)
        )
        with conn.transaction():
            iface = create_interface(
                conn, hub["id"], "wg0", "10.64.0.0/18", None, 51820, None, [], 25
            )
        conn.execute(
            "INSERT INTO peers (interface_id, name, public_key, address, status, tags, online,"
            " last_handshake_at, rx_bytes, tx_bytes, created_by)"
            " SELECT %(i)s, 'peer-' || g, rpad('k' || g, 43, 'A') || '=',"
            " '10.64.0.0'::inet + g, 'active',"
            " CASE g %% 4 WHEN 0 THEN '{ops}'::text[] WHEN 1 THEN '{laptop,staff}' ELSE '{}' END,"
            " g %% 3 = 0, now() - make_interval(secs => g %% 600), g * 4096, g * 1024, 'bench'"
            " FROM generate_series(2, %(last)s) g",
            {"i": iface["id"], "last": peers + 1},
        )
        conn.execute(
            "INSERT INTO jobs (id, kind, status, queue, submitter, interface_id, peer_id,"
            " finished_at) SELECT gen_random_uuid(), 'add_peer', 'succeeded', 'hub.bench-hub',"
            " 'bench', interface_id, id, now() FROM peers"
        )
        conn.execute(
            "INSERT INTO audit (actor, action, target, outcome)"
            " SELECT 'bench', 'add_peer', 'peer:' || id, 'accepted' FROM peers"
        )
        conn.execute("ANALYZE")
    return int(iface["id"])


def https_session(ca: str) -> requests.Session:
    """A keep-alive session that trusts ``ca`` only (not REQUESTS_CA_BUNDLE) and no proxy."""
    http = requests.Session()
    http.trust_env = False
    http.verify = ca
    return http


def sign_in(base: str, ca: str, token: str) -> requests.Session:
    """A dashboard session as a browser has it: the session cookie, signed in with ``token``."""
    http = https_session(ca)
    form = CSRF.search(http.get(f"{base}/ui/login", timeout=30).text)
    assert form is not None, "no CSRF token on the sign-in page"
    r = http.post(
        f"{base}/ui/login", data={"token": token, "csrf_token": form.group(1)}, timeout=30
    )
    assert r.ok and r.url.endswith("/ui/"), (r.status_code, r.url)
    return http


def timed(
    targets: dict[str, tuple[requests.Session, str]], rounds: int
) -> dict[str, tuple[list[float], requests.Response]]:
    """Each target ``rounds`` times, one after the other in turns; latencies and a response."""
    out: dict[str, tuple[list[float], requests.Response]] = {}
    for _ in range(rounds):
        for name, (http, url) in targets.items():
            started = time.perf_counter()
            r = http.get(url, timeout=30)
            took = time.perf_counter() - started
            assert r.status_code == 200, (name, r.status_code, r.text[:300])
            out.setdefault(name, ([], r))[0].append(took)
    return out


def p50_ms(values: list[float]) -> float:
    return round(percentile(values, 0.5) * 1000, 2)


def measure(base: str, ca: str, iface: int, reader: str) -> dict[str, Any]:
    """Every target timed in turns; p50, p99 and bytes of each, by name."""
    ui = sign_in(base, ca, reader)
    api = https_session(ca)
    api.headers["Authorization"] = f"Bearer {reader}"
    targets = {
        "healthz": (ui, f"{base}/healthz"),
        "interface_json": (api, f"{base}/v1/interfaces/{iface}"),
        "peers_json": (api, f"{base}/v1/peers?interface_id={iface}&limit=50"),
        "peers_page": (ui, f"{base}/ui/interfaces/{iface}"),
        "peer_rows": (ui, f"{base}/ui/interfaces/{iface}/peer-rows"),
        "search": (ui, f"{base}/ui/interfaces/{iface}?q=peer-99"),
        "last_page": (ui, f"{base}/ui/interfaces/{iface}?after={PEERS - 50}"),
        "overview": (ui, f"{base}/ui/"),
    }
    timed(targets, WARM_UP)
    runs = timed(targets, SAMPLES)
    page = runs["peers_page"][1]
    assert page.text.count("/ui/peers/") == 50 and 'id="next-page"' in page.text
    assert runs["search"][1].text.count("/ui/peers/") == 50  # peer-99, peer-990…, peer-9900…
    assert "peer-10001<" in runs["last_page"][1].text  # peer-N has id N - 1
    assert f">{PEERS // 3}</span> peers online" in runs["overview"][1].text
    assert "Content-Encoding" not in page.headers  # the bytes below are what travels
    static = sum(
        len(ui.get(f"{base}/ui/static/{name}", timeout=30).content)
        for name in ("ui.css", "htmx.min.js")
    )
    out: dict[str, Any] = {
        name: {
            "p50_ms": p50_ms(took),
            "p99_ms": round(percentile(took, 0.99) * 1000, 2),
            "bytes": len(r.content),
        }
        for name, (took, r) in runs.items()
    }
    out["first_visit_bytes"] = len(page.content) + static
    return out


def figures_of(run: dict[str, Any]) -> dict[str, Any]:
    """The result file's figures: headline p50s and sizes, ratios to the baselines, p99s."""

    def ratio(name: str, base: str) -> float:
        return round(run[name]["p50_ms"] / run[base]["p50_ms"], 2)

    return {
        "peers": PEERS,
        "peers_page_10k_p50_ms": run["peers_page"]["p50_ms"],
        "peers_page_bytes": run["peers_page"]["bytes"],
        "overview_p50_ms": run["overview"]["p50_ms"],
        "overview_bytes": run["overview"]["bytes"],
        "peer_rows_p50_ms": run["peer_rows"]["p50_ms"],
        "peer_rows_bytes": run["peer_rows"]["bytes"],
        "search_10k_p50_ms": run["search"]["p50_ms"],
        "last_page_10k_p50_ms": run["last_page"]["p50_ms"],
        "healthz_p50_ms": run["healthz"]["p50_ms"],
        "interface_json_p50_ms": run["interface_json"]["p50_ms"],
        "peers_json_p50_ms": run["peers_json"]["p50_ms"],
        "peers_json_bytes": run["peers_json"]["bytes"],
        "peers_page_to_healthz": ratio("peers_page", "healthz"),
        "peers_page_to_peers_json": ratio("peers_page", "peers_json"),
        "peer_rows_to_peers_json": ratio("peer_rows", "peers_json"),
        "overview_to_healthz": ratio("overview", "healthz"),
        "first_visit_bytes": run["first_visit_bytes"],
        "p99_ms": {
            name: run[name]["p99_ms"]
            for name in ("peers_page", "peer_rows", "search", "last_page", "overview", "healthz")
        },
        "goals": {"peers_page_10k_p50_ms": PAGE_GOAL_MS, "peers_page_bytes": PAGE_GOAL_BYTES},
    }


def main() -> None:
    with (
        throwaway_database() as url,
        throwaway_redis_prefix() as prefix,
        tempfile.TemporaryDirectory() as tmp,
    ):
        d = Path(tmp)
        settings = tls_settings(url, d, prefix, db_pool_max=DB_POOL_MAX)
        started = time.perf_counter()
        iface = seed(url, PEERS)
        seeded_s = time.perf_counter() - started
        with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
            _, reader = create_api_token(conn, "bench", "reader", None, "bench")
        with api_server(settings, d) as base:
            run = measure(base, str(d / "ca.pem"), iface, reader)
    figures = figures_of(run)
    figures["setup"] = {
        "samples": SAMPLES,
        "seed_s": round(seeded_s, 2),
        "page_size": 50,
        "search": "q=peer-99 (a name prefix: 111 peers match, the first 50 shown)",
    }
    figures["server"] = {"workers": settings.api_workers, "tls": True, "db_pool_max": DB_POOL_MAX}
    write_result("ui", figures)


if __name__ == "__main__":
    main()

"""A whole Elysium stack that a fault test breaks on purpose, and the ledger of its secrets.

:class:`FaultStack` runs the API (gunicorn over TLS), a hub worker acting in a hub namespace,
a control worker and beat, each a :class:`~tests.stack.Process` of the test with its own log.
It talks to them the way users do (HTTPS) and checks the end state against the device.

:class:`SecretLedger` holds every private key the faults tests make (peer keys generated
"client side", the hub's interface keys, the PKI keys); stacks hand it their database dumps,
logs and API answers, and ``test_secrets.py`` asserts at the end that no key leaked.
"""

from __future__ import annotations

import base64
import dataclasses
import re
import secrets
import shutil
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from psycopg.rows import dict_row

from dataplane.base import PeerStats
from dataplane.uapi import UapiDriver
from dataplane.wireguard_go import WireguardGo
from db.jobs import FINAL
from db.tokens import create_api_token
from elysium.keys import generate_private_key, public_key
from elysium.pki import make_csr, new_private_key
from elysium.settings import Settings
from tests.api.conftest import Api, Pki, start_api
from tests.faults.balancer import Replicas, WriteLog, start_replicas
from tests.faults.figures import record
from tests.netns import Topology
from tests.stack import Process, elysium_command, settings_env, wait_for

HUB = "hub-f"
IFACE = "wg0"
NETWORK = "10.90.0.0/20"  # room for the 1,000-peer burst and more
LISTEN_PORT = 51820
PG_BIN = Path("/usr/lib/postgresql/15/bin")
_B64_KEY = re.compile(r"[A-Za-z0-9+/]{43}=")
_HEX_RUN = re.compile(r"[0-9a-fA-F]{64,}")

# Pings a tunnel sends at the least (tunnel_ping): a short burst (bench's small runs) still
# samples the data plane before, across and after its fault, however fast it is over.
MIN_PINGS = 20


class SecretLedger:
    """Every private key the faults tests made, and where it was looked for."""

    def __init__(self) -> None:
        self.keys: set[str] = set()  # WireGuard private keys, base64
        self._hex: dict[str, str] = {}  # the same keys in UAPI hex
        self.pem_lines: set[str] = set()  # body lines of PEM private keys
        self.answers: list[str] = []  # API answer bodies
        self._answers_lock = threading.Lock()
        self.logs: set[Path] = set()
        self.key_modes: dict[Path, int] = {}
        self.findings: list[str] = []
        self.databases_scanned = 0

    def private_key(self) -> str:
        """A new WireGuard private key, made as a client would and remembered."""
        key = generate_private_key()
        self.add_key(key)
        return key

    def add_key(self, key: str) -> None:
        self.keys.add(key)
        self._hex[base64.b64decode(key).hex()] = key

    def add_key_file(self, path: Path) -> None:
        """A key file on disk: its mode is checked and its content joins the secrets."""
        self.key_modes[path] = stat.S_IMODE(path.stat().st_mode)
        text = path.read_text().strip()
        if text.startswith("-----BEGIN"):
            self.pem_lines.update(line for line in text.splitlines()[1:-1] if len(line) >= 40)
        else:
            self.add_key(text)

    def record_answer(self, body: str) -> None:
        with self._answers_lock:
            self.answers.append(body)

    def leaks(self, text: str) -> list[str]:
        """The secrets found in ``text`` (shortened, never printed whole)."""
        found = {k for k in _B64_KEY.findall(text) if k in self.keys}
        for run in _HEX_RUN.findall(text):
            run = run.lower()
            found |= {
                self._hex[run[i : i + 64]]
                for i in range(len(run) - 63)
                if run[i : i + 64] in self._hex
            }
        found |= {line for line in self.pem_lines if line in text}
        return sorted(f"{s[:6]}…" for s in found)

    def scan(self, where: str, text: str) -> None:
        self.findings.extend(f"{where}: {leak}" for leak in self.leaks(text))

    def scan_database(self, url: str) -> None:
        """Every row of every table (pg_dump --data-only: text, json and bytea alike)."""
        dump = subprocess.run(
            [str(PG_BIN / "pg_dump"), "--data-only", "--no-owner", url],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
        assert "COPY public.peers" in dump, "the dump holds no peers table"
        self.scan(f"database {url.rpartition('@')[2]}", dump)
        self.databases_scanned += 1


@pytest.fixture(scope="session")
def secret_ledger(api_pki: Pki) -> SecretLedger:
    ledger = SecretLedger()
    for path in (api_pki.ca_key, api_pki.server_key):
        ledger.add_key_file(path)
    return ledger


class RecordedApi(Api):
    """An API session whose every answer goes into the ledger."""

    def __init__(self, ledger: SecretLedger, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ledger = ledger

    def request(self, method: str, path: str, **kw: Any) -> requests.Response:
        resp = super().request(method, path, **kw)
        self.ledger.record_answer(resp.text)
        return resp


class FaultStack:
    """The API, one hub worker, a control worker and beat, on the settings a test chose."""

    def __init__(
        self, settings: Settings, topology: Topology, tmp: Path, pki: Pki, ledger: SecretLedger
    ) -> None:
        self.settings = settings
        self.topology = topology
        self.tmp = tmp
        self.pki = pki
        self.ledger = ledger
        # Short: UNIX socket paths under it must fit in 108 bytes.
        self.state_dir = Path(tempfile.mkdtemp(prefix="ely-f-", dir="/tmp"))
        self.hub_dir = self.state_dir / "hubs" / HUB
        self.env = settings_env(settings)
        self.processes: list[Process] = []
        self.hub_worker: Process | None = None
        self.url = ""
        self.admin: RecordedApi | None = None
        self.admin_token = ""
        self.interface_id = 0
        self.replicas: Replicas | None = None
        self.writes = WriteLog()  # enrollments answered and refused (retrying bursts)

    # ---- processes ------------------------------------------------------------------------
    def _start(self, name: str, args: list[str]) -> Process:
        log = self.tmp / f"{name}.log"
        self.ledger.logs.add(log)
        proc = Process(args, self.env, log)
        self.processes.append(proc)
        return proc

    def start_api(self) -> None:
        log = self.tmp / "api.log"
        self.ledger.logs.add(log)
        server, self.url = start_api(self.settings, self.pki, log)
        self.processes.append(server)
        with psycopg.connect(
            self.settings.database_url, autocommit=True, row_factory=dict_row
        ) as conn:
            _, self.admin_token = create_api_token(conn, "faults", "admin", 3600, "tests")
        self.admin = self.client(self.admin_token)

    def start_api_replicas(self, count: int) -> Replicas:
        """``count`` API replicas behind HAProxy; the stack talks to them through it."""
        self.replicas = start_replicas(self.settings, self.pki, self.tmp, self.state_dir, count)
        for i in range(1, count + 1):
            self.ledger.logs.add(self.tmp / f"api{i}.log")
        self.processes += [*self.replicas.processes, self.replicas.balancer]
        self.url = self.replicas.url
        with psycopg.connect(
            self.settings.database_url, autocommit=True, row_factory=dict_row
        ) as conn:
            _, self.admin_token = create_api_token(conn, "faults", "admin", 3600, "tests")
        self.admin = self.client(self.admin_token)
        return self.replicas

    def start_hub(self) -> Process:
        self.hub_worker = self._start(
            "hub",
            elysium_command(
                "hub-worker",
                "--hub",
                HUB,
                "--netns",
                self.topology.hub,
                "--state-dir",
                str(self.state_dir),
            ),
        )
        return self.hub_worker

    def start_control(self, name: str = "") -> tuple[Process, Process]:
        """A control worker and beat (the periods come from the stack's settings); ``name``
        tells a second pair's logs apart."""
        control = self._start(
            f"control{name}", elysium_command("control-worker", "--concurrency", "2")
        )
        return control, self._start(f"beat{name}", elysium_command("beat"))

    def client(self, token: str | None = None) -> RecordedApi:
        return RecordedApi(self.ledger, self.url, self.pki.ca, token)

    # ---- arrange --------------------------------------------------------------------------
    def declare_interface(self) -> int:
        """Hub ``hub-f`` with ``wg0`` on NETWORK, built by the hub worker (which must run)."""
        assert self.admin is not None
        r = self.admin.post(
            "/v1/hubs", json={"name": HUB, "endpoint": f"{self.topology.hub_ip}:{LISTEN_PORT}"}
        )
        assert r.status_code == 201, r.text
        r = self.admin.post(
            f"/v1/hubs/{HUB}/interfaces",
            json={"name": IFACE, "network": NETWORK, "listen_port": LISTEN_PORT},
        )
        assert r.status_code == 202, r.text
        self.interface_id = int(r.json()["interface_id"])
        job = self.admin.get(f"/v1/jobs/{r.json()['job_id']}", params={"wait": 30}).json()
        assert job["status"] == "succeeded", (job, self.hub_worker and self.hub_worker.log())
        return self.interface_id

    def enrollment_token(self, uses: int) -> str:
        assert self.admin is not None
        r = self.admin.post(
            f"/v1/interfaces/{self.interface_id}/enrollment-tokens",
            json={"ttl_seconds": 3600, "uses": uses},
        )
        assert r.status_code == 201, r.text
        return str(r.json()["token"])

    # ---- act ------------------------------------------------------------------------------
    def enroll(
        self,
        count: int,
        token: str,
        threads: int = 16,
        holds: Sequence[tuple[int, threading.Event]] = (),
        retry_s: float = 0,
        csr: bool = False,
    ) -> dict[str, str]:
        """Enroll ``count`` peers with fresh keys, as fast as ``threads`` keep-alive sessions
        can; answers public key -> job id. ``holds``: post number ``n`` and later wait until
        the event is set. ``retry_s``: a post refused (dropped connection, 5xx) is sent again
        with its Idempotency-Key for that long, as elysium-client does; ``writes`` logs each
        attempt. ``csr``: each peer sends a CSR too (its job then passes the control worker,
        which signs it, on its way to the hub)."""
        keys = [public_key(self.ledger.private_key()) for _ in range(count)]
        local = threading.local()

        def post(i: int) -> tuple[str, str]:
            for start, event in holds:
                if i >= start:
                    assert event.wait(120), f"post {i} held for 120 s"
            if not hasattr(local, "api"):
                local.api = self.client()
            body = {"token": token, "name": f"f-{secrets.token_hex(4)}", "public_key": keys[i]}
            if csr:
                body["csr"] = make_csr(new_private_key()).decode()
            if retry_s:
                r = self._post_retrying(local.api, body, retry_s)
            else:
                r = local.api.post("/v1/enroll", json=body)
            assert r.status_code == 202, r.text
            return keys[i], str(r.json()["job_id"])

        with ThreadPoolExecutor(threads) as pool:
            return dict(pool.map(post, range(count)))

    def _post_retrying(
        self, api: RecordedApi, body: dict[str, str], retry_s: float
    ) -> requests.Response:
        headers = {"Idempotency-Key": secrets.token_hex(16)}
        deadline = time.monotonic() + retry_s
        while True:
            try:
                r = api.post("/v1/enroll", json=body, headers=headers, timeout=10)
                why = r.text
            except (requests.exceptions.RequestException, OSError) as exc:  # dropped, cut off
                r, why = None, str(exc)
            ok = r is not None and r.status_code < 500
            self.writes.record(ok)
            if r is not None and ok:
                return r
            if time.monotonic() > deadline:
                raise AssertionError(f"an enrollment refused for {retry_s} s: {why}")
            time.sleep(0.05)

    def job_results(self, job_ids: list[str], threads: int = 8) -> list[dict[str, Any]]:
        """Every job as ``GET /v1/jobs/{id}`` answers it to the admin (answers recorded)."""
        local = threading.local()

        def get(job_id: str) -> dict[str, Any]:
            if not hasattr(local, "api"):
                local.api = self.client(self.admin_token)
            r = local.api.get(f"/v1/jobs/{job_id}")
            assert r.status_code == 200, r.text
            return dict(r.json())

        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(get, job_ids))

    # ---- assert ---------------------------------------------------------------------------
    def query(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        """A fresh connection per call: the database may have restarted since the last."""
        with psycopg.connect(
            self.settings.database_url, autocommit=True, row_factory=dict_row, connect_timeout=5
        ) as conn:
            return conn.execute(sql, params).fetchall()

    def wait_enrolled(self, count: int, timeout: float = 60) -> None:
        """Wait until ``count`` enrollments have succeeded (a burst is under way)."""
        sql = "SELECT count(*) AS n FROM jobs WHERE kind = 'enroll_peer' AND status = 'succeeded'"
        wait_for(
            lambda: self.query(sql)[0]["n"] >= count,
            timeout,
            f"{count} enrollments to succeed",
            interval=0.02,
        )

    def job_statuses(self, job_ids: list[str]) -> dict[str, int]:
        rows = self.query(
            "SELECT status, count(*) AS n FROM jobs WHERE id = ANY(%s::uuid[]) GROUP BY status",
            (job_ids,),
        )
        return {r["status"]: r["n"] for r in rows}

    def wait_jobs(self, job_ids: list[str], timeout: float) -> dict[str, int]:
        """Wait until every job has ended; answers the count per status."""

        def ended() -> dict[str, int] | None:
            counts = self.job_statuses(job_ids)
            return counts if sum(counts.get(s, 0) for s in FINAL) == len(job_ids) else None

        try:
            return wait_for(ended, timeout, f"{len(job_ids)} jobs to end", interval=0.2)  # type: ignore[return-value]
        except TimeoutError as exc:
            raise AssertionError(f"{exc}: {self.job_statuses(job_ids)}") from exc

    def device_peers(self) -> list[PeerStats]:
        driver = UapiDriver(self.hub_dir, self.topology.hub)
        try:
            return driver.dump(IFACE)
        finally:
            driver.close()

    def assert_converged(self, keys: set[str]) -> None:
        """Device and database hold exactly ``keys``, each once, no two on one address."""
        device = self.device_peers()
        device_keys = [p.public_key for p in device]
        assert len(device_keys) == len(set(device_keys)) == len(keys)
        assert set(device_keys) == keys
        device_ips = [ip for p in device for ip in p.allowed_ips]
        assert len(device_ips) == len(set(device_ips)) == len(keys)
        rows = self.query(
            "SELECT public_key, host(address) AS address FROM peers"
            " WHERE interface_id = %s AND status = 'active'",
            (self.interface_id,),
        )
        assert {r["public_key"] for r in rows} == keys
        assert len({r["address"] for r in rows}) == len(rows) == len(keys)
        assert {f"{r['address']}/32" for r in rows} == set(device_ips)

    def outcome(self, acknowledged: dict[str, str], others: int = 0) -> dict[str, int]:
        """``lost``: acknowledged enrollments (public key -> job id) that did not end on the
        hub; ``doubled``: enrollment jobs beyond them (and ``others`` the test made itself)
        plus peers the device holds twice."""
        statuses = self.job_statuses(list(acknowledged.values()))
        device = [p.public_key for p in self.device_peers()]
        lost = len(acknowledged) - statuses.get("succeeded", 0)
        lost += len(set(acknowledged) - set(device))
        jobs = self.query("SELECT count(*) AS n FROM jobs WHERE kind = 'enroll_peer'")[0]["n"]
        doubled = jobs - len(acknowledged) - others + len(device) - len(set(device))
        return {"lost": lost, "doubled": doubled}

    def assert_applied_once(self, job_ids: list[str], max_attempts: int = 1) -> None:
        """Each job succeeded once, with one submission audit, taken at most ``max_attempts``
        times (a job a killed worker held is taken again by its successor)."""
        rows = self.query(
            "SELECT j.id, j.status, j.attempts, count(a.*) AS audits FROM jobs j"
            " LEFT JOIN audit a ON a.action = 'enroll_peer' AND a.outcome = 'accepted'"
            " AND a.detail->>'job_id' = j.id::text"
            " WHERE j.id = ANY(%s::uuid[]) GROUP BY j.id",
            (job_ids,),
        )
        assert len(rows) == len(job_ids)
        odd = [
            r
            for r in rows
            if (r["status"], r["audits"]) != ("succeeded", 1)
            or not 1 <= r["attempts"] <= max_attempts
        ]
        assert not odd, odd[:5]

    def judge(
        self,
        fault: str,
        submitted: dict[str, str],
        statuses: dict[str, int],
        pinged: tuple[int, int],
        pinging_keys: set[str],
        *,
        max_attempts: int | None = None,
        **figures: float,
    ) -> float:
        """Record ``fault``'s figures and assert what every burst across a fault must end as:
        each acknowledged enrollment (public key -> job id) succeeded and is on the hub once,
        none doubled, device and database agree (the pinging peers too), and no ping through
        the hub was lost. ``max_attempts``: also each job taken at most that often. Returns
        the longest stretch in which writes were refused."""
        pings, ping_loss = pinged
        outcome = self.outcome(submitted, others=len(pinging_keys))
        unavailable_s = self.writes.longest_refusal()
        record(fault, unavailable_s=unavailable_s, data_plane_loss=ping_loss, **figures, **outcome)
        assert statuses == {"succeeded": len(submitted)}
        assert outcome == {"lost": 0, "doubled": 0}, "a job lost, or a retried post made a second"
        self.assert_converged(set(submitted) | pinging_keys)
        if max_attempts is not None:
            self.assert_applied_once(list(submitted.values()), max_attempts=max_attempts)
        assert pings >= MIN_PINGS, f"only {pings} pings: the data plane was not sampled"
        assert ping_loss == 0, f"{ping_loss} of {pings} pings lost"
        return unavailable_s

    # ---- teardown -------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop our processes, hand what they left to the ledger, remove devices and files."""
        try:
            for proc in reversed(self.processes):
                proc.stop()
            keys = self.hub_dir / "keys"
            for key_file in sorted(keys.glob("*.key")) if keys.exists() else []:
                self.ledger.add_key_file(key_file)
            for path in self.state_dir.rglob("*.log"):
                self.ledger.scan(str(path), path.read_text(errors="replace"))
            self.ledger.scan_database(self.settings.database_url)
        finally:
            devices = WireguardGo(self.hub_dir, self.topology.hub)
            for name in devices.names():
                devices.stop(name)
            shutil.rmtree(self.state_dir, ignore_errors=True)


class Burst:
    """Enrollments posted from a thread while the test breaks things."""

    def __init__(
        self,
        stack: FaultStack,
        token: str,
        count: int,
        threads: int = 4,
        holds: Sequence[int] = (),
        retry_s: float = 0,
        csr: bool = False,
    ) -> None:
        """``holds``: post numbers where the burst waits for :meth:`release` (so that a test
        can break something while it surely still runs, whatever the machine's speed);
        ``retry_s``: see :meth:`FaultStack.enroll`."""
        self._retry_s = retry_s
        self._csr = csr
        self.keys: dict[str, str] = {}  # public key -> job id
        self.errors: list[BaseException] = []
        self._holds = [(start, threading.Event()) for start in holds]
        self._thread = threading.Thread(
            target=self._post, args=(stack, token, count, threads), name="burst"
        )
        self._thread.start()

    def _post(self, stack: FaultStack, token: str, count: int, threads: int) -> None:
        try:
            self.keys.update(
                stack.enroll(count, token, threads, self._holds, self._retry_s, self._csr)
            )
        except BaseException as exc:  # reported by join()
            self.errors.append(exc)

    def release(self) -> None:
        """Let the burst go on past its next hold."""
        next(event for _, event in self._holds if not event.is_set()).set()

    def running(self) -> bool:
        return self._thread.is_alive()

    def join(self) -> dict[str, str]:
        for _, event in self._holds:
            event.set()  # a test that failed midway must not leave the posts waiting
        self._thread.join(180)
        assert not self.errors, self.errors[0]
        return self.keys


@pytest.fixture
def make_stack(
    settings: Settings,
    netns_topology: Topology,
    tmp_path: Path,
    api_pki: Pki,
    secret_ledger: SecretLedger,
    clean_db: str,
) -> Iterator[Callable[..., FaultStack]]:
    """Build a :class:`FaultStack` on the session settings with ``overrides``; stopped after.

    Each stack gets broker keys of its own, and a 1 s heartbeat so the janitor sees its hub.
    """
    made: list[FaultStack] = []

    def make(**overrides: Any) -> FaultStack:
        s = dataclasses.replace(
            settings,
            redis_key_prefix=f"{settings.redis_key_prefix}{secrets.token_hex(2)}:",
            heartbeat_interval_s=1.0,
            **overrides,
        )
        stack = FaultStack(s, netns_topology, tmp_path, api_pki, secret_ledger)
        made.append(stack)
        return stack

    yield make
    for stack in made:
        stack.stop()


def wait_until(check: Callable[[], object], timeout: float, what: str) -> float:
    """Seconds until ``check`` held (fails after ``timeout``)."""
    started = time.monotonic()
    wait_for(check, timeout, what, interval=0.05)
    return time.monotonic() - started

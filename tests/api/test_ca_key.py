"""The internet-facing API never holds the CA key: it only checks client certificates against
the CA certificate, and the control worker signs enrollment CSRs."""

from __future__ import annotations

import base64
import os
import re
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from elysium import pki
from elysium.settings import Settings
from tests.api.conftest import Api, Pki, enrollment_token, new_key, start_api
from tests.api.test_enroll import signed_job
from tests.stack import Process, wait_for


def key_fingerprints(path: Path) -> dict[str, bytes]:
    """Byte strings that any copy of the key in memory would contain."""
    key = pki.load_private_key(path)
    scalar = key.private_numbers().private_value.to_bytes(32, "big")
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    pem_body = "".join(path.read_text().strip().splitlines()[1:-1])
    return {
        "scalar": scalar,
        "scalar (little-endian limbs)": scalar[::-1],
        "DER": der,
        "PEM text": pem_body[:48].encode(),
        "DER as base64": base64.b64encode(der)[:48],
    }


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (a gunicorn master and its workers)."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        for child in children:
            found += process_tree(int(child))
    return found


def memory_holds(pid: int, needles: dict[str, bytes]) -> list[str]:
    """Which needles appear anywhere in the readable memory of process ``pid``."""
    hits: set[str] = set()
    maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for line in maps:
            m = re.match(r"([0-9a-f]+)-([0-9a-f]+) (r\S+)", line)
            if m is None or "[vvar]" in line or "[vsyscall]" in line:
                continue
            start, end = int(m.group(1), 16), int(m.group(2), 16)
            try:
                mem.seek(start)
                chunk = mem.read(end - start)
            except (OSError, ValueError, OverflowError):
                continue
            hits |= {name for name, needle in needles.items() if needle in chunk}
    return sorted(hits)


@pytest.fixture
def deployment_api(
    settings: Settings, api_pki: Pki, tmp_path: Path
) -> Any:  # the API started with every setting of the deployment, the CA key's path included
    # Its own state directory: the session's API keeps its metrics files in the shared one.
    server, url = start_api(
        settings, api_pki, tmp_path / "api.log", ELYSIUM_STATE_DIR=str(tmp_path / "state")
    )
    try:
        yield server, url
    finally:
        server.stop()


def test_the_api_holds_no_ca_key_and_enrollment_still_gets_a_valid_certificate(
    deployment_api: Any,
    api_pki: Pki,
    interface_id: int,
    db: psycopg.Connection[Any],
    celery_worker: Any,
) -> None:
    server, url = deployment_api
    anonymous = Api(url, api_pki.ca)
    key = pki.new_private_key()
    for _ in range(3):  # every worker answers some requests: each would have signed before
        r = anonymous.post(
            "/v1/enroll",
            json={
                "token": enrollment_token(db, interface_id),
                "name": "phone",
                "public_key": new_key(),
                "csr": pki.make_csr(key).decode(),
            },
        )
        assert r.status_code == 202, r.text
        job = signed_job(db, r.json()["job_id"])
        cert = x509.load_pem_x509_certificate(job["payload"]["certificate"].encode())
        assert pki.verify_issued_by(pki.load_certificate(api_pki.ca), cert)
        assert pki.peer_id_from_certificate(cert) == r.json()["peer_id"]

    needles = key_fingerprints(api_pki.ca_key)
    pids = process_tree(server.pid)
    assert len(pids) >= 3  # the master and its two workers
    assert {pid: memory_holds(pid, needles) for pid in pids} == {pid: [] for pid in pids}


def test_the_memory_scan_finds_the_key_in_a_process_that_loaded_it(
    api_pki: Pki, tmp_path: Path
) -> None:
    """The scan above is not blind: a process that has loaded the CA key is caught."""
    holder = Process(
        [sys.executable, "-c", HOLD_KEY, str(api_pki.ca_key)], os.environ, tmp_path / "holder.log"
    )
    try:
        wait_for(lambda: "loaded" in holder.log(), 20, "the holder to load the key")
        assert memory_holds(holder.pid, key_fingerprints(api_pki.ca_key)) != []
    finally:
        holder.stop()


HOLD_KEY = """
import sys, time
from pathlib import Path
from elysium import pki
key = pki.load_private_key(Path(sys.argv[1]))
print("loaded", flush=True)
time.sleep(60)
"""

"""A peer's own calls need its client certificate (mTLS): its config and its key rotation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from cryptography import x509

from elysium import pki
from tests.api.conftest import Api, Pki, enrollment_token, new_key
from tests.api.test_enroll import signed_job


@pytest.fixture
def peer(
    api_url: str,
    anonymous: Api,
    interface_id: int,
    db: psycopg.Connection[Any],
    tmp_path: Path,
    celery_worker: Any,
) -> tuple[Api, int]:
    """An enrolled peer holding the certificate signed from its CSR."""
    key = pki.new_private_key()
    body = anonymous.post(
        "/v1/enroll",
        json={
            "token": enrollment_token(db, interface_id),
            "name": "phone",
            "public_key": new_key(),
            "csr": pki.make_csr(key).decode(),
        },
    ).json()
    row = signed_job(db, body["job_id"])
    (tmp_path / "peer.pem").write_text(row["payload"]["certificate"])
    pki.write_private_key(tmp_path / "peer.key", key)
    cert = (str(tmp_path / "peer.pem"), str(tmp_path / "peer.key"))
    return Api(api_url, anonymous.ca, cert=cert), body["peer_id"]


def test_a_peer_reads_its_config_as_json(peer: tuple[Api, int]) -> None:
    api, peer_id = peer
    r = api.get("/v1/peer/config")
    assert r.status_code == 200
    config = r.json()
    assert config["peer_id"] == peer_id and config["addresses"] == ["10.30.0.2/24"]
    assert config["allowed_ips"] == ["10.30.0.0/24"] and config["endpoint"] == "192.0.2.1:51820"


def test_a_peer_reads_its_config_as_a_wg_quick_file(peer: tuple[Api, int]) -> None:
    api, _ = peer
    r = api.get("/v1/peer/config", headers={"Accept": "text/plain"})
    assert r.headers["Content-Type"].startswith("text/plain")
    assert "[Interface]" in r.text and "Address = 10.30.0.2/24" in r.text
    assert "Endpoint = 192.0.2.1:51820" in r.text


def test_a_peer_rotates_its_key_and_reads_the_job(
    peer: tuple[Api, int], db: psycopg.Connection[Any]
) -> None:
    api, peer_id = peer
    key = new_key()
    r = api.put("/v1/peer/key", json={"public_key": key})
    assert r.status_code == 202
    assert api.get(f"/v1/jobs/{r.json()['job_id']}").json()["kind"] == "rotate_key"
    assert db.execute("SELECT public_key FROM peers WHERE id = %s", (peer_id,)).fetchone() == {
        "public_key": key
    }


def test_peer_calls_without_a_certificate_are_401(anonymous: Api) -> None:
    r = anonymous.get("/v1/peer/config")
    assert r.status_code == 401 and r.json()["error"]["code"] == "certificate_missing"
    assert anonymous.put("/v1/peer/key", json={"public_key": new_key()}).status_code == 401


def test_a_header_cannot_stand_in_for_a_certificate(anonymous: Api) -> None:
    r = anonymous.get(
        "/v1/peer/config", headers={"Elysium.Client-Cert-Der": "x", "X-Client-Cert": "x"}
    )
    assert r.status_code == 401


def test_a_certificate_from_another_ca_is_refused_by_tls(api_url: str, api_pki: Pki) -> None:
    foreign = Api(api_url, api_pki.ca, cert=(str(api_pki.foreign_cert), str(api_pki.foreign_key)))
    with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
        foreign.get("/v1/peer/config")


def test_a_removed_peer_is_refused(peer: tuple[Api, int], operator: Api) -> None:
    api, peer_id = peer
    assert operator.delete(f"/v1/peers/{peer_id}").status_code == 202
    r = api.get("/v1/peer/config")
    assert r.status_code == 403 and r.json()["error"]["code"] == "peer_not_live"


def test_an_admin_client_certificate_is_not_a_peer(
    api_url: str, api_pki: Pki, tmp_path: Path
) -> None:
    cert, key = pki.create_client_certificate(
        pki.load_certificate(api_pki.ca), pki.load_private_key(api_pki.ca_key), "alice"
    )
    pki.write_certificate(tmp_path / "a.pem", cert)
    pki.write_private_key(tmp_path / "a.key", key)
    api = Api(api_url, api_pki.ca, cert=(str(tmp_path / "a.pem"), str(tmp_path / "a.key")))
    r = api.get("/v1/peer/config")
    assert r.status_code == 401 and r.json()["error"]["code"] == "certificate_invalid"


def test_a_peer_renews_its_certificate_signed_by_the_control_worker(
    peer: tuple[Api, int], db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    api, peer_id = peer
    key = pki.new_private_key()
    r = api.post("/v1/peer/certificate", json={"csr": pki.make_csr(key).decode()})
    assert r.status_code == 202, r.text
    job = api.get(f"/v1/jobs/{r.json()['job_id']}", params={"wait": 15}).json()
    assert job["kind"] == "renew_certificate" and job["status"] == "succeeded", job
    cert = x509.load_pem_x509_certificate(job["result"]["certificate"].encode())
    assert pki.peer_id_from_certificate(cert) == peer_id
    serial = db.execute("SELECT certificate_serial FROM peers WHERE id = %s", (peer_id,)).fetchone()
    assert serial == {"certificate_serial": pki.serial_hex(cert)}
    pki.write_certificate(tmp_path / "new.pem", cert)
    pki.write_private_key(tmp_path / "new.key", key)
    renewed = Api(
        api.base, Path(api.ca), cert=(str(tmp_path / "new.pem"), str(tmp_path / "new.key"))
    )
    assert renewed.get("/v1/peer/config").json()["peer_id"] == peer_id


def test_a_bad_csr_or_no_certificate_cannot_renew(peer: tuple[Api, int], anonymous: Api) -> None:
    api, _ = peer
    r = api.post("/v1/peer/certificate", json={"csr": "not a csr"})
    assert r.status_code == 400 and "csr" in r.json()["error"]["fields"]
    csr = pki.make_csr(pki.new_private_key()).decode()
    assert anonymous.post("/v1/peer/certificate", json={"csr": csr}).status_code == 401


def renew(api: Api, tmp_path: Path) -> tuple[Api, dict[str, Any]]:
    """Renew ``api``'s certificate; the same peer speaking with the new one, and the job."""
    key = pki.new_private_key()
    r = api.post("/v1/peer/certificate", json={"csr": pki.make_csr(key).decode()})
    assert r.status_code == 202, r.text
    job = api.get(f"/v1/jobs/{r.json()['job_id']}", params={"wait": 15}).json()
    assert job["status"] == "succeeded", job
    (tmp_path / "new.pem").write_text(job["result"]["certificate"])
    pki.write_private_key(tmp_path / "new.key", key)
    cert = (str(tmp_path / "new.pem"), str(tmp_path / "new.key"))
    return Api(api.base, Path(api.ca), cert=cert), job


def test_a_replaced_certificate_is_refused_once_the_new_one_is_issued(
    peer: tuple[Api, int], db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    old, peer_id = peer
    rotated = old.put("/v1/peer/key", json={"public_key": new_key()})
    assert rotated.status_code == 202, rotated.text
    new, renewal = renew(old, tmp_path)
    jobs_before = db.execute("SELECT count(*) AS n FROM jobs").fetchone()
    for r in (
        old.get("/v1/peer/config"),
        old.put("/v1/peer/key", json={"public_key": new_key()}),
        old.post(
            "/v1/peer/certificate", json={"csr": pki.make_csr(pki.new_private_key()).decode()}
        ),
        old.get(f"/v1/jobs/{rotated.json()['job_id']}"),  # a job of the peer, not the renewal
    ):
        assert r.status_code == 401 and r.json()["error"]["code"] == "certificate_replaced", r.text
    assert db.execute("SELECT count(*) AS n FROM jobs").fetchone() == jobs_before  # nothing written
    # The replaced certificate can still fetch the renewal that replaced it (a client whose
    # answer was lost asks again), and the new one is the peer's.
    again = old.get(f"/v1/jobs/{renewal['id']}")
    assert again.status_code == 200 and again.json()["result"] == renewal["result"]
    assert new.get("/v1/peer/config").json()["peer_id"] == peer_id


def test_a_certificate_the_server_did_not_record_is_refused(
    peer: tuple[Api, int], api_pki: Pki, tmp_path: Path
) -> None:
    """Signed by the CA for this peer, but not the one its enrollment or renewal recorded."""
    api, peer_id = peer
    key = pki.new_private_key()
    cert = pki.sign_csr(
        pki.load_certificate(api_pki.ca),
        pki.load_private_key(api_pki.ca_key),
        pki.make_csr(key).decode(),
        peer_id,
        30,
    )
    pki.write_certificate(tmp_path / "other.pem", cert)
    pki.write_private_key(tmp_path / "other.key", key)
    other = Api(
        api.base, Path(api.ca), cert=(str(tmp_path / "other.pem"), str(tmp_path / "other.key"))
    )
    r = other.get("/v1/peer/config")
    assert r.status_code == 401 and r.json()["error"]["code"] == "certificate_replaced"
    assert api.get("/v1/peer/config").status_code == 200


def test_a_replaced_certificate_of_a_removed_peer_is_refused(
    peer: tuple[Api, int], operator: Api, tmp_path: Path
) -> None:
    old, peer_id = peer
    new, _ = renew(old, tmp_path)
    assert operator.delete(f"/v1/peers/{peer_id}").status_code == 202
    for api in (old, new):
        r = api.get("/v1/peer/config")
        assert r.status_code == 403 and r.json()["error"]["code"] == "peer_not_live"

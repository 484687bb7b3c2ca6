"""Enrollment: a peer redeems a token; token use, peer, certificate and job commit together."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
from cryptography import x509

from db.peers import finish_removal
from elysium import pki
from tests.api.conftest import Api, enrollment_token, new_key
from tests.stack import wait_for


def enroll(api: Api, token: str, **extra: Any) -> Any:
    return api.post(
        "/v1/enroll", json={"token": token, "name": "phone", "public_key": new_key(), **extra}
    )


def test_enrollment_records_the_peer_and_queues_its_job(
    anonymous: Api, interface_id: int, db: psycopg.Connection[Any]
) -> None:
    r = enroll(anonymous, enrollment_token(db, interface_id))
    assert r.status_code == 202
    body = r.json()
    job = db.execute(
        "SELECT kind, queue, peer_id FROM jobs WHERE id = %s", (body["job_id"],)
    ).fetchone()
    assert job == {"kind": "enroll_peer", "queue": "hub.hub-a", "peer_id": body["peer_id"]}
    assert db.execute("SELECT uses_left FROM enrollment_tokens").fetchone() == {"uses_left": 0}


def signed_job(db: psycopg.Connection[Any], job_id: str) -> dict[str, Any]:
    """The enrollment job once the control side has signed its CSR and handed it on."""

    def moved() -> dict[str, Any] | None:
        row = db.execute("SELECT queue, payload FROM jobs WHERE id = %s", (job_id,)).fetchone()
        return row if row["queue"] != "control" else None

    return wait_for(moved, 15, "the control worker to sign the CSR")  # type: ignore[return-value]


def test_a_csr_is_signed_by_the_control_worker_naming_the_peer(
    anonymous: Api, interface_id: int, db: psycopg.Connection[Any], celery_worker: Any
) -> None:
    csr = pki.make_csr(pki.new_private_key()).decode()
    body = enroll(anonymous, enrollment_token(db, interface_id), csr=csr).json()
    job = signed_job(db, body["job_id"])
    assert job["queue"] == "hub.hub-a"
    cert = x509.load_pem_x509_certificate(job["payload"]["certificate"].encode())
    assert pki.peer_id_from_certificate(cert) == body["peer_id"]
    serial = db.execute("SELECT certificate_serial FROM peers").fetchone()["certificate_serial"]
    assert serial == pki.serial_hex(cert)


def test_an_enrollment_with_a_csr_waits_on_the_control_queue_until_signed(
    anonymous: Api, interface_id: int, db: psycopg.Connection[Any]
) -> None:
    csr = pki.make_csr(pki.new_private_key()).decode()
    body = enroll(anonymous, enrollment_token(db, interface_id), csr=csr).json()
    job = db.execute("SELECT queue, payload FROM jobs WHERE id = %s", (body["job_id"],)).fetchone()
    assert job["queue"] == "control" and "certificate" not in job["payload"]


def test_a_used_up_token_is_410_and_an_unknown_one_401(
    anonymous: Api, interface_id: int, db: psycopg.Connection[Any]
) -> None:
    token = enrollment_token(db, interface_id)
    assert enroll(anonymous, token).status_code == 202
    again = enroll(anonymous, token)
    assert again.status_code == 410 and again.json()["error"]["code"] == "token_used_up"
    bad = enroll(anonymous, "elyenr_unknown")
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "token_invalid"


def test_an_expired_token_is_410(
    anonymous: Api, interface_id: int, db: psycopg.Connection[Any]
) -> None:
    token = enrollment_token(db, interface_id)
    db.execute("UPDATE enrollment_tokens SET expires_at = now() - interval '1 second'")
    r = enroll(anonymous, token)
    assert r.status_code == 410 and r.json()["error"]["code"] == "token_expired"


def test_a_subnet_the_token_does_not_allow_is_refused_and_the_use_given_back(
    anonymous: Api, interface_id: int, db: psycopg.Connection[Any]
) -> None:
    token = enrollment_token(db, interface_id, subnets=["192.168.0.0/16"])
    r = enroll(anonymous, token, subnets=["172.16.0.0/24"])
    assert r.status_code == 400 and "subnets.0" in r.json()["error"]["fields"]
    assert db.execute("SELECT uses_left FROM enrollment_tokens").fetchone() == {"uses_left": 1}
    assert db.execute("SELECT count(*) AS n FROM peers").fetchone() == {"n": 0}
    assert enroll(anonymous, token, subnets=["192.168.5.0/24"]).status_code == 202


def test_a_bad_csr_or_key_writes_nothing(
    anonymous: Api, interface_id: int, db: psycopg.Connection[Any]
) -> None:
    token = enrollment_token(db, interface_id)
    r = enroll(anonymous, token, csr="-----BEGIN CERTIFICATE REQUEST-----\nxx\n")
    assert r.status_code == 400 and "csr" in r.json()["error"]["fields"]
    r = anonymous.post("/v1/enroll", json={"token": token, "name": "x", "public_key": "AAAA"})
    assert r.status_code == 400 and "public_key" in r.json()["error"]["fields"]
    assert db.execute("SELECT uses_left FROM enrollment_tokens").fetchone() == {"uses_left": 1}
    assert db.execute("SELECT count(*) AS n FROM jobs WHERE kind = 'enroll_peer'").fetchone() == {
        "n": 0
    }


def test_twenty_concurrent_redemptions_of_a_one_use_token_succeed_once(
    api_url: str, anonymous: Api, interface_id: int, db: psycopg.Connection[Any]
) -> None:
    token = enrollment_token(db, interface_id, uses=1)

    def attempt(_: int) -> Any:
        return enroll(Api(api_url, anonymous.ca), token)

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(attempt, range(20)))
    statuses = sorted(r.status_code for r in results)
    assert statuses.count(202) == 1
    assert all(
        r.status_code in (409, 410) and r.json()["error"]["code"]
        for r in results
        if r.status_code != 202
    )
    assert db.execute("SELECT count(*) AS n FROM peers").fetchone() == {"n": 1}
    # the refused ones took no address: the next enrollment gets the one after the first
    token = enrollment_token(db, interface_id, uses=1)
    assert enroll(Api(api_url, anonymous.ca), token).status_code == 202
    addresses = db.execute("SELECT host(address) AS a FROM peers ORDER BY id").fetchall()
    assert [r["a"] for r in addresses] == ["10.30.0.2", "10.30.0.3"]


def test_an_idempotent_retry_of_an_enrollment_redeems_once(
    anonymous: Api, interface_id: int, db: psycopg.Connection[Any]
) -> None:
    token = enrollment_token(db, interface_id, uses=5)
    body = {"token": token, "name": "phone", "public_key": new_key()}
    first = anonymous.post("/v1/enroll", json=body, headers={"Idempotency-Key": "e1"})
    again = anonymous.post("/v1/enroll", json=body, headers={"Idempotency-Key": "e1"})
    assert first.json()["job_id"] == again.json()["job_id"]
    assert db.execute("SELECT uses_left FROM enrollment_tokens").fetchone() == {"uses_left": 4}


def test_concurrent_enrollments_get_distinct_lowest_addresses_and_released_ones_back(
    api_url: str, anonymous: Api, interface_id: int, db: psycopg.Connection[Any]
) -> None:
    token = enrollment_token(db, interface_id, uses=40)

    def attempt(_: int) -> Any:
        return enroll(Api(api_url, anonymous.ca), token)

    with ThreadPoolExecutor(30) as pool:
        assert {r.status_code for r in pool.map(attempt, range(30))} == {202}
    rows = db.execute("SELECT id, host(address) AS a FROM peers ORDER BY address").fetchall()
    assert [r["a"] for r in rows] == [f"10.30.0.{i}" for i in range(2, 32)]
    gone = [r["id"] for r in rows if r["a"] in ("10.30.0.7", "10.30.0.9")]
    db.execute("UPDATE peers SET status = 'removing' WHERE id = ANY(%s)", (gone,))
    with db.transaction():
        finish_removal(db, gone)
    with ThreadPoolExecutor(3) as pool:
        assert {r.status_code for r in pool.map(attempt, range(3))} == {202}
    live = db.execute(
        "SELECT host(address) AS a FROM peers WHERE address IS NOT NULL ORDER BY address"
    ).fetchall()
    assert [r["a"] for r in live] == [f"10.30.0.{i}" for i in range(2, 33)]
    assert db.execute("SELECT uses_left FROM enrollment_tokens").fetchone() == {"uses_left": 7}


def _written(db: psycopg.Connection[Any], job_id: str) -> dict[str, Any]:
    """What an enrollment wrote: its job, the job's audit record and the peer, without what
    differs from one enrollment to the next (ids, names, keys, addresses, times)."""
    job = db.execute(
        "SELECT kind, status, queue, payload - 'csr' AS payload, submitter, hub_id,"
        " interface_id, peer_id, enqueued_at IS NOT NULL AS enqueued FROM jobs WHERE id = %s",
        (job_id,),
    ).fetchone()
    audit = db.execute(
        "SELECT actor, action, target, outcome, detail FROM audit WHERE detail->>'job_id' = %s",
        (job_id,),
    ).fetchall()
    peer = db.execute(
        "SELECT interface_id, address6, subnets, tags, enabled, status, expires_at, created_by,"
        " enrollment_token_id FROM peers WHERE id = %s",
        (job["peer_id"],),
    ).fetchone()
    assert [a["target"] for a in audit] == [f"peer:{job['peer_id']}"]
    assert audit[0]["detail"] == {"job_id": job_id}
    return {
        "job": {**job, "peer_id": None},
        "audit": [{**a, "target": None, "detail": None} for a in audit],
        "peer": peer,
    }


def test_the_one_statement_enrollment_writes_what_the_step_by_step_one_writes(
    anonymous: Api, interface_id: int, db: psycopg.Connection[Any]
) -> None:
    # Without an Idempotency-Key the common case is one statement (db/enrollment.py); with
    # one it goes step by step (services/jobs.py): both must record the same.
    token = enrollment_token(db, interface_id, uses=4)
    db.execute("UPDATE enrollment_tokens SET tags = '{ops}'")
    csr = pki.make_csr(pki.new_private_key()).decode()
    for extra in ({}, {"csr": csr}):
        fast = enroll(anonymous, token, **extra).json()
        slow = anonymous.post(
            "/v1/enroll",
            json={"token": token, "name": "laptop", "public_key": new_key(), **extra},
            headers={"Idempotency-Key": f"k{len(extra)}"},
        ).json()
        assert fast["peer_id"] != slow["peer_id"]
        assert _written(db, fast["job_id"]) == _written(db, slow["job_id"])
        assert _written(db, fast["job_id"])["peer"]["tags"] == ["ops"]
    addresses = db.execute("SELECT host(address) AS a FROM peers ORDER BY id").fetchall()
    assert [r["a"] for r in addresses] == ["10.30.0.2", "10.30.0.3", "10.30.0.4", "10.30.0.5"]
    assert db.execute("SELECT uses_left FROM enrollment_tokens").fetchone() == {"uses_left": 0}


def test_a_full_network_and_a_key_in_use_are_refused_and_the_use_given_back(
    admin: Api, anonymous: Api, db: psycopg.Connection[Any]
) -> None:
    admin.post("/v1/hubs", json={"name": "hub-s", "endpoint": "192.0.2.9"})
    r = admin.post(
        "/v1/hubs/hub-s/interfaces",
        json={"name": "wg9", "network": "10.31.0.0/29", "listen_port": 51829},
    )
    small = int(r.json()["interface_id"])  # hosts .1 (the hub) to .6
    token = enrollment_token(db, small, uses=10)
    key = new_key()
    assert (
        anonymous.post(
            "/v1/enroll", json={"token": token, "name": "first", "public_key": key}
        ).status_code
        == 202
    )
    again = anonymous.post("/v1/enroll", json={"token": token, "name": "dup", "public_key": key})
    assert again.status_code == 409 and again.json()["error"]["code"] == "public_key_in_use"
    assert [enroll(anonymous, token).status_code for _ in range(4)] == [202, 202, 202, 202]
    full = enroll(anonymous, token)
    assert full.status_code == 409 and full.json()["error"]["code"] == "network_full"
    assert db.execute("SELECT uses_left FROM enrollment_tokens").fetchone() == {"uses_left": 5}
    assert db.execute("SELECT max(host(address)) AS a FROM peers").fetchone() == {"a": "10.31.0.6"}


def test_enrollments_at_once_each_get_their_own_answer_counted_as_through_the_app(
    anonymous: Api, interface_id: int, db: psycopg.Connection[Any]
) -> None:
    # The worker answers a plain accepted enrollment itself, enrollments with one token that
    # come together share one statement, and anything unusual goes to the app.
    token = enrollment_token(db, interface_id, uses=12)
    before = accepted_count(anonymous)
    taken = new_key()
    bodies = [{"token": token, "name": f"p{i}", "public_key": new_key()} for i in range(8)]
    bodies += [{"token": token, "name": "same", "public_key": taken}] * 2

    def post(body: dict[str, Any]) -> Any:
        return Api(anonymous.base, anonymous.ca).post("/v1/enroll", json=body)

    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(post, bodies))
    assert [r.status_code for r in answers[:8]] == [202] * 8
    assert sorted(r.status_code for r in answers[8:]) == [202, 409]  # one key, once
    accepted = [r.json() for r in answers if r.status_code == 202]
    assert all(set(a) == {"job_id", "status", "interface_id", "peer_id"} for a in accepted)
    assert len({a["peer_id"] for a in accepted}) == 9
    assert answers[0].headers["Content-Type"] == "application/json"
    rows = db.execute("SELECT host(address) AS a FROM peers ORDER BY address").fetchall()
    assert [r["a"] for r in rows] == [f"10.30.0.{n}" for n in range(2, 11)]  # lowest, no gap
    assert db.execute("SELECT uses_left FROM enrollment_tokens").fetchone() == {"uses_left": 3}
    unusual = anonymous.post(  # a charset it does not read, and a field the schema refuses
        "/v1/enroll",
        data=json.dumps({"token": token, "name": "x", "public_key": new_key(), "y": 1}),
        headers={"Content-Type": "application/json; charset=latin-1"},
    )
    assert unusual.status_code == 400 and "y" in unusual.json()["error"]["fields"]
    assert accepted_count(anonymous) - before == 9


def accepted_count(api: Api) -> float:
    head = 'elysium_api_requests_total{method="POST",route="/v1/enroll",status="202"}'
    for line in api.get("/metrics").text.splitlines():
        if line.startswith(head):
            return float(line.rsplit(" ", 1)[1])
    return 0.0

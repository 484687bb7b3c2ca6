"""Control tasks on an in-process worker (pytest-celery's celery_app / celery_worker) with the
real Redis broker and PostgreSQL: signing enrollments, and the janitor sending a lost message
to where its job waits."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from celery.worker import state as worker_state
from cryptography import x509
from psycopg import Connection
from psycopg.rows import DictRow

from db import jobs as jobs_db
from db.enrollment_tokens import create_enrollment_token
from db.interfaces import create_interface
from elysium import pki
from elysium.keys import generate_private_key, public_key
from elysium.queue import CONTROL_JANITOR, CONTROL_RUN_JOB, JobQueue
from elysium.queue import celery_config as elysium_celery_config
from elysium.settings import Settings
from services.enrollment import enroll_peer
from services.hubs import declare_hub
from tests.stack import wait_for
from workers.runtime import SETTINGS_KEY


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    cert, key = pki.create_ca()
    pki.write_certificate(tmp_path / "ca.pem", cert)
    pki.write_private_key(tmp_path / "ca.key", key)
    return tmp_path


@pytest.fixture
def celery_config(settings: Settings, ca_dir: Path) -> dict[str, object]:
    signer = dataclasses.replace(
        settings, tls_ca=ca_dir / "ca.pem", ca_key=ca_dir / "ca.key", job_requeue_after_s=0.0
    )
    return {**elysium_celery_config(signer), SETTINGS_KEY: signer}


@pytest.fixture
def token(conn: Connection[DictRow]) -> str:
    declare_hub(conn, "tests", "hub-c", "192.0.2.7")
    with conn.transaction():
        iface = create_interface(conn, 1, "wg0", "10.60.0.0/24", None, 51820, None, [], 25)
    return create_enrollment_token(conn, iface["id"], None, 600, 5, [], "tests")[1]


def enroll(conn: Connection[DictRow], queue: JobQueue, token: str, csr: str) -> str:
    sub = enroll_peer(
        conn,
        queue,
        submitter="enroll:test",
        token=token,
        name="laptop",
        public_key=public_key(generate_private_key()),
        csr=csr,
    )
    return str(sub.job["id"])


def queue_of(conn: Connection[DictRow], job_id: str) -> Any:
    return wait_for(
        lambda: (j := jobs_db.get_job(conn, job_id))["queue"] != "control" and j,
        15,
        f"job {job_id} to leave the control queue",
    )


def test_the_control_worker_signs_and_hands_the_job_to_its_hub(
    conn: Connection[DictRow], token: str, celery_app: Any, celery_worker: Any, ca_dir: Path
) -> None:
    job_id = enroll(
        conn,
        JobQueue(celery_app.conf[SETTINGS_KEY], celery_app),
        token,
        pki.make_csr(pki.new_private_key()).decode(),
    )
    job = queue_of(conn, job_id)
    assert job["queue"] == "hub.hub-c" and job["status"] == "queued"
    cert = x509.load_pem_x509_certificate(job["payload"]["certificate"].encode())
    assert pki.verify_issued_by(pki.load_certificate(ca_dir / "ca.pem"), cert)
    assert pki.peer_id_from_certificate(cert) == job["peer_id"]


def test_a_redelivered_signing_message_signs_once(
    conn: Connection[DictRow], token: str, celery_app: Any, celery_worker: Any
) -> None:
    queue = JobQueue(celery_app.conf[SETTINGS_KEY], celery_app)
    job_id = enroll(conn, queue, token, pki.make_csr(pki.new_private_key()).decode())
    first = queue_of(conn, job_id)["payload"]["certificate"]
    ran = worker_state.total_count[CONTROL_RUN_JOB]
    celery_app.send_task(CONTROL_RUN_JOB, kwargs={"job_id": job_id})
    wait_for(lambda: worker_state.total_count[CONTROL_RUN_JOB] > ran, 15, "the redelivery to run")
    assert jobs_db.get_job(conn, job_id)["payload"]["certificate"] == first


def test_the_janitor_sends_a_lost_signing_message_to_the_control_queue(
    conn: Connection[DictRow], token: str, celery_app: Any, celery_worker: Any
) -> None:
    class Lost(JobQueue):  # the broker took the job row's message and lost it
        def offer_control_job(self, job_id: Any) -> bool:
            return False

    settings = celery_app.conf[SETTINGS_KEY]
    job_id = enroll(
        conn, Lost(settings, celery_app), token, pki.make_csr(pki.new_private_key()).decode()
    )
    assert jobs_db.get_job(conn, job_id)["queue"] == "control"
    celery_app.send_task(CONTROL_JANITOR)
    assert queue_of(conn, job_id)["queue"] == "hub.hub-c"

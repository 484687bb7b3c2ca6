"""Jobs: the submitter (or an admin) reads a job; ``wait=N`` answers when the job ends."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg

from db.jobs import start_job, succeed_job
from tests.api.conftest import Api, enrollment_token, new_key


def finish_later(
    database_url: str, job_id: str, after_s: float, result: dict[str, Any]
) -> threading.Thread:
    """Play the hub worker: end the job after a while."""

    def run() -> None:
        time.sleep(after_s)
        with psycopg.connect(database_url, autocommit=True) as c:
            start_job(c, job_id)  # type: ignore[arg-type]
            succeed_job(c, job_id, result)  # type: ignore[arg-type]

    t = threading.Thread(target=run)
    t.start()
    return t


def test_the_submitter_reads_its_job(
    admin: Api, interface_id: int, db: psycopg.Connection[Any]
) -> None:
    job_id = str(db.execute("SELECT id FROM jobs").fetchone()["id"])  # type: ignore[index]
    r = admin.get(f"/v1/jobs/{job_id}")
    assert r.status_code == 200
    job = r.json()
    assert job["id"] == job_id and job["kind"] == "create_interface"
    assert job["status"] == "queued" and job["result"] is None and job["error"] is None


def test_wait_returns_as_soon_as_the_job_ends(
    admin: Api, interface_id: int, clean_db: str, db: psycopg.Connection[Any]
) -> None:
    job_id = str(db.execute("SELECT id FROM jobs").fetchone()["id"])  # type: ignore[index]
    t = finish_later(clean_db, job_id, 1.0, {"public_key": "k"})
    started = time.monotonic()
    job = admin.get(f"/v1/jobs/{job_id}", params={"wait": 10}).json()
    took = time.monotonic() - started
    t.join()
    assert job["status"] == "succeeded" and job["result"] == {"public_key": "k"}
    # Woken by the job's end at 1 s, not by its wait of 10 s (how soon: a figure for bench/).
    assert 0.9 <= took < 9


def test_wait_gives_up_after_n_seconds(
    admin: Api, interface_id: int, db: psycopg.Connection[Any]
) -> None:
    job_id = str(db.execute("SELECT id FROM jobs").fetchone()["id"])  # type: ignore[index]
    started = time.monotonic()
    job = admin.get(f"/v1/jobs/{job_id}", params={"wait": 1}).json()
    assert job["status"] == "queued" and 0.9 <= time.monotonic() - started < 30


def test_wait_is_capped_by_the_server(
    admin: Api, interface_id: int, db: psycopg.Connection[Any]
) -> None:
    job_id = str(db.execute("SELECT id FROM jobs").fetchone()["id"])  # type: ignore[index]
    started = time.monotonic()
    assert admin.get(f"/v1/jobs/{job_id}", params={"wait": 600}).status_code == 200
    assert time.monotonic() - started < 60  # the test server's job_wait_max_s is 10, not 600


def test_others_jobs_are_404_but_admins_see_all(
    admin: Api, operator: Api, reader: Api, interface_id: int
) -> None:
    job_id = operator.post(
        f"/v1/interfaces/{interface_id}/peers", json={"name": "x", "public_key": new_key()}
    ).json()["job_id"]
    assert operator.get(f"/v1/jobs/{job_id}").status_code == 200
    assert admin.get(f"/v1/jobs/{job_id}").status_code == 200
    r = reader.get(f"/v1/jobs/{job_id}")
    assert r.status_code == 404 and r.json()["error"]["code"] == "job_not_found"


def test_an_enrolling_peer_reads_its_job_with_the_enrollment_token(
    anonymous: Api, interface_id: int, db: psycopg.Connection[Any]
) -> None:
    token = enrollment_token(db, interface_id)
    job_id = anonymous.post(
        "/v1/enroll", json={"token": token, "name": "p", "public_key": new_key()}
    ).json()["job_id"]
    mine = anonymous.get(f"/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {token}"})
    assert mine.status_code == 200 and mine.json()["kind"] == "enroll_peer"
    other = enrollment_token(db, interface_id)
    r = anonymous.get(f"/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {other}"})
    assert r.status_code == 404


def test_a_malformed_or_unknown_job_id_is_404(admin: Api) -> None:
    assert admin.get("/v1/jobs/not-a-uuid").status_code == 404
    assert admin.get("/v1/jobs/00000000-0000-4000-8000-000000000000").status_code == 404

"""Jobs: the submitter (or an admin) reads a job; ``wait=N`` answers when the job ends."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg

from db.jobs import start_job, succeed_job
from elysium.settings import Settings
from tests.api.conftest import Api, Pki, enrollment_token, new_key, start_api


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


class ConnectionCount:
    """The most connections to the test database seen while it runs (sampled in a thread)."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.most = self.listening = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample)

    def __enter__(self) -> ConnectionCount:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        with psycopg.connect(self.database_url, autocommit=True) as c:
            while not self._stop.wait(0.02):
                total, listening = c.execute(
                    "SELECT count(*), count(*) FILTER (WHERE query LIKE 'LISTEN %%')"
                    " FROM pg_stat_activity WHERE datname = current_database()"
                ).fetchone()  # type: ignore[misc]
                self.most = max(self.most, total)
                self.listening = max(self.listening, listening)


def test_many_waits_share_one_listener_per_worker_and_each_wakes_on_its_own_job(
    operator: Api, interface_id: int, clean_db: str, settings: Settings
) -> None:
    waiters = 60
    jobs = [
        operator.post(
            f"/v1/interfaces/{interface_id}/peers", json={"name": f"w{i}", "public_key": new_key()}
        ).json()["job_id"]
        for i in range(waiters)
    ]
    sessions = [Api(operator.base, Path(operator.ca)) for _ in jobs]
    for s in sessions:
        s.session.headers.update(operator.session.headers)
    sent = threading.Semaphore(0)

    def wait(i: int) -> dict[str, Any]:
        sent.release()
        return sessions[i].get(f"/v1/jobs/{jobs[i]}", params={"wait": 10}).json()

    def finish(ids: list[str]) -> None:
        with psycopg.connect(clean_db, autocommit=True) as c:
            for job_id in ids:
                start_job(c, job_id)  # type: ignore[arg-type]
                succeed_job(c, job_id, {"n": job_id})  # type: ignore[arg-type]

    # The API's own connections: each worker's pool and its one listener; this test holds
    # three (the fixtures', the sampler's, the finisher's). A connection per wait is 60 more.
    bound = 2 * settings.db_pool_max + 2 + 3
    with ConnectionCount(clean_db) as count, ThreadPoolExecutor(waiters) as pool:
        answers = [pool.submit(wait, i) for i in range(waiters)]
        for _ in jobs:
            assert sent.acquire(timeout=10)
        finish(jobs[::2])
        evens = [answers[i].result(timeout=15) for i in range(0, waiters, 2)]
        assert all(a["status"] == "succeeded" and a["result"] == {"n": a["id"]} for a in evens)
        assert not any(answers[i].done() for i in range(1, waiters, 2))  # not their job's end
        finish(jobs[1::2])
        odds = [answers[i].result(timeout=15) for i in range(1, waiters, 2)]
        assert all(a["status"] == "succeeded" and a["result"] == {"n": a["id"]} for a in odds)
    assert count.listening <= 2  # one per API worker, whatever the number of waits
    assert count.most <= bound


def test_job_waits_hold_no_thread_and_each_ends_when_its_job_does_or_its_wait_runs_out(
    operator: Api,
    interface_id: int,
    clean_db: str,
    settings: Settings,
    api_pki: Pki,
    tmp_path: Path,
) -> None:
    """Four times as many job waits as the worker has threads: they all wait (parked by
    api/gunicorn_worker.py, as followers are), /healthz still answers, the ended job's waits
    answer at its end, and the others at their own deadline, as they are."""
    server, url = start_api(
        settings, api_pki, tmp_path / "api.log", ELYSIUM_API_WORKERS="1", ELYSIUM_API_THREADS="4"
    )
    try:
        ended, open_ = (
            operator.post(
                f"/v1/interfaces/{interface_id}/peers", json={"name": n, "public_key": new_key()}
            ).json()["job_id"]
            for n in ("ends", "stays")
        )
        sessions = [Api(url, api_pki.ca) for _ in range(16)]
        for s in sessions:
            s.session.headers.update(operator.session.headers)
        waits = {ended: 30, open_: 6}

        def wait(i: int) -> tuple[dict[str, Any], float]:
            job_id = (ended, open_)[i % 2]
            started = time.monotonic()
            r = sessions[i].get(f"/v1/jobs/{job_id}", params={"wait": waits[job_id]}, timeout=60)
            return r.json(), time.monotonic() - started

        with ThreadPoolExecutor(len(sessions)) as pool:
            answers = [pool.submit(wait, i) for i in range(len(sessions))]
            time.sleep(2)
            assert not any(a.done() for a in answers)  # all wait
            started = time.monotonic()
            assert Api(url, api_pki.ca).get("/healthz", timeout=10).ok  # a thread is free
            assert time.monotonic() - started < 5
            finish_later(clean_db, ended, 0, {"n": 1}).join()
            done = [answers[i].result(timeout=20) for i in range(0, len(sessions), 2)]
            assert all(job["status"] == "succeeded" and job["id"] == ended for job, _ in done)
            assert all(took < 25 for _, took in done)  # at the job's end, not the wait's
            stayed = [answers[i].result(timeout=30) for i in range(1, len(sessions), 2)]
            assert all(job["status"] == "queued" and job["id"] == open_ for job, _ in stayed)
            assert all(5.5 <= took < 30 for _, took in stayed)  # their own wait of 6 s ran out
    finally:
        server.stop()

"""A peer follows its config by version: ``GET /v1/peer/config?version=V&wait=N`` answers at
once when V is old, else when something in the config moves (a PostgreSQL notification wakes
it), else after N seconds with the same version."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from elysium.settings import Settings
from tests.api.conftest import Api, Pki, start_api
from tests.api.test_peer_self import peer, renew

__all__ = ["peer"]  # the fixture, shared


def later(seconds: float, action: Callable[[], Any]) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(seconds), action()), daemon=True)
    thread.start()
    return thread


def test_a_config_carries_a_version_that_stays_while_nothing_moves(
    peer: tuple[Api, int],
) -> None:
    api, _ = peer
    first = api.get("/v1/peer/config").json()
    assert len(first["version"]) == 16
    assert api.get("/v1/peer/config").json()["version"] == first["version"]


def test_an_old_version_is_answered_at_once(peer: tuple[Api, int]) -> None:
    api, _ = peer
    started = time.monotonic()
    r = api.get("/v1/peer/config", params={"version": "old", "wait": 60})
    assert r.status_code == 200 and r.json()["version"] != "old"
    assert time.monotonic() - started < 30  # generous, far below the wait it did not spend


def test_the_current_version_waits_and_comes_back_unchanged(peer: tuple[Api, int]) -> None:
    api, _ = peer
    version = api.get("/v1/peer/config").json()["version"]
    started = time.monotonic()
    r = api.get("/v1/peer/config", params={"version": version, "wait": 1.5})
    assert r.json()["version"] == version
    assert 1.4 <= time.monotonic() - started < 30  # it waited; generous above


@pytest.mark.parametrize(
    ("change", "check"),
    [
        (
            "UPDATE interfaces SET dns = '{10.30.0.53}'",
            lambda c: c["dns"] == ["10.30.0.53"],
        ),
        (
            "UPDATE hubs SET endpoint = '192.0.2.9'",
            lambda c: c["endpoint"] == "192.0.2.9:51820",
        ),
        (
            "UPDATE interfaces SET public_key = 'JGKBcxOwrUMO/aFlAIbeYMeKT0MY5PCpLa2qxhKbB0o='",
            lambda c: c["hub_public_key"].startswith("JGKBcx"),
        ),
    ],
    ids=["dns", "endpoint", "hub-key"],
)
def test_a_waiting_peer_wakes_when_its_interface_or_hub_moves(
    peer: tuple[Api, int], db: psycopg.Connection[Any], change: str, check: Any
) -> None:
    api, _ = peer
    version = api.get("/v1/peer/config").json()["version"]
    later(0.5, lambda: db.execute(change))
    started = time.monotonic()
    r = api.get("/v1/peer/config", params={"version": version, "wait": 60})
    took = time.monotonic() - started
    config = r.json()
    assert config["version"] != version and check(config), config
    # Woken by the change, not at the end of its wait (generous: speed is bench/follow.py's).
    assert 0.4 < took < 30


def test_a_waiting_peer_wakes_when_another_peer_routes_a_subnet(
    peer: tuple[Api, int], db: psycopg.Connection[Any]
) -> None:
    api, peer_id = peer
    version = api.get("/v1/peer/config").json()["version"]
    db.execute(
        "INSERT INTO peers (interface_id, name, public_key, address, created_by, status)"
        " SELECT interface_id, 'office', 'Eo+zXx7tYr4uJ5fXOWbVgVEqLQJP1GnrqZ5H6PwyZ0I=',"
        " '10.30.0.9', 'test', 'active' FROM peers WHERE id = %s",
        (peer_id,),
    )
    later(
        0.5,
        lambda: db.execute("UPDATE peers SET subnets = '{192.168.50.0/24}' WHERE name = 'office'"),
    )
    r = api.get("/v1/peer/config", params={"version": version, "wait": 20})
    assert "192.168.50.0/24" in r.json()["allowed_ips"]


def test_a_peer_removed_while_waiting_is_told_at_once(
    peer: tuple[Api, int], db: psycopg.Connection[Any]
) -> None:
    api, peer_id = peer
    version = api.get("/v1/peer/config").json()["version"]
    later(0.5, lambda: db.execute("UPDATE peers SET status = 'removing' WHERE id = %s", (peer_id,)))
    started = time.monotonic()
    r = api.get("/v1/peer/config", params={"version": version, "wait": 60})
    assert r.status_code == 403 and r.json()["error"]["code"] == "peer_not_live"
    assert time.monotonic() - started < 30  # generous, far below the wait it did not spend


def test_followers_wait_without_a_thread_each(
    peer: tuple[Api, int],
    db: psycopg.Connection[Any],
    settings: Settings,
    api_pki: Pki,
    tmp_path: Path,
) -> None:
    """Three times as many followers as the worker has threads all wait, /healthz still
    answers meanwhile, and one change wakes every one (api/gunicorn_worker.py parks them)."""
    api, _ = peer
    server, url = start_api(
        settings, api_pki, tmp_path / "api.log", ELYSIUM_API_WORKERS="1", ELYSIUM_API_THREADS="8"
    )
    try:
        followers = [Api(url, api_pki.ca, cert=api.session.cert) for _ in range(24)]
        version = followers[0].get("/v1/peer/config").json()["version"]
        seen: list[str] = []

        def follow(f: Api) -> None:
            f.get("/v1/peer/config")  # as a follower does: it was told the version on this
            r = f.get("/v1/peer/config", params={"version": version, "wait": 60}, timeout=60)
            seen.append(r.json()["version"])

        waiting = [threading.Thread(target=follow, args=(f,), daemon=True) for f in followers]
        for t in waiting:
            t.start()
        time.sleep(3)
        assert not seen  # all still wait

        started = time.monotonic()
        assert Api(url, api_pki.ca).get("/healthz", timeout=10).ok  # a thread is free
        assert time.monotonic() - started < 5
        db.execute("UPDATE interfaces SET dns = '{10.30.0.54}'")
        for t in waiting:
            t.join(30)
        assert len(seen) == 24 and version not in seen
    finally:
        server.stop()


def test_a_follower_renewed_while_it_follows_is_refused_at_its_next_wait(
    peer: tuple[Api, int], tmp_path: Path
) -> None:
    """A follower's next wait on its connection parks before the app while nothing it would
    read or check moved (api/gunicorn_worker.py); a renewal of its certificate in between
    is such a move: that wait is refused at once, as any request with the old one is."""
    api, _ = peer
    version = api.get("/v1/peer/config").json()["version"]
    again = api.get("/v1/peer/config", params={"version": version, "wait": 0.5})
    assert again.status_code == 200 and again.json()["version"] == version
    # Something the app reads differently from the worker's own parsing still reaches it.
    bad = api.get("/v1/peer/config", params={"version": version, "wait": -1})
    assert bad.status_code in (400, 422) and "wait" in bad.json()["error"]["fields"], bad.text
    api.get("/v1/peer/config", params={"version": version, "wait": 0.5})  # the memo again

    other = Api(api.base, Path(api.ca), cert=api.session.cert)  # another connection renews
    renew(other, tmp_path)
    started = time.monotonic()
    r = api.get("/v1/peer/config", params={"version": version, "wait": 10}, timeout=30)
    assert r.status_code == 401 and r.json()["error"]["code"] == "certificate_replaced", r.text
    assert time.monotonic() - started < 5  # refused, not parked until the wait ran out


def test_a_woken_follower_is_answered_as_the_app_answers(
    peer: tuple[Api, int], db: psycopg.Connection[Any]
) -> None:
    """The worker answers a woken follow itself (api/peer_self/fast.py): the same config the
    app gives, as JSON or, asked for, as a wg-quick file through the app."""
    api, _ = peer
    version = api.get("/v1/peer/config").json()["version"]
    answered = config_answers(api)
    later(0.5, lambda: db.execute("UPDATE interfaces SET dns = '{10.30.0.55}'"))
    woken = api.get("/v1/peer/config", params={"version": version, "wait": 20}, timeout=30)
    assert woken.status_code == 200 and woken.headers["Content-Type"] == "application/json"
    assert config_answers(api) == answered + 1  # counted as the app counts its answers
    assert woken.json() == api.get("/v1/peer/config").json()
    assert woken.json()["dns"] == ["10.30.0.55"] and woken.json()["version"] != version

    version = woken.json()["version"]
    later(0.5, lambda: db.execute("UPDATE interfaces SET dns = '{10.30.0.56}'"))
    text = api.get(
        "/v1/peer/config",
        params={"version": version, "wait": 20},
        headers={"Accept": "text/plain"},
        timeout=30,
    )
    assert text.status_code == 200 and "DNS = 10.30.0.56" in text.text, text.text


def config_answers(api: Api) -> float:
    """``/metrics``' count of 200 answers to ``GET /v1/peer/config`` (every worker's)."""
    text = Api(api.base, Path(api.ca)).get("/metrics").text
    label = 'elysium_api_requests_total{method="GET",route="/v1/peer/config",status="200"}'
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(label)
    )

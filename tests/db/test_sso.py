"""Single sign-on's one-time values in PostgreSQL: a sign-in's state redeems once, a spent
nonce or ID token stays spent (also when two requests spend it at once)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from psycopg import Connection
from psycopg.rows import DictRow
from psycopg_pool import ConnectionPool

from db import sso


def test_a_state_redeems_once(conn: Connection[DictRow]) -> None:
    sso.begin_login(conn, "state-1", "nonce-1", "verifier-1")
    first = sso.take_login(conn, "state-1")
    assert first == {"nonce": "nonce-1", "verifier": "verifier-1", "fresh": True}
    assert sso.take_login(conn, "state-1") is None
    assert sso.take_login(conn, "never-begun") is None


def test_an_old_sign_in_is_not_fresh_and_is_forgotten(conn: Connection[DictRow]) -> None:
    sso.begin_login(conn, "old", "n", "v")
    conn.execute("UPDATE sso_logins SET created_at = now() - interval '11 minutes'")
    assert sso.take_login(conn, "old") == {"nonce": "n", "verifier": "v", "fresh": False}
    sso.begin_login(conn, "older", "n", "v")
    conn.execute("UPDATE sso_logins SET created_at = now() - interval '11 minutes'")
    sso.begin_login(conn, "new", "n", "v")  # begins sweep the abandoned ones
    rows = conn.execute("SELECT state FROM sso_logins").fetchall()
    assert rows == [{"state": "new"}]


def test_a_spent_value_stays_spent_until_it_expires(conn: Connection[DictRow]) -> None:
    later = datetime.now(UTC) + timedelta(minutes=5)
    assert sso.spend(conn, "nonce", "n-1", later)
    assert not sso.spend(conn, "nonce", "n-1", later)
    assert sso.spend(conn, "id_token", "n-1", later)  # kinds do not collide
    sso.spend(conn, "nonce", "gone", datetime.now(UTC) - timedelta(seconds=1))
    sso.spend(conn, "nonce", "n-2", later)  # sweeps the expired
    assert sso.spend(conn, "nonce", "gone", later)


def test_two_spends_at_once_one_wins(pool: ConnectionPool[Connection[DictRow]]) -> None:
    later = datetime.now(UTC) + timedelta(minutes=5)
    results: list[bool] = []
    barrier = threading.Barrier(8, timeout=60)

    def spend() -> None:
        with pool.connection() as c:
            barrier.wait()
            with c.transaction():
                results.append(sso.spend(c, "id_token", "raced", later))

    threads = [threading.Thread(target=spend) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == [False] * 7 + [True]

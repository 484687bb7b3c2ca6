"""Enrollment tokens: hashed at rest with their grant, expiry, revocation, one-use atomicity."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from psycopg import Connection
from psycopg.rows import DictRow
from psycopg_pool import ConnectionPool

from db.enrollment_tokens import (
    check_enrollment_token,
    create_enrollment_token,
    redeem_enrollment_token,
    revoke_enrollment_token,
)
from db.hubs import create_hub
from db.interfaces import create_interface
from db.tokens import create_api_token
from elysium.errors import ElysiumError, Gone, NotFound, Unauthorized, ValidationError


@pytest.fixture
def interface(conn: Connection[DictRow]) -> dict[str, Any]:
    hub = create_hub(conn, "hub-a", "192.0.2.1:51820")
    return create_interface(conn, hub["id"], "wg0", "10.8.0.0/24", None, 51820, None, [], 25)


def _code(exc: pytest.ExceptionInfo[ElysiumError]) -> tuple[int, str]:
    return exc.value.status, exc.value.code


def test_enrollment_token_stores_only_the_hash_and_its_grant(
    conn: Connection[DictRow], interface: dict[str, Any]
) -> None:
    row, text = create_enrollment_token(
        conn, interface["id"], "laptops", 600, 3, ["192.168.50.0/24"], "test"
    )

    dump = conn.execute("SELECT t::text AS t FROM enrollment_tokens t").fetchone()
    assert text.startswith("elyenr_")
    assert dump is not None and text not in dump["t"]
    assert (row["uses_total"], row["uses_left"], row["subnets"]) == (3, 3, ["192.168.50.0/24"])


def test_enrollment_token_for_a_missing_interface_is_not_found(conn: Connection[DictRow]) -> None:
    with pytest.raises(NotFound) as err:
        create_enrollment_token(conn, 999, None, 600, 1, [], "test")
    assert err.value.code == "interface_not_found"


def test_enrollment_token_with_bad_subnets_is_a_validation_error(
    conn: Connection[DictRow], interface: dict[str, Any]
) -> None:
    with pytest.raises(ValidationError) as err:
        create_enrollment_token(conn, interface["id"], None, 600, 1, ["10.0.0.1/8"], "test")
    assert "subnets.0" in err.value.fields


def test_each_redemption_takes_one_use_until_none_is_left(
    conn: Connection[DictRow], interface: dict[str, Any]
) -> None:
    _, text = create_enrollment_token(conn, interface["id"], None, 600, 2, [], "test")

    first = redeem_enrollment_token(conn, text)
    second = redeem_enrollment_token(conn, text)
    with pytest.raises(Gone) as err:
        redeem_enrollment_token(conn, text)

    assert (first["uses_left"], second["uses_left"]) == (1, 0)
    assert first["interface_id"] == interface["id"]
    assert _code(err) == (410, "token_used_up")


def test_checking_a_token_takes_no_use_and_refuses_like_a_redemption(
    conn: Connection[DictRow], interface: dict[str, Any]
) -> None:
    _, text = create_enrollment_token(conn, interface["id"], None, 600, 1, [], "test")

    checked = check_enrollment_token(conn, text)
    again = check_enrollment_token(conn, text)
    redeem_enrollment_token(conn, text)
    with pytest.raises(Gone) as used:
        check_enrollment_token(conn, text)
    with pytest.raises(Unauthorized) as unknown:
        check_enrollment_token(conn, "elyenr_unknown")

    assert checked["uses_left"] == again["uses_left"] == 1
    assert checked["interface_id"] == interface["id"]
    assert _code(used) == (410, "token_used_up")
    assert _code(unknown) == (401, "token_invalid")


def test_redeeming_an_unknown_enrollment_token_is_token_invalid(
    conn: Connection[DictRow], interface: dict[str, Any]
) -> None:
    _, api_text = create_api_token(conn, "ci", "admin", None, "test")
    for text in ("elyenr_unknown", api_text):
        with pytest.raises(Unauthorized) as err:
            redeem_enrollment_token(conn, text)
        assert _code(err) == (401, "token_invalid")


def test_redeeming_an_expired_enrollment_token_is_gone_token_expired(
    conn: Connection[DictRow], interface: dict[str, Any]
) -> None:
    row, text = create_enrollment_token(conn, interface["id"], None, 600, 1, [], "test")
    conn.execute(
        "UPDATE enrollment_tokens SET expires_at = now() - interval '1 s' WHERE id = %s",
        (row["id"],),
    )

    with pytest.raises(Gone) as err:
        redeem_enrollment_token(conn, text)
    assert _code(err) == (410, "token_expired")


def test_redeeming_a_revoked_enrollment_token_is_gone_token_revoked(
    conn: Connection[DictRow], interface: dict[str, Any]
) -> None:
    row, text = create_enrollment_token(conn, interface["id"], None, 600, 1, [], "test")
    revoke_enrollment_token(conn, row["id"])

    with pytest.raises(Gone) as err:
        redeem_enrollment_token(conn, text)
    assert _code(err) == (410, "token_revoked")


def test_twenty_concurrent_redemptions_of_a_one_use_token_succeed_exactly_once(
    conn: Connection[DictRow], interface: dict[str, Any], pool: ConnectionPool[Connection[DictRow]]
) -> None:
    _, text = create_enrollment_token(conn, interface["id"], None, 600, 1, [], "test")
    barrier = threading.Barrier(20, timeout=60)
    outcomes: list[str] = []
    lock = threading.Lock()

    def redeem() -> None:
        with pool.connection() as c:
            barrier.wait()
            try:
                with c.transaction():
                    redeem_enrollment_token(c, text)
                outcome = "ok"
            except ElysiumError as exc:
                outcome = exc.code
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=redeem) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)

    assert sorted(outcomes) == ["ok"] + ["token_used_up"] * 19


def test_a_redemption_rolled_back_with_its_transaction_gives_the_use_back(
    conn: Connection[DictRow], interface: dict[str, Any], pool: ConnectionPool[Connection[DictRow]]
) -> None:
    _, text = create_enrollment_token(conn, interface["id"], None, 600, 1, [], "test")

    with pool.connection() as c:
        with pytest.raises(RuntimeError), c.transaction():
            redeem_enrollment_token(c, text)
            raise RuntimeError("the enrollment failed after the token was taken")
        again = redeem_enrollment_token(c, text)

    assert again["uses_left"] == 0

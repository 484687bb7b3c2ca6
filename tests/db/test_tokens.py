"""API tokens: hashed at rest, expiry, revocation, scopes; the expiry sweep of every token."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner
from psycopg import Connection
from psycopg.rows import DictRow
from psycopg_pool import ConnectionPool

from cli.main import cli
from db.audit import list_audit
from db.enrollment_tokens import create_enrollment_token, expire_enrollment_tokens
from db.hubs import create_hub
from db.interfaces import create_interface
from db.tokens import (
    authenticate_api_token,
    create_api_token,
    expire_api_tokens,
    revoke_api_token,
    scope_allows,
)
from elysium.errors import ElysiumError, NotFound, Unauthorized, ValidationError
from elysium.settings import Settings


@pytest.fixture
def interface(conn: Connection[DictRow]) -> dict[str, Any]:
    hub = create_hub(conn, "hub-a", "192.0.2.1:51820")
    return create_interface(conn, hub["id"], "wg0", "10.8.0.0/24", None, 51820, None, [], 25)


def _age_api_token(conn: Connection[DictRow], token_id: int, column: str, seconds: int) -> None:
    conn.execute(
        f"UPDATE api_tokens SET {column} = now() - make_interval(secs => %s) WHERE id = %s",
        (seconds, token_id),
    )


def _code(exc: pytest.ExceptionInfo[ElysiumError]) -> tuple[int, str]:
    return exc.value.status, exc.value.code


def test_api_token_is_random_prefixed_and_only_its_hash_is_stored(
    conn: Connection[DictRow],
) -> None:
    row, text = create_api_token(conn, "ci", "operator", 3600, "test")
    _, other = create_api_token(conn, "ci2", "operator", 3600, "test")

    dump = conn.execute("SELECT t::text AS t, token_hash FROM api_tokens t").fetchall()
    assert text.startswith("ely_") and len(text) >= 4 + 43 and text != other
    assert "token_hash" not in row
    assert all(text not in r["t"] and text.encode() not in bytes(r["token_hash"]) for r in dump)
    assert all(len(bytes(r["token_hash"])) == 32 for r in dump)


def test_a_valid_api_token_authenticates_to_its_row(conn: Connection[DictRow]) -> None:
    row, text = create_api_token(conn, "ci", "admin", None, "test")

    got = authenticate_api_token(conn, text)

    assert got["id"] == row["id"] and got["scope"] == "admin" and got["expires_at"] is None
    assert got["last_used_at"] is not None


@pytest.mark.parametrize("text", ["", "ely_nope", "elyenr_x", "Bearer x", "ely_" + "a" * 500])
def test_unknown_or_malformed_api_tokens_are_token_invalid(
    conn: Connection[DictRow], text: str
) -> None:
    create_api_token(conn, "ci", "admin", None, "test")

    with pytest.raises(Unauthorized) as err:
        authenticate_api_token(conn, text)
    assert _code(err) == (401, "token_invalid")


def test_an_expired_api_token_is_token_expired(conn: Connection[DictRow]) -> None:
    row, text = create_api_token(conn, "ci", "admin", 60, "test")
    _age_api_token(conn, row["id"], "expires_at", 1)

    with pytest.raises(Unauthorized) as err:
        authenticate_api_token(conn, text)
    assert _code(err) == (401, "token_expired")


def test_a_revoked_api_token_is_token_revoked_even_once_expired(conn: Connection[DictRow]) -> None:
    row, text = create_api_token(conn, "ci", "admin", 60, "test")
    revoked = revoke_api_token(conn, row["id"])
    _age_api_token(conn, row["id"], "expires_at", 1)

    with pytest.raises(Unauthorized) as err:
        authenticate_api_token(conn, text)
    assert _code(err) == (401, "token_revoked")
    assert revoke_api_token(conn, row["id"])["revoked_at"] == revoked["revoked_at"]


def test_revoking_an_unknown_api_token_is_not_found(conn: Connection[DictRow]) -> None:
    with pytest.raises(NotFound):
        revoke_api_token(conn, 12345)


def test_last_used_at_is_written_at_most_once_a_minute(conn: Connection[DictRow]) -> None:
    row, text = create_api_token(conn, "ci", "reader", None, "test")
    first = authenticate_api_token(conn, text)["last_used_at"]

    second = authenticate_api_token(conn, text)["last_used_at"]
    _age_api_token(conn, row["id"], "last_used_at", 61)
    third = authenticate_api_token(conn, text)["last_used_at"]

    assert second == first
    assert third > first


def test_last_used_at_does_not_wait_for_a_request_holding_the_token_row(
    conn: Connection[DictRow], pool: ConnectionPool[Connection[DictRow]]
) -> None:
    row, text = create_api_token(conn, "ci", "reader", None, "test")
    with pool.connection() as holder, holder.transaction():
        holder.execute("SELECT 1 FROM api_tokens WHERE id = %s FOR UPDATE", (row["id"],))
        with pool.connection() as c:
            c.execute("SET lock_timeout = '2s'")

            got = authenticate_api_token(c, text)

            assert got["id"] == row["id"] and got["last_used_at"] is None


@pytest.mark.parametrize(
    ("have", "need", "allowed"),
    [
        ("admin", "admin", True),
        ("admin", "operator", True),
        ("admin", "reader", True),
        ("operator", "admin", False),
        ("operator", "operator", True),
        ("operator", "reader", True),
        ("reader", "admin", False),
        ("reader", "operator", False),
        ("reader", "reader", True),
        ("root", "reader", False),
    ],
)
def test_scopes_nest_admin_over_operator_over_reader(have: str, need: str, allowed: bool) -> None:
    assert scope_allows(have, need) is allowed


def test_bad_api_token_input_names_the_field(conn: Connection[DictRow]) -> None:
    for kwargs, field in (
        ({"scope": "root"}, "scope"),
        ({"name": ""}, "name"),
        ({"ttl_seconds": 0}, "ttl_seconds"),
    ):
        args: dict[str, Any] = {"name": "ci", "scope": "reader", "ttl_seconds": 60} | kwargs
        with pytest.raises(ValidationError) as err:
            create_api_token(conn, created_by="t", **args)
        assert field in err.value.fields


def test_expiry_sweep_marks_enrollment_tokens_and_counts_expired_api_tokens(
    conn: Connection[DictRow], interface: dict[str, Any]
) -> None:
    old, _ = create_enrollment_token(conn, interface["id"], None, 600, 1, [], "test")
    fresh, _ = create_enrollment_token(conn, interface["id"], None, 600, 1, [], "test")
    conn.execute(
        "UPDATE enrollment_tokens SET expires_at = now() - interval '1 s' WHERE id = %s",
        (old["id"],),
    )
    api, _ = create_api_token(conn, "ci", "admin", 60, "test")
    create_api_token(conn, "forever", "admin", None, "test")
    _age_api_token(conn, api["id"], "expires_at", 1)

    first = {"enrollment": expire_enrollment_tokens(conn), "api": expire_api_tokens(conn)}
    second = {"enrollment": expire_enrollment_tokens(conn), "api": expire_api_tokens(conn)}

    expired = conn.execute("SELECT id FROM enrollment_tokens WHERE expired").fetchall()
    assert first == {"enrollment": 1, "api": 1}
    assert second == {"enrollment": 0, "api": 0}
    assert [r["id"] for r in expired] == [old["id"]]
    marked = conn.execute("SELECT id FROM api_tokens WHERE expired").fetchall()
    assert [r["id"] for r in marked] == [api["id"]]
    assert fresh["id"] != old["id"]


def test_token_create_cli_prints_only_a_token_that_authenticates_and_audits_it(
    settings: Settings, conn: Connection[DictRow], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ELYSIUM_DATABASE_URL", settings.database_url)

    result = CliRunner().invoke(
        cli,
        ["token", "create", "--db", "--scope", "operator", "--name", "ci", "--ttl", "3600"],
        catch_exceptions=False,
    )

    text = result.stdout.strip()
    assert result.exit_code == 0
    assert result.stdout == text + "\n" and text.startswith("ely_")
    row = authenticate_api_token(conn, text)
    assert (row["name"], row["scope"], row["created_by"]) == ("ci", "operator", "cli")
    audit = list_audit(conn)
    assert [(a["actor"], a["action"], a["outcome"]) for a in audit] == [
        ("cli", "token.create", "succeeded")
    ]
    assert text not in str(audit)

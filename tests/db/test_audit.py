"""The audit trail: records in id order, filtered by time, paged by cursor."""

from __future__ import annotations

from datetime import timedelta

import pytest
from psycopg import Connection
from psycopg.rows import DictRow

from db.audit import list_audit, record
from elysium.errors import ValidationError


def test_a_record_keeps_who_what_target_outcome_and_detail(conn: Connection[DictRow]) -> None:
    row = record(conn, "token:3", "peer.create", "peer:9", "succeeded", {"interface_id": 1})

    (listed,) = list_audit(conn)

    assert listed == row
    assert (row["actor"], row["action"], row["target"], row["outcome"]) == (
        "token:3",
        "peer.create",
        "peer:9",
        "succeeded",
    )
    assert row["detail"] == {"interface_id": 1} and row["at"] is not None


def test_pages_follow_the_cursor_in_id_order(conn: Connection[DictRow]) -> None:
    ids = [
        record(conn, "cli", "token.create", f"api_token:{i}", "succeeded")["id"] for i in range(5)
    ]

    first = list_audit(conn, limit=2)
    second = list_audit(conn, limit=2, cursor=first[-1]["id"])
    last = list_audit(conn, limit=2, cursor=second[-1]["id"])

    assert [r["id"] for r in first + second + last] == ids
    assert list_audit(conn, cursor=ids[-1]) == []


def test_since_leaves_out_older_records(conn: Connection[DictRow]) -> None:
    old = record(conn, "cli", "hub.create", "hub:a", "succeeded")
    conn.execute("UPDATE audit SET at = at - interval '1 hour' WHERE id = %s", (old["id"],))
    new = record(conn, "cli", "hub.create", "hub:b", "failed", {"error": "hub_exists"})

    rows = list_audit(conn, since=new["at"] - timedelta(minutes=1))

    assert [r["id"] for r in rows] == [new["id"]]


@pytest.mark.parametrize("limit", [0, 1001])
def test_a_limit_outside_1_to_1000_is_a_validation_error(
    conn: Connection[DictRow], limit: int
) -> None:
    with pytest.raises(ValidationError) as err:
        list_audit(conn, limit=limit)
    assert "limit" in err.value.fields

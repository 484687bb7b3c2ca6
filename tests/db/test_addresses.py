"""Address allocation: lowest free, concurrency-safe, reuse, full network, IPv6."""

from __future__ import annotations

import ipaddress
import threading
from typing import Any

import psycopg
import pytest
from psycopg import Connection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import ConnectionPool

from db.addresses import allocate_address, release_address
from db.hubs import create_hub
from db.interfaces import create_interface
from elysium.errors import Gone, NetworkFull, NotFound
from elysium.keys import generate_private_key, public_key


def make_interface(
    conn: Connection[DictRow], network: str, network6: str | None = None
) -> dict[str, Any]:
    hub = create_hub(conn, "hub-a", "192.0.2.1:51820")
    return create_interface(conn, hub["id"], "wg0", network, network6, 51820, None, [], 25)


def add_peer(conn: Connection[DictRow], iface_id: int, address: str) -> None:
    conn.execute(
        "INSERT INTO peers (interface_id, name, public_key, address) VALUES (%s, %s, %s, %s)",
        (iface_id, f"p-{address}", public_key(generate_private_key()), address),
    )


def test_first_peer_gets_the_second_host_the_hub_keeps_the_first(conn: Connection[DictRow]) -> None:
    iface = make_interface(conn, "10.8.0.0/24")
    with conn.transaction():
        assert allocate_address(conn, iface["id"]) == "10.8.0.2"
        assert allocate_address(conn, iface["id"]) == "10.8.0.3"


def test_fifty_concurrent_allocations_into_a_26_get_distinct_lowest_addresses(
    conn: Connection[DictRow], pool: ConnectionPool[Connection[DictRow]]
) -> None:
    iface = make_interface(conn, "10.9.0.0/26")
    barrier = threading.Barrier(
        50, timeout=60
    )  # a thread that cannot connect must not hang the rest
    got: list[str] = []
    failures: list[BaseException] = []

    def enroll() -> None:
        try:
            with pool.connection() as c:
                barrier.wait()
                with c.transaction():
                    address = allocate_address(c, iface["id"])
                    assert address is not None
                    add_peer(c, iface["id"], address)
                got.append(address)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=enroll) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert sorted(got, key=ipaddress.ip_address) == [f"10.9.0.{i}" for i in range(2, 52)]


def test_a_full_network_raises_network_full_and_a_release_is_reused(
    conn: Connection[DictRow],
) -> None:
    iface = make_interface(conn, "10.9.0.0/26")
    taken = []
    for _ in range(61):  # .2 … .62; .1 is the hub's, .63 the broadcast
        with conn.transaction():
            taken.append(allocate_address(conn, iface["id"]))
    assert taken[-1] == "10.9.0.62"
    with pytest.raises(NetworkFull) as err, conn.transaction():
        allocate_address(conn, iface["id"])
    assert err.value.code == "network_full" and err.value.status == 409
    with conn.transaction():
        release_address(conn, iface["id"], "10.9.0.40")
        release_address(conn, iface["id"], "10.9.0.7")
    with conn.transaction():
        assert allocate_address(conn, iface["id"]) == "10.9.0.7"
        assert allocate_address(conn, iface["id"]) == "10.9.0.40"


def test_a_rolled_back_allocation_gives_the_address_back(conn: Connection[DictRow]) -> None:
    iface = make_interface(conn, "10.8.0.0/24")
    with pytest.raises(RuntimeError), conn.transaction():
        assert allocate_address(conn, iface["id"]) == "10.8.0.2"
        raise RuntimeError("the peer insert failed")
    with conn.transaction():
        assert allocate_address(conn, iface["id"]) == "10.8.0.2"


def test_ipv6_allocation_uses_the_interface_network6(conn: Connection[DictRow]) -> None:
    iface = make_interface(conn, "10.8.0.0/24", "fd00:8::/64")
    with conn.transaction():
        assert allocate_address(conn, iface["id"], 6) == "fd00:8::2"
        assert allocate_address(conn, iface["id"], 6) == "fd00:8::3"


def test_an_interface_without_ipv6_allocates_none(conn: Connection[DictRow]) -> None:
    iface = make_interface(conn, "10.8.0.0/24")
    with conn.transaction():
        assert allocate_address(conn, iface["id"], 6) is None


def test_unknown_interface_is_not_found(conn: Connection[DictRow]) -> None:
    with pytest.raises(NotFound), conn.transaction():
        allocate_address(conn, 999)


def test_the_database_refuses_two_live_peers_with_one_address(conn: Connection[DictRow]) -> None:
    import psycopg

    iface = make_interface(conn, "10.8.0.0/24")
    add_peer(conn, iface["id"], "10.8.0.5")
    with pytest.raises(psycopg.errors.UniqueViolation):
        add_peer(conn, iface["id"], "10.8.0.5")


def test_a_peer_insert_takes_its_address_in_the_same_statement_reuses_and_fills(
    conn: Connection[DictRow],
) -> None:
    from db.peers import create_peer, finish_removal, update_peer

    iface = make_interface(conn, "10.12.0.0/29")  # hosts .2 to .6 for peers

    def new(name: str) -> Any:
        with conn.transaction():
            return create_peer(
                conn,
                iface["id"],
                name,
                public_key(generate_private_key()),
                [],
                None,
                "test",
                has_ipv6=False,
                network="10.12.0.0/29",
            )

    peers = [new(f"p{i}") for i in range(5)]
    assert [p["address"] for p in peers] == [f"10.12.0.{i}" for i in range(2, 7)]
    with pytest.raises(NetworkFull):
        new("one-too-many")
    with conn.transaction():
        update_peer(conn, peers[1]["id"], {"status": "removing"})
        finish_removal(conn, [peers[1]["id"]])
    assert new("again")["address"] == "10.12.0.3"  # the released one, not past the end


def test_a_token_use_taken_with_the_address_is_taken_once_on_both_paths_and_refused_cleanly(
    conn: Connection[DictRow],
) -> None:
    from db.enrollment_tokens import create_enrollment_token, enrollment_token_use
    from db.peers import create_peer, finish_removal, update_peer

    iface = make_interface(conn, "10.13.0.0/29")
    _, token = create_enrollment_token(conn, iface["id"], "t", 3600, 3, [], "test")

    def enroll(name: str) -> Any:
        with conn.transaction():
            return create_peer(
                conn,
                iface["id"],
                name,
                public_key(generate_private_key()),
                [],
                None,
                "test",
                has_ipv6=False,
                network="10.13.0.0/29",
                redeem=enrollment_token_use(token),
            )

    def uses_left() -> int:
        row = conn.execute("SELECT uses_left FROM enrollment_tokens").fetchone()
        assert row is not None
        return int(row["uses_left"])

    def next_offset() -> int:
        row = conn.execute("SELECT next_offset FROM address_pools WHERE family = 4").fetchone()
        assert row is not None
        return int(row["next_offset"])

    first = enroll("a")  # the one-statement path
    assert first["address"] == "10.13.0.2" and uses_left() == 2
    assert enroll("b")["address"] == "10.13.0.3" and uses_left() == 1
    with conn.transaction():
        update_peer(conn, first["id"], {"status": "removing"})
        finish_removal(conn, [first["id"]])
    assert enroll("c")["address"] == "10.13.0.2" and uses_left() == 0  # the released path
    offset = next_offset()
    with pytest.raises(Gone) as used_up:
        enroll("d")
    assert used_up.value.code == "token_used_up"
    assert next_offset() == offset and uses_left() == 0  # nothing taken, nothing written
    assert conn.execute("SELECT count(*) AS n FROM peers").fetchone() == {"n": 3}


def test_the_insert_sent_with_its_commit_takes_the_next_address_or_nothing(
    conn: Connection[DictRow], clean_db: str
) -> None:
    from psycopg.pq import TransactionStatus

    from db.enrollment_tokens import create_enrollment_token, enrollment_token_use
    from db.peers import NextAddressNotTaken, finish_removal, insert_peer_and_commit, update_peer

    iface = make_interface(conn, "10.14.0.0/29")
    _, token = create_enrollment_token(conn, iface["id"], "t", 3600, 2, [], "test")

    def enroll(name: str, peer_id: int) -> None:
        conn.execute("BEGIN")
        insert_peer_and_commit(
            conn,
            iface["id"],
            name,
            public_key(generate_private_key()),
            [],
            "test",
            network="10.14.0.0/29",
            peer_id=peer_id,
            redeem=enrollment_token_use(token),
        )

    def state() -> dict[str, Any]:
        with psycopg.connect(clean_db, autocommit=True, row_factory=dict_row) as other:
            row = other.execute(
                "SELECT (SELECT next_offset FROM address_pools WHERE family = 4) AS offset,"
                " (SELECT uses_left FROM enrollment_tokens) AS uses,"
                " (SELECT array_agg(host(address) ORDER BY id) FROM peers) AS addresses"
            ).fetchone()
        assert row is not None
        return row

    enroll("a", 9001)  # committed: another connection sees it
    assert conn.info.transaction_status == TransactionStatus.IDLE
    assert state() == {"offset": 3, "uses": 1, "addresses": ["10.14.0.2"]}
    with conn.transaction():
        update_peer(conn, 9001, {"status": "removing"})
        finish_removal(conn, [9001])
    with pytest.raises(NextAddressNotTaken):  # .2 was released: the usual way takes it
        enroll("b", 9002)
    assert conn.info.transaction_status == TransactionStatus.IDLE
    assert state() == {"offset": 3, "uses": 1, "addresses": [None]}
    conn.execute("DELETE FROM released_addresses")
    conn.execute("UPDATE enrollment_tokens SET uses_left = 0")
    with pytest.raises(NextAddressNotTaken):  # the token is used up: nothing taken
        enroll("c", 9003)
    assert state() == {"offset": 3, "uses": 0, "addresses": [None]}


def test_the_one_statement_enrollment_takes_the_next_address_or_writes_nothing(
    conn: Connection[DictRow],
) -> None:
    from db.enrollment import Enrollment, enroll_in_one_statement
    from db.enrollment_tokens import create_enrollment_token
    from elysium.errors import Conflict

    iface = make_interface(conn, "10.15.0.0/29")  # peers .2 to .6
    _, token = create_enrollment_token(conn, iface["id"], "t", 3600, 20, [], "test")
    taken = public_key(generate_private_key())

    def enroll(key: str) -> dict[str, Any] | None:
        jobs = enroll_in_one_statement(
            conn,
            [Enrollment("n", key)],
            token=token,
            submitter="test",
            kind="enroll_peer",
            hub_prefix="hub.",
        )
        return None if jobs is None else jobs[0]

    def written() -> dict[str, Any] | None:
        return conn.execute(
            "SELECT (SELECT next_offset FROM address_pools WHERE family = 4) AS offset,"
            " (SELECT uses_left FROM enrollment_tokens) AS uses,"
            " (SELECT count(*) FROM jobs) AS jobs, (SELECT count(*) FROM audit) AS audit,"
            " (SELECT array_agg(host(address) ORDER BY id) FROM peers) AS addresses"
        ).fetchone()

    first = enroll(taken)
    assert first is not None and first["queue"] == "hub.hub-a" and first["status"] == "queued"
    before = written()
    assert before == {"offset": 3, "uses": 19, "jobs": 1, "audit": 1, "addresses": ["10.15.0.2"]}
    # Failing statements, more often than psycopg's prepare threshold: the statements sent
    # after them in the pipeline were skipped, and the next enrollment must still work.
    for _ in range(7):
        with pytest.raises(Conflict):
            enroll(taken)
    assert written() == before
    for _ in range(4):
        assert enroll(public_key(generate_private_key())) is not None
    full = written()
    assert full is not None and full["addresses"][-1] == "10.15.0.6" and full["uses"] == 15
    for _ in range(7):  # the network is full: nothing written, the step-by-step path says why
        assert enroll(public_key(generate_private_key())) is None
    assert written() == full
    conn.execute("INSERT INTO released_addresses VALUES (%s, 4, '10.15.0.4')", (iface["id"],))
    assert enroll(public_key(generate_private_key())) is None  # the released one goes first
    assert conn.info.transaction_status == 0  # idle: nothing left open


def test_the_one_statement_enrollment_commits_apart_from_its_synchronous_durable_commit(
    conn: Connection[DictRow],
) -> None:
    from db.enrollment import Enrollment, enroll_in_one_statement
    from db.enrollment_tokens import create_enrollment_token

    iface = make_interface(conn, "10.16.0.0/29")
    _, token = create_enrollment_token(conn, iface["id"], "t", 3600, 20, [], "test")
    before = conn.execute("SELECT pg_current_xact_id()::text::bigint AS x").fetchone()
    job = enroll_in_one_statement(
        conn,
        [Enrollment("n", public_key(generate_private_key()))],
        token=token,
        submitter="test",
        kind="enroll_peer",
        hub_prefix="hub.",
    )
    after = conn.execute("SELECT pg_current_xact_id()::text::bigint AS x").fetchone()
    assert job is not None and before is not None and after is not None
    row = conn.execute("SELECT xmin::text::bigint AS x FROM peers").fetchone()
    assert row is not None
    # The enrollment's own transaction, and one more (the durable WAL message) behind it.
    assert before["x"] < row["x"] < after["x"] - 1
    # Its asynchronous commit was local to it: the session commits synchronously again.
    assert conn.execute("SHOW synchronous_commit").fetchone() == {"synchronous_commit": "on"}
    # psycopg deallocates every prepared statement after a ROLLBACK or a DROP: prepared again.
    conn.execute("DEALLOCATE ALL")
    assert enroll_in_one_statement(
        conn,
        [Enrollment("m", public_key(generate_private_key()))],
        token=token,
        submitter="test",
        kind="enroll_peer",
        hub_prefix="hub.",
    )


def test_enrollments_together_take_consecutive_addresses_or_all_write_nothing(
    conn: Connection[DictRow],
) -> None:
    from db.enrollment import Enrollment, enroll_in_one_statement
    from db.enrollment_tokens import create_enrollment_token

    iface = make_interface(conn, "10.17.0.0/29")  # peers .2 to .6
    _, token = create_enrollment_token(conn, iface["id"], "t", 3600, 4, [], "test")

    def together(*keys: str) -> list[Any] | None:
        batch = [Enrollment(f"n{i}", key) for i, key in enumerate(keys)]
        return enroll_in_one_statement(
            conn, batch, token=token, submitter="test", kind="enroll_peer", hub_prefix="hub."
        )

    def addresses() -> list[str]:
        rows = conn.execute("SELECT name, host(address) AS a FROM peers ORDER BY address")
        return [f"{r['name']}={r['a']}" for r in rows]

    key = public_key(generate_private_key())
    jobs = together(key, public_key(generate_private_key()), public_key(generate_private_key()))
    assert jobs is not None and [j["peer_id"] for j in jobs] == sorted(j["peer_id"] for j in jobs)
    assert addresses() == ["n0=10.17.0.2", "n1=10.17.0.3", "n2=10.17.0.4"]
    assert conn.execute("SELECT uses_left FROM enrollment_tokens").fetchone() == {"uses_left": 1}
    # One key already in use among them, or more than the token's one use left: nothing
    # written (each then goes alone, step by step, and hears why).
    assert together(public_key(generate_private_key()), key) is None
    assert together(public_key(generate_private_key()), public_key(generate_private_key())) is None
    assert len(addresses()) == 3
    assert conn.execute("SELECT count(*) AS n FROM jobs").fetchone() == {"n": 3}
    assert conn.info.transaction_status == 0

"""Service layer (what the API calls): one transaction for the record, job and audit, then send.

These tests use a real PostgreSQL and a real Redis broker; no worker consumes the queue here,
so messages are read back from Redis to check that exactly one was sent per job.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import redis
from psycopg import Connection
from psycopg.rows import DictRow

from elysium.errors import Conflict, NetworkFull, NotFound, ValidationError
from elysium.keys import generate_private_key, public_key
from elysium.queue import JobQueue
from elysium.settings import Settings
from services.hubs import declare_hub
from services.interfaces import change_interface, create_interface
from services.peers import add_peer, change_peer, remove_peer, rotate_key

TEST_REDIS_DB = 9  # a database of the test's own, flushed around each test


@pytest.fixture
def broker(settings: Settings) -> Iterator[tuple[JobQueue, redis.Redis]]:
    url = settings.redis_url.rsplit("/", 1)[0] + f"/{TEST_REDIS_DB}"
    r = redis.Redis.from_url(url)
    r.flushdb()
    queue = JobQueue(Settings.from_env({}, redis_url=url, redis_key_prefix="svc:"))
    try:
        yield queue, r
    finally:
        queue.close()
        r.flushdb()


def sent(r: redis.Redis, queue: str) -> list[str]:
    """Task ids of the messages waiting on a queue."""
    return [json.loads(m)["headers"]["id"] for m in r.lrange(f"svc:{queue}", 0, -1)]


def key() -> str:
    return public_key(generate_private_key())


@pytest.fixture
def iface(conn: Connection[DictRow], broker: tuple[JobQueue, redis.Redis]) -> int:
    queue, _ = broker
    declare_hub(conn, "admin", "hub-a", "hub-a.example:51820")
    sub = create_interface(conn, queue, "admin", "hub-a", name="wg0", network="10.20.0.0/29")
    return int(sub.job["interface_id"])


def test_add_peer_records_peer_job_and_audit_then_sends_one_message(
    conn: Connection[DictRow], broker: tuple[JobQueue, redis.Redis], iface: int
) -> None:
    queue, r = broker
    sub = add_peer(conn, queue, "op", iface, name="laptop", public_key=key())
    job = sub.job
    assert job["status"] == "queued" and job["queue"] == "hub.hub-a"
    peer = conn.execute(
        "SELECT status, host(address) AS a FROM peers WHERE id = %s", (job["peer_id"],)
    ).fetchone()
    assert peer == {"status": "pending", "a": "10.20.0.2"}
    assert str(job["id"]) in sent(r, "hub.hub-a")
    audit = conn.execute(
        "SELECT actor, action, outcome FROM audit WHERE target = %s", (f"peer:{job['peer_id']}",)
    ).fetchall()
    assert audit == [{"actor": "op", "action": "add_peer", "outcome": "accepted"}]
    assert sub.body["peer_id"] == job["peer_id"]


def test_the_same_idempotency_key_twice_gives_one_job_and_one_peer(
    conn: Connection[DictRow], broker: tuple[JobQueue, redis.Redis], iface: int
) -> None:
    queue, r = broker
    k = key()
    first = add_peer(conn, queue, "op", iface, name="a", public_key=k, idempotency_key="req-1")
    again = add_peer(conn, queue, "op", iface, name="a", public_key=k, idempotency_key="req-1")
    assert again.replayed and again.job["id"] == first.job["id"]
    assert conn.execute("SELECT count(*) AS n FROM peers").fetchone() == {"n": 1}
    assert sent(r, "hub.hub-a").count(str(first.job["id"])) == 1


def test_a_duplicate_public_key_is_refused_and_writes_nothing(
    conn: Connection[DictRow], broker: tuple[JobQueue, redis.Redis], iface: int
) -> None:
    queue, _ = broker
    k = key()
    add_peer(conn, queue, "op", iface, name="a", public_key=k)
    before = conn.execute(
        "SELECT (SELECT count(*) FROM jobs) j, (SELECT count(*) FROM peers) p,"
        " (SELECT count(*) FROM audit) a"
    ).fetchone()
    with pytest.raises(Conflict) as err:
        add_peer(conn, queue, "op", iface, name="b", public_key=k)
    assert err.value.code == "public_key_in_use" and "public_key" in err.value.fields
    after = conn.execute(
        "SELECT (SELECT count(*) FROM jobs) j, (SELECT count(*) FROM peers) p,"
        " (SELECT count(*) FROM audit) a"
    ).fetchone()
    assert after == before


def test_an_exhausted_network_is_refused_with_network_full(
    conn: Connection[DictRow], broker: tuple[JobQueue, redis.Redis], iface: int
) -> None:
    queue, _ = broker
    for i in range(5):  # a /29 holds the hub (.1) and five peers (.2 - .6)
        add_peer(conn, queue, "op", iface, name=f"p{i}", public_key=key())
    with pytest.raises(NetworkFull):
        add_peer(conn, queue, "op", iface, name="one-too-many", public_key=key())
    assert conn.execute("SELECT count(*) AS n FROM peers").fetchone() == {"n": 5}


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"public_key": "not-a-key"}, "public_key"),
        ({"subnets": ["10.20.0.0/30"]}, "subnets.0"),
        ({"subnets": ["300.1.1.0/24"]}, "subnets.0"),
        ({"subnets": ["192.168.7.1/24"]}, "subnets.0"),
    ],
)
def test_bad_peer_input_names_the_field_and_writes_nothing(
    conn: Connection[DictRow],
    broker: tuple[JobQueue, redis.Redis],
    iface: int,
    kwargs: dict[str, object],
    field: str,
) -> None:
    queue, _ = broker
    args: dict[str, object] = {"name": "x", "public_key": key(), **kwargs}
    with pytest.raises(ValidationError) as err:
        add_peer(conn, queue, "op", iface, **args)  # type: ignore[arg-type]
    assert field in err.value.fields
    assert conn.execute("SELECT count(*) AS n FROM peers").fetchone() == {"n": 0}


def test_a_job_for_an_unknown_interface_or_hub_is_not_found(
    conn: Connection[DictRow], broker: tuple[JobQueue, redis.Redis]
) -> None:
    queue, _ = broker
    with pytest.raises(NotFound):
        add_peer(conn, queue, "op", 4242, name="x", public_key=key())
    with pytest.raises(NotFound) as err:
        create_interface(conn, queue, "admin", "nohub", name="wg0", network="10.1.0.0/24")
    assert err.value.code == "hub_not_found"
    assert conn.execute("SELECT count(*) AS n FROM jobs").fetchone() == {"n": 0}


def test_interfaces_on_one_hub_cannot_share_name_port_or_network(
    conn: Connection[DictRow], broker: tuple[JobQueue, redis.Redis], iface: int
) -> None:
    queue, _ = broker
    with pytest.raises(Conflict) as err:
        create_interface(
            conn, queue, "admin", "hub-a", name="wg0", network="10.30.0.0/24", listen_port=51821
        )
    assert err.value.code == "interface_exists"
    with pytest.raises(Conflict) as err:
        create_interface(conn, queue, "admin", "hub-a", name="wg1", network="10.30.0.0/24")
    assert err.value.code == "port_in_use"
    with pytest.raises(ValidationError) as verr:
        create_interface(
            conn, queue, "admin", "hub-a", name="wg1", network="10.20.0.0/24", listen_port=51821
        )
    assert verr.value.code == "network_overlap"


def test_remove_change_and_rotate_record_their_jobs(
    conn: Connection[DictRow], broker: tuple[JobQueue, redis.Redis], iface: int
) -> None:
    queue, r = broker
    peer_id = add_peer(conn, queue, "op", iface, name="a", public_key=key()).job["peer_id"]
    new_key = key()
    rot = rotate_key(conn, queue, f"peer:{peer_id}", peer_id, new_key)
    assert rot.job["payload"]["public_key"] == new_key
    chg = change_peer(conn, queue, "op", peer_id, {"enabled": False})
    assert chg.job["kind"] == "update_peer"
    rem = remove_peer(conn, queue, "op", peer_id)
    assert conn.execute("SELECT status FROM peers WHERE id = %s", (peer_id,)).fetchone() == {
        "status": "removing"
    }
    with pytest.raises(Conflict):
        remove_peer(conn, queue, "op", peer_id)
    assert len(sent(r, "hub.hub-a")) == 5 and str(rem.job["id"]) in sent(r, "hub.hub-a")


def test_a_change_to_a_field_that_cannot_change_names_it_and_writes_nothing(
    conn: Connection[DictRow], broker: tuple[JobQueue, redis.Redis], iface: int
) -> None:
    queue, _ = broker
    peer_id = add_peer(conn, queue, "op", iface, name="p", public_key=key()).job["peer_id"]
    jobs_before = conn.execute("SELECT count(*) AS n FROM jobs").fetchone()

    with pytest.raises(ValidationError) as peer_err:
        change_peer(conn, queue, "op", peer_id, {"enabled": False, "name": "q"})
    with pytest.raises(ValidationError) as iface_err:
        change_interface(conn, queue, "op", iface, {"exit": False, "network": "10.9.0.0/24"})

    assert peer_err.value.fields == {"name": "cannot be changed"}
    assert iface_err.value.fields == {"network": "cannot be changed"}
    assert conn.execute("SELECT count(*) AS n FROM jobs").fetchone() == jobs_before

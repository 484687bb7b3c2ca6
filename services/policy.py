"""An interface's access policy: read it, replace it (a job its hub applies), and ask it who
may talk to whom, from the same compiled form the hub loads."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from psycopg import Connection
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

import elysium.policy as policy
from db.interfaces import get_interface, policy_vocabulary, update_interface
from db.mesh import linked_hubs, remote_peers
from db.peers import desired_peers, get_peer
from db.rows import InterfaceRow
from elysium.errors import NotFound, ValidationError
from elysium.networks import hub_addresses
from elysium.queue import JobQueue
from elysium.states import JobKind, is_live_peer
from services.interfaces import changeable_interface, interface_record
from services.jobs import Record, Submitted, submit_hub_job


def memberships(peers: list[Any]) -> list[policy.PeerMembership]:
    """The policy's view of peers: id, tags, and the addresses and subnets each sends from."""
    return [
        policy.PeerMembership(
            peer_id=p["id"],
            tags=tuple(p["tags"]),
            addresses=tuple(a for a in (p["address"], p["address6"], *p["subnets"]) if a),
        )
        for p in peers
    ]


def mesh_peers(conn: Connection[DictRow], hub: str) -> list[dict[str, Any]]:
    """The tagged peers of the hubs linked to ``hub``: tags name them too."""
    return remote_peers(conn, [h["id"] for h in linked_hubs(conn, hub)])


def compiled_for(
    conn: Connection[DictRow], iface: InterfaceRow
) -> tuple[policy.CompiledPolicy, policy.SetMembers]:
    """The interface's compiled policy and the members of its sets, as its hub loads them."""
    local = desired_peers(conn, iface["id"])
    return compile_with(iface, local, mesh_peers(conn, iface["hub"]))


def compile_with(
    iface: InterfaceRow, local: Sequence[Any], across: Sequence[Any]
) -> tuple[policy.CompiledPolicy, policy.SetMembers]:
    """:func:`compiled_for` from peers already read: the interface's ``local`` desired peers
    and its hub's :func:`mesh_peers` (tags name them too)."""
    compiled = policy.compile_policy(iface["name"], policy.policy_from_json(iface["policy"]))
    peers = memberships([*local, *across])
    members = policy.members_for(
        iface["name"], peers, iface["routes"], hub_addresses(iface["network"], iface["network6"])
    )
    return compiled, members


def set_policy(
    conn: Connection[DictRow],
    queue: JobQueue,
    actor: str,
    interface_id: int,
    body: dict[str, Any],
    idempotency_key: str | None = None,
) -> Submitted:
    """Replace the interface's policy (validated against its tags and peers); its hub loads
    the new one in one transaction, or keeps the old one and fails the job."""

    def write(c: Connection[DictRow]) -> Record:
        iface = changeable_interface(c, interface_id)
        linked = [h["id"] for h in linked_hubs(c, iface["hub"])]
        tags, peers = policy_vocabulary(c, interface_id, linked)
        parsed = policy.parse_policy(body, known_tags=tags, known_peers=peers)
        policy.compile_policy(iface["name"], parsed)  # what the hub will load must compile
        update_interface(c, interface_id, {"policy": Jsonb(policy.policy_to_json(parsed))})
        return interface_record(iface, {"rules": len(parsed.rules), "default": parsed.default})

    return submit_hub_job(
        conn,
        queue,
        kind=JobKind.SET_POLICY,
        submitter=actor,
        idempotency_key=idempotency_key,
        write=write,
        request={"interface_id": interface_id, **body},
    )


def _address(conn: Connection[DictRow], iface: InterfaceRow, field: str, value: str) -> str:
    """An endpoint of a check: an address, ``hub``, or ``peer:ID`` (its IPv4 address)."""
    if value == "hub":
        return hub_addresses(iface["network"], None)[0]
    if value.startswith("peer:"):
        try:
            peer = get_peer(conn, int(value.removeprefix("peer:")))
        except ValueError:
            raise ValidationError(field, "peer:ID needs a number") from None
        except NotFound:
            raise ValidationError(field, f"{value} is no peer") from None
        if peer["interface_id"] != iface["id"] or not is_live_peer(peer["status"]):
            raise ValidationError(field, f"{value} is no live peer of this interface")
        assert peer["address"] is not None
        return peer["address"]
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValidationError(field, "must be an IP address, hub or peer:ID") from None


def check_policy(
    conn: Connection[DictRow],
    interface_id: int,
    src: str,
    dst: str,
    proto: str | None,
    port: int | None,
) -> dict[str, Any]:
    """Would the hub forward this? The deciding rule (or the default), from the compiled
    form and set members the hub loads."""
    iface = get_interface(conn, interface_id)
    source, destination = _address(conn, iface, "from", src), _address(conn, iface, "to", dst)
    if ipaddress.ip_address(source).version != ipaddress.ip_address(destination).version:
        raise ValidationError("to", "must be of the same IP version as from")
    compiled, members = compiled_for(conn, iface)
    decision = policy.check(compiled, members, source, destination, proto, port)
    rules = iface["policy"].get("rules", [])
    return {
        "action": "allow" if decision.action == "accept" else "deny",
        "rule": decision.rule,
        "matched": rules[decision.rule] if decision.rule is not None else None,
        "default": decision.rule is None,
        "from": source,
        "to": destination,
    }

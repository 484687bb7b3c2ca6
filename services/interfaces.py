"""Creating and deleting interfaces: record the desired interface, let its hub build it."""

from __future__ import annotations

import re
from typing import Any

from psycopg import Connection
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from db.hubs import get_hub
from db.interfaces import create_interface as insert_interface
from db.interfaces import (
    get_interface,
    interface_nat_said,
    list_hub_interfaces,
    set_interface_status,
    update_interface,
)
from db.rows import InterfaceRow
from elysium.errors import Conflict, ValidationError
from elysium.networks import check_subnets_outside, parse_network, parse_subnets
from elysium.queue import JobQueue
from elysium.states import InterfaceStatus, JobKind
from services.changes import check_changeable
from services.jobs import Record, Submitted, submit_hub_job
from services.mesh import check_new_interface
from services.mesh import check_routes as check_mesh_routes


def interface_record(iface: InterfaceRow, payload: dict[str, Any]) -> Record:
    """What a job about one interface acts on."""
    return Record(
        hub=iface["hub"],
        target=f"interface:{iface['id']}",
        hub_id=iface["hub_id"],
        interface_id=iface["id"],
        payload=payload,
        meshed=iface["hub_meshed"],
    )


def changeable_interface(
    c: Connection[DictRow], interface_id: int, refusal: str = "the interface is being deleted"
) -> InterfaceRow:
    """The interface, locked for the change, refused (409) while it is being deleted."""
    iface = get_interface(c, interface_id, lock=True)
    if iface["status"] == InterfaceStatus.DELETING:
        raise Conflict(refusal, code="interface_deleting")
    return iface


def create_interface(
    conn: Connection[DictRow],
    queue: JobQueue,
    actor: str,
    hub_name: str,
    *,
    name: str,
    network: str,
    network6: str | None = None,
    listen_port: int = 51820,
    mtu: int | None = None,
    dns: list[str] | None = None,
    keepalive: int | None = 25,
    idempotency_key: str | None = None,
) -> Submitted:
    """Record interface ``name`` on a hub and queue its creation there."""
    net = parse_network(network, "network", 4)
    net6 = parse_network(network6, "network6", 6) if network6 is not None else None

    def write(c: Connection[DictRow]) -> Record:
        hub = get_hub(c, hub_name)
        nets = [net, net6] if net6 else [net]
        check_new_interface(c, hub_name, name, listen_port, nets)
        for other in list_hub_interfaces(c, hub_name):
            if net.overlaps(parse_network(other["network"], "network", 4)):
                raise ValidationError(
                    "network",
                    f"overlaps {other['network']} of {other['name']}",
                    code="network_overlap",
                )
            if (
                net6
                and other["network6"]
                and net6.overlaps(parse_network(other["network6"], "network6", 6))
            ):
                raise ValidationError(
                    "network6",
                    f"overlaps {other['network6']} of {other['name']}",
                    code="network_overlap",
                )
        iface = insert_interface(
            c,
            hub["id"],
            name,
            str(net),
            str(net6) if net6 else None,
            listen_port,
            mtu,
            dns or [],
            keepalive,
        )
        return interface_record(iface, {"name": name})

    request: dict[str, object] = {
        "hub": hub_name,
        "name": name,
        "network": str(net),
        "network6": str(net6),
    }
    request |= {"listen_port": listen_port, "mtu": mtu, "dns": dns, "keepalive": keepalive}
    return submit_hub_job(
        conn,
        queue,
        kind=JobKind.CREATE_INTERFACE,
        submitter=actor,
        idempotency_key=idempotency_key,
        write=write,
        request=request,
    )


def delete_interface(
    conn: Connection[DictRow],
    queue: JobQueue,
    actor: str,
    interface_id: int,
    idempotency_key: str | None = None,
) -> Submitted:
    """Mark an interface for deletion; its hub removes the device, then the records go."""

    def write(c: Connection[DictRow]) -> Record:
        iface = changeable_interface(c, interface_id, "the interface is already being deleted")
        set_interface_status(c, interface_id, InterfaceStatus.DELETING)
        return interface_record(iface, {"name": iface["name"]})

    return submit_hub_job(
        conn,
        queue,
        kind=JobKind.DELETE_INTERFACE,
        submitter=actor,
        idempotency_key=idempotency_key,
        write=write,
        request={"interface_id": interface_id},
    )


NAT_DEVICE = re.compile(r"^[A-Za-z0-9_.@:-]{1,15}$")


def check_routes(iface: InterfaceRow, routes: object) -> list[str]:
    """Networks behind the hub that its peers may reach: valid, no special ranges, outside
    the interface's own networks (``routes.N``)."""
    nets = parse_subnets(routes, "routes")
    own = [parse_network(iface["network"], "network", 4)]
    if iface["network6"]:
        own.append(parse_network(iface["network6"], "network6", 6))
    check_subnets_outside(nets, own, "routes")
    return [str(n) for n in nets]


def check_nat(nat: object) -> dict[str, str] | None:
    """``{"egress": DEVICE}`` (masquerade what leaves through DEVICE) or None (no NAT)."""
    if nat is None:
        return None
    if not isinstance(nat, dict) or set(nat) != {"egress"}:
        raise ValidationError("nat", 'must be {"egress": DEVICE} or null')
    if not isinstance(nat["egress"], str) or not NAT_DEVICE.match(nat["egress"]):
        raise ValidationError("nat.egress", "must be a network device name (1-15 characters)")
    return {"egress": nat["egress"]}


def change_interface(
    conn: Connection[DictRow],
    queue: JobQueue,
    actor: str,
    interface_id: int,
    changes: dict[str, Any],
    idempotency_key: str | None = None,
) -> Submitted:
    """PATCH ``routes``, ``exit``, ``nat`` and ``direct``: the hub converges its routes, NAT
    and policy; with ``direct`` the peers' configs list the peers they may reach directly.

    ``exit: true`` needs ``nat`` said in the same request or before: an operator who routes
    the peers' internet traffic without masquerade says ``"nat": null``.
    """
    check_changeable(changes, ("routes", "exit", "nat", "direct"))
    values: dict[str, Any] = {}
    if "nat" in changes:
        values["nat"] = Jsonb(check_nat(changes["nat"]))
    if "exit" in changes:
        if not isinstance(changes["exit"], bool):
            raise ValidationError("exit", "must be true or false")
        values["exit"] = changes["exit"]
    if "direct" in changes:
        if not isinstance(changes["direct"], bool):
            raise ValidationError("direct", "must be true or false")
        values["direct"] = changes["direct"]

    def write(c: Connection[DictRow]) -> Record:
        iface = changeable_interface(c, interface_id)
        if "routes" in changes:
            values["routes"] = check_routes(iface, changes["routes"])
            check_mesh_routes(c, iface, values["routes"])
        nat_said = "nat" in changes or interface_nat_said(c, interface_id)
        if values.get("exit") and not nat_said:
            raise ValidationError(
                "nat", 'is needed with exit: {"egress": DEVICE}, or null to route without NAT'
            )
        update_interface(c, interface_id, values)
        return interface_record(iface, {k: changes[k] for k in sorted(changes)})

    return submit_hub_job(
        conn,
        queue,
        kind=JobKind.UPDATE_INTERFACE,
        submitter=actor,
        idempotency_key=idempotency_key,
        write=write,
        request={"interface_id": interface_id, **changes},
    )


def rotate_interface_key(
    conn: Connection[DictRow],
    queue: JobQueue,
    actor: str,
    interface_id: int,
    idempotency_key: str | None = None,
) -> Submitted:
    """Queue a new private key for an interface: its hub makes it (0600, never sent), applies
    it and reports the public key; following peers switch to it through their config."""

    def write(c: Connection[DictRow]) -> Record:
        iface = changeable_interface(c, interface_id)
        return interface_record(iface, {"name": iface["name"]})

    return submit_hub_job(
        conn,
        queue,
        kind=JobKind.ROTATE_INTERFACE_KEY,
        submitter=actor,
        idempotency_key=idempotency_key,
        write=write,
        request={"interface_id": interface_id, "rotate": "key"},
    )

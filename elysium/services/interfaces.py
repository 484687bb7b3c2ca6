"""Creating and deleting interfaces: record the desired interface, let its hub build it."""

from __future__ import annotations

from psycopg import Connection
from psycopg.rows import DictRow

from db.hubs import get_hub
from db.interfaces import create_interface as insert_interface
from db.interfaces import get_interface, list_hub_interfaces, set_interface_status
from elysium.errors import Conflict, ValidationError
from elysium.networks import parse_network
from elysium.queue import JobQueue
from elysium.services.jobs import Record, Submitted, submit_hub_job
from elysium.states import InterfaceStatus


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
        return Record(
            hub=hub_name,
            target=f"interface:{iface['id']}",
            hub_id=hub["id"],
            interface_id=iface["id"],
            payload={"name": name},
        )

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
        kind="create_interface",
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
        iface = get_interface(c, interface_id, lock=True)
        if iface["status"] == InterfaceStatus.DELETING:
            raise Conflict("the interface is already being deleted", code="interface_deleting")
        set_interface_status(c, interface_id, InterfaceStatus.DELETING)
        return Record(
            hub=iface["hub"],
            target=f"interface:{interface_id}",
            hub_id=iface["hub_id"],
            interface_id=interface_id,
            payload={"name": iface["name"]},
        )

    return submit_hub_job(
        conn,
        queue,
        kind="delete_interface",
        submitter=actor,
        idempotency_key=idempotency_key,
        write=write,
        request={"interface_id": interface_id},
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
        iface = get_interface(c, interface_id, lock=True)
        if iface["status"] == InterfaceStatus.DELETING:
            raise Conflict("the interface is being deleted", code="interface_deleting")
        return Record(
            hub=iface["hub"],
            target=f"interface:{interface_id}",
            hub_id=iface["hub_id"],
            interface_id=interface_id,
            payload={"name": iface["name"]},
        )

    return submit_hub_job(
        conn,
        queue,
        kind="rotate_interface_key",
        submitter=actor,
        idempotency_key=idempotency_key,
        write=write,
        request={"interface_id": interface_id, "rotate": "key"},
    )

"""Direct peer-to-peer paths: a peer reports its candidates; on a direct interface each peer's
config lists the other peers its policy lets it exchange traffic with (either direction), with
their keys, tunnel addresses and candidates; the rest stay relayed by the hub."""

from __future__ import annotations

import ipaddress
import json
import threading
from typing import Any

from psycopg import Connection
from psycopg.rows import DictRow

from db import audit
from db.interfaces import get_interface
from db.peer_candidates import (
    direct_peers,
    get_candidates,
    paths_of,
    peers_of_interface,
    set_candidates,
    set_paths,
    tunnel_addresses,
)
from db.peers import get_peer
from db.rows import InterfaceRow
from elysium.config_delta import canonical, config_version
from elysium.direct import (
    PeerClasses,
    candidate_endpoints,
    inbound_rules,
    parse_candidates,
    rule_sources,
)
from elysium.errors import Forbidden, ValidationError
from elysium.networks import hub_addresses
from elysium.policy import SetIndex
from elysium.states import is_live_peer
from services.policy import compile_with, mesh_peers

DIRECT_KEEPALIVE_S = 1  # how often a direct peer's client says it is there


def report_candidates(
    conn: Connection[DictRow], actor: str, peer_id: int, addresses: object, listen_port: object
) -> dict[str, Any]:
    """Store the peer's own addresses and listen port (validated; nothing stored on a 400);
    returns what is stored, with its time."""
    with conn.transaction():
        peer = get_peer(conn, peer_id, lock=True)
        if not is_live_peer(peer["status"]):
            raise Forbidden(f"peer {peer_id} is {peer['status']}", code="peer_not_live")
        iface = get_interface(conn, peer["interface_id"])
        nets = [ipaddress.ip_network(n) for n in (iface["network"], iface["network6"]) if n]
        addrs, port = parse_candidates(addresses, listen_port, nets, ())
        taken = tunnel_addresses(conn, addrs, peer_id) if addrs else []
        if taken:  # checked again, now knowing them: the 400 names the address's field
            parse_candidates(addresses, listen_port, nets, taken)
        before = get_candidates(conn, peer_id)
        set_candidates(conn, peer_id, addrs, port)
        if before is None or (before["addresses"], before["listen_port"]) != (addrs, port):
            audit.record(
                conn,
                actor,
                "peer.candidates",
                f"peer:{peer_id}",
                "succeeded",
                {"addresses": addrs, "listen_port": port},
            )
        stored = get_candidates(conn, peer_id)
    assert stored is not None
    return {"peer_id": peer_id, **stored}


PATHS = ("direct", "trying", "relayed")
MAX_PATHS = 1024


def report_paths(conn: Connection[DictRow], peer_id: int, paths: object) -> list[dict[str, Any]]:
    """Store the peer's paths to the other peers of its interface (``[{peer_id, path,
    endpoint?, why?}]``, each checked, a 400 naming ``paths.N.FIELD``); they replace what it
    reported before. Returns them as stored."""
    if not isinstance(paths, list) or len(paths) > MAX_PATHS:
        raise ValidationError("paths", f"must be a list of at most {MAX_PATHS} paths")
    rows = [_path(item, f"paths.{i}") for i, item in enumerate(paths)]
    with conn.transaction():
        peer = get_peer(conn, peer_id)
        if not is_live_peer(peer["status"]):
            raise Forbidden(f"peer {peer_id} is {peer['status']}", code="peer_not_live")
        ids = [r["peer_id"] for r in rows]
        known = peers_of_interface(conn, peer["interface_id"], ids)
        for i, other in enumerate(ids):
            if other not in known or other == peer_id or ids.index(other) != i:
                raise ValidationError(f"paths.{i}.peer_id", "is no other peer of this interface")
        set_paths(conn, peer_id, rows)
        return paths_of(conn, peer_id)


def _path(item: object, at: str) -> dict[str, Any]:
    if not isinstance(item, dict) or not set(item) <= {"peer_id", "path", "endpoint", "why"}:
        raise ValidationError(at, "must be {peer_id, path, endpoint?, why?}")
    if not isinstance(item.get("peer_id"), int) or isinstance(item.get("peer_id"), bool):
        raise ValidationError(f"{at}.peer_id", "must be a peer id")
    if item.get("path") not in PATHS:
        raise ValidationError(f"{at}.path", "must be direct, trying or relayed")
    for key, most in (("endpoint", 64), ("why", 200)):
        value = item.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > most):
            raise ValidationError(f"{at}.{key}", f"must be text of at most {most} characters")
    return {k: item.get(k) for k in ("peer_id", "path", "endpoint", "why")}


class Snapshot:
    """What every peer of a direct interface shares, computed once per state of the
    interface and its peers (in this process): the compiled policy, its indexed sets, each
    peer's entry as the others list it (and its canonical JSON), and per class of peers
    (``elysium.direct.PeerClasses``) whom they get and the rules they enforce, made on first
    use. A follower then only picks its own slice."""

    def __init__(
        self,
        iface: InterfaceRow,
        peers: list[dict[str, Any]],
        across: list[dict[str, Any]],
        previous: Snapshot | None = None,
    ) -> None:
        self.compiled, members = compile_with(iface, peers, across)
        self.sets = SetIndex(members)
        self.sources = rule_sources(self.compiled, members)
        self.hub = [h.split("/")[0] for h in hub_addresses(iface["network"], iface["network6"])]
        self.peers = {p["id"]: p for p in peers}
        self.entries = {
            p["id"]: {
                "peer_id": p["id"],
                "public_key": p["public_key"],
                "addresses": [_host(a) for a in _tunnel(p)],
                "endpoints": candidate_endpoints(
                    p["endpoint"], p["local_addresses"], p["listen_port"]
                ),
                "keepalive": DIRECT_KEEPALIVE_S,
            }
            for p in peers
        }
        if previous is not None:  # an entry that did not move stays the same object
            for i, entry in self.entries.items():
                was = previous.entries.get(i)
                if was == entry:
                    self.entries[i] = was
        self.texts: dict[int, str] = {
            i: previous.texts[i]
            if previous is not None and previous.entries.get(i) is e
            else canonical(e)
            for i, e in self.entries.items()
        }
        self.classes = PeerClasses(self.compiled, self.sets, {p["id"]: _tunnel(p) for p in peers})
        self._lock = threading.Lock()
        self._made: dict[int, tuple[list[int], dict[str, Any], str]] = {}

    def of_class(self, cls: int) -> tuple[list[int], dict[str, Any], str]:
        """(the peers a member of ``cls`` may talk with, its ``inbound``, that in canonical
        JSON), made once per class."""
        made = self._made.get(cls)
        if made is None:
            with self._lock:
                made = self._made.get(cls)
                if made is None:
                    own = self.classes.addresses[cls]
                    inbound = inbound_rules(self.compiled, self.sets, self.sources, own, self.hub)
                    made = (self.classes.talks_with(cls), inbound, canonical(inbound))
                    self._made[cls] = made
        return made


# interface id -> (the state it was computed from, its snapshot): the latest only, so a
# wake-up of every follower of an interface compiles its policy once, not once per follower.
_snapshots: dict[int, tuple[str, Snapshot]] = {}


def snapshot(conn: Connection[DictRow], iface: InterfaceRow) -> Snapshot:
    """The interface's :class:`Snapshot` for its state now (rows read every time, the rest
    reused while they are the same)."""
    peers = direct_peers(conn, iface["id"])
    across = mesh_peers(conn, iface["hub"])
    state = json.dumps(
        [iface["name"], iface["policy"], iface["routes"], iface["network"], iface["network6"],
         peers, across],
        sort_keys=True,
        default=str,
    )  # fmt: skip
    cached = _snapshots.get(iface["id"])
    if cached is not None and cached[0] == state:
        return cached[1]
    made = Snapshot(iface, peers, across, cached[1] if cached is not None else None)
    _snapshots[iface["id"]] = (state, made)
    return made


def _tunnel(peer: dict[str, Any]) -> list[str]:
    return [a for a in (peer["address"], peer["address6"]) if a]


def direct_config(
    conn: Connection[DictRow],
    config: dict[str, Any],
    iface: InterfaceRow | None = None,
    snap: Snapshot | None = None,
) -> dict[str, Any]:
    """``config`` (``db.peer_config.peer_config``) with ``direct`` and, on a direct
    interface, ``direct_peers``: the peers policy lets this one talk with, in id order, each
    ``{peer_id, public_key, addresses, endpoints, keepalive}`` (endpoints: where the hub saw
    it, then its reported addresses), and ``inbound``: the rules it enforces itself on what
    reaches it (``elysium.direct.inbound_rules``). The version covers them. Off: the config
    as it was. ``iface`` and ``snap``: the interface's row and :class:`Snapshot` when a
    caller already holds them for this state (else read here)."""
    if iface is None:
        iface = get_interface(conn, config["interface_id"])
    if not iface["direct"]:
        return config
    if snap is None:
        snap = snapshot(conn, iface)
    me = config["peer_id"]
    listed: list[dict[str, Any]] = []
    texts: list[str] = []
    inbound: dict[str, Any] | None = None
    inbound_text = "null"
    if me in snap.peers:
        ids, inbound, inbound_text = snap.of_class(snap.classes.of[me])
        listed = [snap.entries[i] for i in ids if i != me]
        texts = [snap.texts[i] for i in ids if i != me]
    out = {k: v for k, v in config.items() if k != "version"}
    out |= {"direct": True, "direct_peers": listed, "inbound": inbound}
    spliced = {"direct_peers": "[" + ",".join(texts) + "]", "inbound": inbound_text}
    return {**out, "version": config_version(out, spliced)}


def _host(address: str) -> str:
    addr = ipaddress.ip_address(address)
    return f"{addr}/{addr.max_prefixlen}"

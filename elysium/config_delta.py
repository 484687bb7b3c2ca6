"""A peer config's version, and the delta between two of its versions: what a follower on a
direct interface receives instead of the whole config, so the bytes of one join do not grow
with the number of peers. Shared by the server (``services/peer_self``) and the client."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from elysium.direct import element_key

LISTED = "direct_peers"  # the one list a delta carries entry by entry, keyed by peer_id
INBOUND = "inbound"  # its source sets travel element by element (``inbound_sets``)


def canonical(value: Any) -> str:
    """The canonical JSON a version hashes (keys sorted, no spaces)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def config_version(config: dict[str, Any], spliced: Mapping[str, str] | None = None) -> str:
    """A short hash of the config's canonical JSON (``version`` left out): it moves whenever
    anything in it moves. ``spliced``: values of some keys already in canonical JSON (a
    server's shared parts, made once for many configs), used as they are."""
    body = {k: v for k, v in config.items() if k != "version"}
    marks = {k: f"\x00{k}\x00" for k in spliced or {} if k in body}
    text = canonical(body | marks)
    for k, mark in marks.items():
        text = text.replace(canonical(mark), (spliced or {})[k], 1)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def config_delta(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``{version, base, keys, set, unset, direct_peers: {upsert, remove, present},
    inbound_sets}``: from ``old`` (whose version is ``base``) to ``new``; other peers listed
    only when they came, went or moved; ``inbound`` only as the elements its sets gained and
    lost (``{name: {add, remove}}``) while the rest of it stays; ``keys``: every field of
    ``new`` (a follower may hold fields of its own)."""
    keys = (set(old) | set(new)) - {"version", LISTED}
    was = {p["peer_id"]: p for p in old.get(LISTED) or []}
    now = {p["peer_id"]: p for p in new.get(LISTED) or []}
    sets = _set_moves(old.get(INBOUND), new.get(INBOUND))
    if sets is not None:
        keys.discard(INBOUND)
    return {
        "version": new["version"],
        "base": old["version"],
        "keys": sorted(new),
        "set": {k: new[k] for k in sorted(keys) if k in new and old.get(k) != new[k]},
        "unset": sorted(k for k in keys if k in old and k not in new),
        LISTED: {
            "upsert": [p for i, p in sorted(now.items()) if not _same(was.get(i), p)],
            "remove": sorted(set(was) - set(now)),
            "present": LISTED in new,
        },
        "inbound_sets": sets or {},
    }


def _same(a: Any, b: Any) -> bool:
    return a is b or a == b  # a server's entries that did not move are the same objects


def _set_moves(old: Any, new: Any) -> dict[str, dict[str, list[str]]] | None:
    """What each of ``inbound``'s sets gained and lost, when nothing else of it moved."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return None
    if {k: v for k, v in old.items() if k != "sets"} != {
        k: v for k, v in new.items() if k != "sets"
    } or set(old.get("sets", {})) != set(new.get("sets", {})):
        return None
    moves = {}
    for name, elements in new["sets"].items():
        before, after = set(old["sets"][name]), set(elements)
        if before != after:
            moves[name] = {
                "add": sorted(after - before, key=element_key),
                "remove": sorted(before - after, key=element_key),
            }
    return moves


def apply_delta(old: dict[str, Any], delta: dict[str, Any]) -> dict[str, Any] | None:
    """The config ``delta`` leads to from ``old``; None when it does not apply (another
    base) or the result's version is not the one announced: fetch the whole config then."""
    if delta.get("base") != old.get("version"):
        return None
    keys = set(delta["keys"])
    new = {k: v for k, v in old.items() if k in keys and k not in delta["unset"]}
    new.update(delta["set"])
    listed = delta[LISTED]
    peers = {p["peer_id"]: p for p in old.get(LISTED) or []}
    for gone in listed["remove"]:
        peers.pop(gone, None)
    peers.update({p["peer_id"]: p for p in listed["upsert"]})
    if listed["present"]:
        new[LISTED] = [peers[i] for i in sorted(peers)]
    else:
        new.pop(LISTED, None)
    moves = delta.get("inbound_sets") or {}
    if moves:
        inbound = new.get(INBOUND)
        if not isinstance(inbound, dict) or not set(moves) <= set(inbound.get("sets", {})):
            return None
        sets = dict(inbound["sets"])
        for name, move in moves.items():
            elements = (set(sets[name]) - set(move["remove"])) | set(move["add"])
            sets[name] = sorted(elements, key=element_key)
        new[INBOUND] = {**inbound, "sets": sets}
    new["version"] = delta["version"]
    if set(new) != keys or config_version(new) != delta["version"]:
        return None
    return new

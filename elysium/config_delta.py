"""A peer config's version, and the delta between two of its versions: what a follower on a
direct interface receives instead of the whole config, so the bytes of one join do not grow
with the number of peers. Shared by the server (``services/peer_self``) and the client."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

LISTED = "direct_peers"  # the one list a delta carries entry by entry, keyed by peer_id


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
    """``{version, base, keys, set, unset, direct_peers: {upsert, remove, present}}``: from
    ``old`` (whose version is ``base``) to ``new``; other peers listed only when they came,
    went or moved; ``keys``: every field of ``new`` (a follower may hold fields of its own)."""
    keys = (set(old) | set(new)) - {"version", LISTED}
    was = {p["peer_id"]: p for p in old.get(LISTED) or []}
    now = {p["peer_id"]: p for p in new.get(LISTED) or []}
    return {
        "version": new["version"],
        "base": old["version"],
        "keys": sorted(new),
        "set": {k: new[k] for k in sorted(keys) if k in new and old.get(k) != new[k]},
        "unset": sorted(k for k in keys if k in old and k not in new),
        LISTED: {
            "upsert": [p for i, p in sorted(now.items()) if was.get(i) != p],
            "remove": sorted(set(was) - set(now)),
            "present": LISTED in new,
        },
    }


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
    new["version"] = delta["version"]
    if set(new) != keys or config_version(new) != delta["version"]:
        return None
    return new

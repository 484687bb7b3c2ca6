"""A peer's config as a wg-quick file: one rendering for the API and the client."""

from __future__ import annotations

from typing import Any

KEY_PLACEHOLDER = "# PrivateKey = <this peer's private key, kept on the peer>"


def render_wg_quick(config: dict[str, Any], private_key: str | None, name: str = "") -> str:
    """The wg-quick ``.conf`` of a peer config (the ``peer_config`` shape).

    ``private_key`` None: the key never left the peer (the API's view), so a comment stands
    where it goes; the client, on the peer itself, passes the key.
    """
    lines = ["[Interface]"]
    if name:
        lines.append(f"# Elysium peer {name}")
    lines.append(KEY_PLACEHOLDER if private_key is None else f"PrivateKey = {private_key}")
    lines.append(f"Address = {', '.join(config['addresses'])}")
    if config.get("dns"):
        lines.append(f"DNS = {', '.join(config['dns'])}")
    if config.get("mtu"):
        lines.append(f"MTU = {config['mtu']}")
    lines += ["", "[Peer]", f"PublicKey = {config['hub_public_key'] or ''}"]
    lines.append(f"Endpoint = {config['endpoint']}")
    lines.append(f"AllowedIPs = {', '.join(config['allowed_ips'])}")
    if config.get("keepalive"):
        lines.append(f"PersistentKeepalive = {config['keepalive']}")
    return "\n".join(lines) + "\n"

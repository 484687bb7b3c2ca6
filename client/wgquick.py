"""The peer's config as a wg-quick file, and that file as a terminal QR code."""

from __future__ import annotations

import io
from typing import Any

import qrcode


def render(config: dict[str, Any], private_key: str, name: str = "") -> str:
    """A wg-quick ``.conf`` for the enrolled config (keys are the user's own: shown in full)."""
    lines = ["[Interface]"]
    if name:
        lines.append(f"# Elysium peer {name}")
    lines.append(f"PrivateKey = {private_key}")
    lines.append(f"Address = {', '.join(config['addresses'])}")
    if config.get("dns"):
        lines.append(f"DNS = {', '.join(config['dns'])}")
    if config.get("mtu"):
        lines.append(f"MTU = {config['mtu']}")
    lines += ["", "[Peer]", f"PublicKey = {config['hub_public_key']}"]
    lines.append(f"Endpoint = {config['endpoint']}")
    lines.append(f"AllowedIPs = {', '.join(config['allowed_ips'])}")
    if config.get("keepalive"):
        lines.append(f"PersistentKeepalive = {config['keepalive']}")
    return "\n".join(lines) + "\n"


def qr_text(text: str) -> str:
    """``text`` as a QR code drawn with block characters (scan it with the WireGuard app)."""
    qr = qrcode.QRCode(border=1, error_correction=qrcode.constants.ERROR_CORRECT_L)
    qr.add_data(text)
    qr.make(fit=True)
    out = io.StringIO()
    qr.print_ascii(out=out, invert=True)
    return out.getvalue()

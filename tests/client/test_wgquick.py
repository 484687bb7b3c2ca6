"""The exported config is a wg-quick file a person can use as it is, or scan as a QR code."""

from __future__ import annotations

from typing import Any

from client.wgquick import qr_text
from elysium.keys import generate_private_key, public_key
from elysium.wgquick import render_wg_quick as render

HUB_KEY = public_key(generate_private_key())


def config(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "addresses": ["10.8.0.2/24", "fd00:8::2/64"],
        "allowed_ips": ["10.8.0.0/24", "fd00:8::/64", "192.168.50.0/24"],
        "hub_public_key": HUB_KEY,
        "endpoint": "198.18.0.1:51820",
        "keepalive": 25,
        "dns": ["10.8.0.1"],
        "mtu": 1380,
    }
    base.update(changes)
    return base


def test_render_gives_interface_and_hub_peer_sections() -> None:
    private = generate_private_key()

    text = render(config(), private, "laptop")

    assert text == (
        "[Interface]\n"
        "# Elysium peer laptop\n"
        f"PrivateKey = {private}\n"
        "Address = 10.8.0.2/24, fd00:8::2/64\n"
        "DNS = 10.8.0.1\n"
        "MTU = 1380\n"
        "\n"
        "[Peer]\n"
        f"PublicKey = {HUB_KEY}\n"
        "Endpoint = 198.18.0.1:51820\n"
        "AllowedIPs = 10.8.0.0/24, fd00:8::/64, 192.168.50.0/24\n"
        "PersistentKeepalive = 25\n"
    )


def test_render_leaves_out_unset_dns_mtu_and_keepalive() -> None:
    text = render(config(dns=[], mtu=None, keepalive=None), generate_private_key())

    assert "DNS" not in text and "MTU" not in text and "PersistentKeepalive" not in text
    assert "# Elysium peer" not in text


def test_qr_code_is_plain_terminal_text() -> None:
    art = qr_text(render(config(), generate_private_key()))

    lines = art.splitlines()
    assert len(lines) > 20
    assert len({len(line) for line in lines}) == 1  # a square block of characters
    assert set(art) <= {" ", "\xa0", "█", "▀", "▄", "\n"}

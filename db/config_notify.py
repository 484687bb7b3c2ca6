"""What wakes a peer's config follow: migration 0007 makes PostgreSQL send
``pg_notify('peer_config', 'i<interface id>')`` when something every peer of an interface sees
moves (the interface, its hub's endpoint, a peer's routed subnets) and ``'p<peer id>'`` when
one peer's own row moves. The process's one listener (``db/notify.py``) fans them out.
"""

from __future__ import annotations

from db.notify import key

CHANNEL = "peer_config"


def interface_key(interface_id: int) -> str:
    """The key a change every peer of the interface sees is sent under."""
    return key(CHANNEL, f"i{interface_id}")


def peer_key(peer_id: int) -> str:
    """The key a change of one peer's own row is sent under."""
    return key(CHANNEL, f"p{peer_id}")

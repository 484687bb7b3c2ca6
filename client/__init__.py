"""``elysium-client``: a peer's enrollment, tunnel, status, config export and key rotation."""

"""The jobs resource: services (and the blueprint and schemas)."""

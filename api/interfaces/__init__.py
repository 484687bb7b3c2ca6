"""The interfaces resource: services (and the blueprint and schemas)."""

"""The peers resource: services (and the blueprint and schemas)."""

"""The hubs resource: services (and the blueprint and schemas)."""

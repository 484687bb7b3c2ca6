"""The hubs resource: blueprint and schemas; its use cases are in services."""

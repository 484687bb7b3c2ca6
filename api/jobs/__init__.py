"""The jobs resource: blueprint and schemas; its use cases are in services."""

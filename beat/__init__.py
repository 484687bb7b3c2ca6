"""Celery beat for Elysium: the periodic workflows and the lease that makes one beat leader."""

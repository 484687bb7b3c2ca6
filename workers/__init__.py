"""Celery workers: the control queue, one queue per hub, and the WireGuard dataplane."""

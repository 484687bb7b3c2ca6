"""Celery workers: the control queue and one queue per hub (WireGuard itself: dataplane)."""

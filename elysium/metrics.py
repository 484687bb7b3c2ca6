"""Prometheus metrics of the non-API processes: each serves its own on a port of its own.

A control worker, a hub worker and beat are single processes (threads or solo pools), so
prometheus-client's default registry holds all of a process's metrics; ``serve_metrics``
exposes it on ``127.0.0.1:<ELYSIUM_METRICS_PORT>`` (0: not served). The API keeps its own
multiprocess ``/metrics`` (api/metrics.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from wsgiref.simple_server import WSGIServer

import redis
from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from elysium.queue import CONTROL_QUEUE, HUB_QUEUE_PREFIX, redis_client
from elysium.settings import Settings

log = logging.getLogger(__name__)
_served: set[int] = set()


def serve_metrics(
    settings: Settings, *, queue_depth: bool = False, registry: CollectorRegistry = REGISTRY
) -> WSGIServer | None:
    """Serve this process's metrics when ``settings.metrics_port`` is set (once per port);
    ``queue_depth`` adds the Redis queue depths (one process per deployment should)."""
    port = settings.metrics_port
    if not port or port in _served:
        return None
    if queue_depth:
        registry.register(QueueDepthCollector(settings))
    server, _ = start_http_server(port, addr="127.0.0.1", registry=registry)
    _served.add(port)
    log.info("metrics on http://127.0.0.1:%d/metrics", port)
    return server


class QueueDepthCollector(Collector):
    """Messages waiting in each Celery queue (``control``, ``hub.<name>``), read from Redis
    (one ``SCAN`` and an ``LLEN`` per queue) when scraped."""

    def __init__(self, settings: Settings) -> None:
        self.prefix = settings.redis_key_prefix
        self.client = redis_client(settings)

    def depths(self) -> dict[str, int]:
        keys = [self.prefix + CONTROL_QUEUE]
        keys += [
            k.decode()
            for k in self.client.scan_iter(f"{self.prefix}{HUB_QUEUE_PREFIX}*", count=1000)
        ]
        found: dict[str, int] = {}
        for key in sorted(set(keys)):
            if self.client.type(key) in (b"list", b"none"):
                found[key.removeprefix(self.prefix)] = int(self.client.llen(key))
        return found

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "elysium_queue_depth", "Messages waiting in each Celery queue", labels=["queue"]
        )
        try:
            for queue, n in self.depths().items():
                depth.add_metric([queue], n)
        except redis.RedisError:  # Redis away: /readyz says so; the other metrics still go out
            return
        yield depth

"""Prometheus metrics, correct under several gunicorn workers.

Request counters and latency histograms live in prometheus-client's multiprocess mode: the
gunicorn config sets ``PROMETHEUS_MULTIPROC_DIR`` before any worker imports this module, and
its ``child_exit`` hook marks dead workers. Job and peer gauges are read from PostgreSQL at
scrape time, so every worker answers the same.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from api import state
from db import stats

REQUESTS = Counter(
    "elysium_api_requests_total", "API requests by route and status", ["method", "route", "status"]
)
LATENCY = Histogram(
    "elysium_api_request_seconds",
    "API request latency by route",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


class DatabaseCollector(Collector):
    """Jobs by kind and status, peers online: counted in PostgreSQL when scraped."""

    def collect(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily(
            "elysium_jobs", "Jobs by kind and status", labels=["kind", "status"]
        )
        online = GaugeMetricFamily("elysium_peers_online", "Live peers seen online")
        paths = GaugeMetricFamily(
            "elysium_peer_paths", "Pairs of peers by the path their peers report", labels=["path"]
        )
        try:
            with state.connection() as conn:
                for kind, status, n in stats.jobs_by_kind_and_status(conn):
                    jobs.add_metric([kind, status], n)
                online.add_metric([], stats.peers_online(conn))
                for path, n in stats.paths_by_kind(conn):
                    paths.add_metric([path], n)
        except Exception:  # the database is down: /readyz says so; request metrics still go out
            return
        yield jobs
        yield online
        yield paths


def _route() -> str:
    return request.url_rule.rule if request.url_rule is not None else "unmatched"


def instrument(app: Flask) -> None:
    """Count and time every request by its route pattern (not its path: bounded labels)."""

    @app.before_request
    def start_timer() -> None:
        g.request_started = time.perf_counter()

    @app.after_request
    def count(response: Response) -> Response:
        started = g.pop("request_started", None)
        took = time.perf_counter() - started if started is not None else None
        observe(request.method, _route(), response.status_code, took)
        return response


def observe(method: str, route: str, status: int, seconds: float | None) -> None:
    """Count one answered request (and its time): the app's, and the answers its gunicorn
    worker writes itself (api/peer_self/fast.py)."""
    if seconds is not None:
        LATENCY.labels(method, route).observe(seconds)
    REQUESTS.labels(method, route, str(status)).inc()


def exposition() -> Response:
    """The text every scrape gets: all workers' request metrics plus database gauges."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(REQUESTS)
        registry.register(LATENCY)
    registry.register(DatabaseCollector())
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


def mark_worker_dead(pid: int) -> None:
    """gunicorn's child_exit hook: drop a dead worker's live gauges."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid)

"""gunicorn configuration of the API: ``gunicorn -c api/gunicorn_conf.py 'api.app:create_app()'``.

Everything comes from the ``ELYSIUM_*`` settings: bind address, workers, TLS certificate and
key, and the Elysium CA for optional client certificates (peers use them; tokens need none).
Prometheus multiprocess files go to ``<state_dir>/prometheus-api`` (emptied at start).
"""

from __future__ import annotations

import os
import shutil
import ssl
import sys
from typing import Any

from elysium.settings import Settings

_settings = Settings.from_env()

bind = [_settings.api_bind]
workers = _settings.api_workers
worker_class = "api.gunicorn_worker.ClientCertWorker"
# Threads, not greenlets: TLS, client certificates, psycopg and Celery run unpatched. A job
# wait blocks its thread on an Event (no CPU, no GIL, no database connection: db/notify.py);
# /healthz always finds a free thread: those waits are capped below this. A config follow
# waits without a thread (api/gunicorn_worker.py): its connection is all it holds.
threads = _settings.api_threads
# gthread keeps alive at most worker_connections - threads idle connections, and parked
# followers count among the connections: one per follower.
worker_connections = max(_settings.api_connections, 2 * _settings.api_threads + 64)
keepalive = 30
timeout = max(60, _settings.job_wait_max_s + 30, _settings.config_wait_max_s + 30)
graceful_timeout = 10
accesslog = None
errorlog = "-"
loglevel = os.environ.get("ELYSIUM_API_LOGLEVEL", "info")
wsgi_app = "api.app:create_app()"

if _settings.tls_cert is not None and _settings.tls_key is not None:
    certfile = str(_settings.tls_cert)
    keyfile = str(_settings.tls_key)
    if _settings.tls_ca is not None:
        ca_certs = str(_settings.tls_ca)
        cert_reqs = ssl.CERT_OPTIONAL
    do_handshake_on_connect = True

_metrics_dir = _settings.state_dir / "prometheus-api"
shutil.rmtree(_metrics_dir, ignore_errors=True)
_metrics_dir.mkdir(parents=True, exist_ok=True)
# Set before any worker imports prometheus_client: its counters then live in shared files.
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_metrics_dir)

_contexts: dict[int, ssl.SSLContext] = {}


def ssl_context(config: Any, default_ssl_context_factory: Any) -> ssl.SSLContext:
    """One TLS context per worker process (gunicorn would build one per connection)."""
    pid = os.getpid()
    if pid not in _contexts:
        context = default_ssl_context_factory()
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        _contexts[pid] = context
    return _contexts[pid]


def child_exit(server: Any, worker: Any) -> None:
    from api.metrics import mark_worker_dead

    mark_worker_dead(worker.pid)


# A thread whose answer from PostgreSQL has come while it holds a hot row lock (an interface's
# address pool, an enrollment token: held until its commit) must get the GIL back soon: at
# CPython's default 5 ms switch interval the worker's busy threads keep it that long, and every
# enrollment of the interface waits behind (bench/api.py: about 1.5 times the enrollments/s).
SWITCH_INTERVAL_S = 0.0005


def post_worker_init(worker: Any) -> None:
    sys.setswitchinterval(SWITCH_INTERVAL_S)

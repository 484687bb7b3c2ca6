"""A gunicorn worker that hands the verified client certificate to the app.

gunicorn verifies client certificates (``ca_certs``, ``cert_reqs``) but does not pass them to
WSGI. This threaded worker reads the peer certificate from the TLS socket of each request and
puts its DER bytes in ``environ["elysium.client_cert_der"]`` (None when there is none). The
key is always overwritten, and request headers become ``HTTP_*`` keys, so a client can never
supply it.
"""

from __future__ import annotations

import ssl
import threading
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

from api.auth import CLIENT_CERT_ENVIRON


class ClientCertWorker(ThreadWorker):
    """gthread worker (keep-alive, threads) that exposes the TLS client certificate."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._current = threading.local()

    def load_wsgi(self) -> None:
        super().load_wsgi()
        app: Any = getattr(self, "wsgi")  # noqa: B009 - gunicorn sets it untyped

        def with_certificate(environ: dict[str, Any], start_response: Any) -> Any:
            environ[CLIENT_CERT_ENVIRON] = getattr(self._current, "der", None)
            return app(environ, start_response)

        self.wsgi = with_certificate

    def handle_request(self, req: Any, conn: Any) -> Any:
        sock = conn.sock
        der = None
        if isinstance(sock, ssl.SSLSocket):
            try:
                der = sock.getpeercert(binary_form=True)
            except (ValueError, ssl.SSLError):
                der = None
        self._current.der = der
        try:
            return super().handle_request(req, conn)
        finally:
            self._current.der = None

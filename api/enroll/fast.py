"""``POST /v1/enroll`` served by the API's gunicorn worker without the app
(api/gunicorn_worker.py) when nothing about it is unusual; anything else, and every error it
can name, goes to the app, which reads the same body again and says what is wrong.

An enrollment that is accepted does the same as through the app: the same schema reads the
body, ``services.enrollment.enroll_peer`` does the work, ``JobAcceptedSchema`` writes the
``202``, counted in the same metrics. What it skips is the app's own cost per request
(Flask's request context and routing, flask-smorest's and webargs' wrappers), about a fifth
of the worker's CPU an enrollment took (``bench/api.py``). An error the app would name (bad
input, a spent token, a key in use, the database unreachable) is never answered here: nothing
was written (``enroll_peer`` commits all or nothing), and the app's answer, with its field
names and codes, is the only one. Only an unexpected failure is answered here, as the app's
last error handler would (a logged ``500 internal``), not tried a second time.
"""

from __future__ import annotations

import io
import json
import time
from typing import Any

import marshmallow as ma
import psycopg

from api.auth import enrollment_actor
from api.enroll.schemas import EnrollSchema
from api.errors import unexpected
from api.jobs.schemas import JobAcceptedSchema
from api.metrics import observe
from api.schemas import json_bytes
from api.state import ApiState
from elysium.errors import ElysiumError
from elysium.queue import JobQueue
from services.enrollment import enroll_peer, enrollment_on_its_way

PATH = "/v1/enroll"
ROUTE = PATH  # its metrics label (api/metrics.py: the route's pattern)
MAX_BODY_BYTES = 16 * 1024  # far above any enrollment (a CSR included); the app says more
JSON_TYPES = {"application/json", "application/json; charset=utf-8"}


class EnrollFastPath:
    """The fast path of one worker process, over the app's :class:`ApiState`."""

    def __init__(self, api: ApiState) -> None:
        self.api = api
        self.schema = EnrollSchema()
        self.accepted = JobAcceptedSchema()
        self._queue: JobQueue | None = None

    def answer(self, environ: dict[str, Any]) -> tuple[str, bytes] | None:
        """The status and JSON body answering a plain enrollment (``202``, or a ``500`` the
        app would answer), or None: the app serves the request (its body put back to be read
        again)."""
        if environ.get("REQUEST_METHOD") != "POST" or environ.get("PATH_INFO") != PATH:
            return None
        if environ.get("QUERY_STRING") or "HTTP_IDEMPOTENCY_KEY" in environ:
            return None
        if environ.get("CONTENT_TYPE", "").lower() not in JSON_TYPES:
            return None
        length = environ.get("CONTENT_LENGTH") or ""
        if not length.isdigit() or not 0 < int(length) <= MAX_BODY_BYTES:
            return None
        with enrollment_on_its_way():  # others about to go together wait for this one
            return self._enroll(environ, int(length))

    def _enroll(self, environ: dict[str, Any], length: int) -> tuple[str, bytes] | None:
        raw = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(raw)  # as it came, for the app if it serves it
        environ["CONTENT_LENGTH"] = str(len(raw))
        started = time.perf_counter()
        try:
            body = self.schema.load(json.loads(raw))
        except (ValueError, ma.ValidationError):
            return None
        if self._queue is None:
            self._queue = self.api.queue  # a property that takes the state's lock: once
        try:
            with self.api.connection() as conn:
                sub = enroll_peer(
                    conn,
                    self._queue,
                    submitter=enrollment_actor(body["token"]),
                    idempotency_key=None,
                    **body,
                )
        except (ElysiumError, psycopg.errors.DataError, psycopg.errors.IntegrityError):
            return None  # nothing was written: the app does it again and answers the error
        except Exception:  # as the app's last error handler (api/errors.py) answers it
            observe("POST", ROUTE, 500, time.perf_counter() - started)
            return "500 INTERNAL SERVER ERROR", json_bytes(unexpected())
        observe("POST", ROUTE, 202, time.perf_counter() - started)
        return "202 ACCEPTED", json_bytes(self.accepted.dump(sub.body))

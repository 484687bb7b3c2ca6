"""One mapping from errors to the JSON error body: ``{"error": {code, message, fields}}``.

ElysiumError keeps its status; HTTP errors (404, 405, 413, webargs' validation 400) get the
same shape; a value PostgreSQL refuses is the caller's mistake (400), never a 500.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import psycopg
from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from elysium.errors import ElysiumError

log = logging.getLogger(__name__)

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "body_too_large",
    415: "unsupported_media_type",
}


def error_body(code: str, message: str, fields: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The JSON error body every error answer has."""
    return {"error": {"code": code, "message": message, "fields": dict(fields or {})}}


def unexpected() -> dict[str, Any]:
    """Log the exception being handled; the body of the ``500`` that answers it."""
    log.exception("unhandled error")
    return error_body("internal", "internal error")


def error_response(
    status: int,
    code: str,
    message: str,
    fields: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[Response, int]:
    resp = jsonify(error_body(code, message, fields))
    for name, value in (headers or {}).items():
        resp.headers[name] = value
    return resp, status


def flatten(messages: Any, prefix: str = "") -> dict[str, str]:
    """webargs' nested messages ({"json": {"subnets": {"0": [...]}}}) as {"subnets.0": "..."}."""
    out: dict[str, str] = {}
    if isinstance(messages, Mapping):
        for key, value in messages.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            out.update(flatten(value, name))
    elif isinstance(messages, list | tuple):
        if all(isinstance(m, str) for m in messages):
            out[prefix or "_schema"] = " ".join(messages)
        else:
            for i, value in enumerate(messages):
                out.update(flatten(value, f"{prefix}.{i}" if prefix else str(i)))
    else:
        out[prefix or "_schema"] = str(messages)
    return out


def handle_elysium_error(exc: ElysiumError) -> tuple[Response, int]:
    if exc.status >= 500:
        log.warning("%s: %s", exc.code, exc.message)
    headers = {"WWW-Authenticate": 'Bearer realm="elysium"'} if exc.status == 401 else None
    return error_response(exc.status, exc.code, exc.message, exc.fields, headers)


DRAIN_BYTES = 1 << 20


def drain_body() -> None:
    """Read what the client is still sending (up to 1 MiB) before a 413: a server that
    answers and closes with the body unread makes the client see a reset, not the answer."""
    stream = request.environ.get("wsgi.input")
    left = request.content_length or 0
    if stream is None or left > DRAIN_BYTES:
        return
    while left > 0:
        chunk = stream.read(min(65536, left))
        if not chunk:
            break
        left -= len(chunk)


def handle_http_exception(exc: HTTPException) -> tuple[Response, int]:
    status = exc.code or 500
    if status == 413:
        drain_body()
    data = getattr(exc, "data", None) or {}
    if "messages" in data:  # webargs: one entry per location (json, query, headers...)
        by_location = data["messages"]
        fields: dict[str, str] = {}
        for location_messages in by_location.values():
            fields.update(flatten(location_messages))
        message = "; ".join(f"{k}: {v}" for k, v in fields.items()) or "invalid request"
        return error_response(status, "invalid", message, fields)
    code = HTTP_CODES.get(status, "http_error")
    allowed = getattr(exc, "valid_methods", None)
    headers = {"Allow": ", ".join(allowed)} if allowed else None
    return error_response(status, code, exc.description or exc.name, None, headers)


def handle_database_value(
    exc: psycopg.errors.DataError | psycopg.errors.IntegrityError,
) -> tuple[Response, int]:
    # Schemas catch these first; this keeps a value they missed a 400 and not a 500.
    log.info("database refused a value: %s", exc)
    return error_response(400, "invalid", "a value is not acceptable to the database")


def handle_unexpected(exc: Exception) -> tuple[Response, int]:
    return jsonify(unexpected()), 500


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(ElysiumError, handle_elysium_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(psycopg.errors.DataError, handle_database_value)
    app.register_error_handler(psycopg.errors.IntegrityError, handle_database_value)
    app.register_error_handler(Exception, handle_unexpected)

"""What every resource's schemas share: strict bodies, the error body, cursors, the blueprint.

Validation errors answer ``400`` (not webargs' default ``422``) with the same JSON error body
as every other caller mistake: ``{"error": {"code": "invalid", "message", "fields"}}``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import marshmallow as ma
from flask import request
from flask_smorest import Blueprint as SmorestBlueprint
from webargs.flaskparser import FlaskParser

from elysium.errors import ValidationError


def json_bytes(body: Any) -> bytes:
    """A body as the app's JSON answers are written (compact, keys sorted, a closing newline),
    for the answers the gunicorn worker writes itself (``api/*/fast.py``)."""
    return (json.dumps(body, separators=(",", ":"), sort_keys=True) + "\n").encode()


VALIDATION_STATUS = 400
MAX_IDEMPOTENCY_KEY = 200
# Printable text without control characters (PostgreSQL text also refuses NUL).
PRINTABLE = re.compile(r"^[^\x00-\x1f\x7f]+$")
HUB_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")

IDEMPOTENCY_PARAM = {
    "in": "header",
    "name": "Idempotency-Key",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY},
    "description": "Repeat a POST with the same key to get the first job back; the same key"
    " with a different request is refused with 422 (idempotency_key_reused).",
}


class StrictSchema(ma.Schema):
    """Request bodies reject fields they do not define."""

    class Meta:
        unknown = ma.RAISE


# A field called "fields" would shadow Schema.fields, hence from_dict.
ErrorDetailSchema = ma.Schema.from_dict(
    {
        "code": ma.fields.String(required=True),
        "message": ma.fields.String(required=True),
        "fields": ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.String()),
    },
    name="ErrorDetail",
)


class ErrorSchema(ma.Schema):
    """The body of every 4xx/5xx answer."""

    error = ma.fields.Nested(ErrorDetailSchema, required=True)


class ElysiumParser(FlaskParser):
    DEFAULT_VALIDATION_STATUS = VALIDATION_STATUS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._instances: dict[type[ma.Schema], ma.Schema] = {}

    def _get_schema(self, argmap: Any, req: Any) -> ma.Schema:
        # webargs makes a schema class into an instance on every request, and marshmallow
        # copies every declared field to do it: once per class is enough (loading keeps no
        # state in the instance).
        if isinstance(argmap, type) and issubclass(argmap, ma.Schema):
            schema = self._instances.get(argmap)
            if schema is None:
                schema = self._instances[argmap] = argmap()
            return schema
        return super()._get_schema(argmap, req)


class Blueprint(SmorestBlueprint):
    """A flask-smorest blueprint whose argument errors are 400s."""

    ARGUMENTS_PARSER = ElysiumParser()


def printable(max_len: int) -> list[Any]:
    return [ma.validate.Length(min=1, max=max_len), ma.validate.Regexp(PRINTABLE)]


def name_field(max_len: int = 64, **kwargs: Any) -> ma.fields.String:
    return ma.fields.String(validate=printable(max_len), **kwargs)


def id_field(**kwargs: Any) -> ma.fields.Integer:
    """A database id (bigint)."""
    return ma.fields.Integer(validate=ma.validate.Range(min=1, max=2**63 - 1), **kwargs)


class PageArgs(ma.Schema):
    """``limit`` and the opaque ``cursor`` a previous page's ``next_cursor`` gave."""

    limit = ma.fields.Integer(load_default=100, validate=ma.validate.Range(min=1, max=1000))
    cursor = ma.fields.String(load_default=None, validate=ma.validate.Regexp(r"^[0-9]{1,18}$"))


def after_id(args: dict[str, Any]) -> int:
    return int(args["cursor"]) if args.get("cursor") else 0


def page(items: Sequence[Mapping[str, Any]], limit: int) -> dict[str, Any]:
    """A page of rows ordered by id; ``next_cursor`` is null on the last page."""
    more = len(items) == limit and items
    return {"items": items, "next_cursor": str(items[-1]["id"]) if more else None}


def idempotency_key() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY or not PRINTABLE.match(key):
        raise ValidationError(
            "Idempotency-Key", f"must be 1-{MAX_IDEMPOTENCY_KEY} printable characters"
        )
    return key

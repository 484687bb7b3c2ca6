"""Audit answers."""

from __future__ import annotations

import marshmallow as ma

from api.schemas import PageArgs


class AuditArgs(PageArgs):
    since = ma.fields.AwareDateTime(
        load_default=None, metadata={"description": "RFC 3339 time, inclusive"}
    )


class AuditRecordSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    at = ma.fields.AwareDateTime(required=True)
    actor = ma.fields.String(required=True)
    action = ma.fields.String(required=True)
    target = ma.fields.String(allow_none=True)
    outcome = ma.fields.String(required=True)
    detail = ma.fields.Dict()


class AuditPageSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(AuditRecordSchema), required=True)
    next_cursor = ma.fields.String(allow_none=True, required=True)

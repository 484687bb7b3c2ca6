"""API token bodies."""

from __future__ import annotations

import marshmallow as ma

from api.schemas import StrictSchema, name_field

MAX_TTL = 10 * 365 * 86400


class TokenCreateSchema(StrictSchema):
    name = name_field(required=True)
    scope = ma.fields.String(
        required=True, validate=ma.validate.OneOf(["admin", "operator", "reader"])
    )
    ttl_seconds = ma.fields.Integer(
        load_default=None, allow_none=True, validate=ma.validate.Range(min=1, max=MAX_TTL)
    )


class TokenCreatedSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    token = ma.fields.String(required=True, metadata={"description": "shown only here"})
    name = ma.fields.String()
    scope = ma.fields.String()
    expires_at = ma.fields.AwareDateTime(allow_none=True)


class TokenSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    name = ma.fields.String()
    scope = ma.fields.String()
    created_at = ma.fields.AwareDateTime()
    expires_at = ma.fields.AwareDateTime(allow_none=True)
    revoked_at = ma.fields.AwareDateTime(allow_none=True)

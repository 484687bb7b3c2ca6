"""Hub bodies."""

from __future__ import annotations

import marshmallow as ma

from api.interfaces.schemas import InterfaceSchema
from api.schemas import HUB_NAME, StrictSchema


class HubCreateSchema(StrictSchema):
    name = ma.fields.String(
        required=True,
        validate=ma.validate.Regexp(
            HUB_NAME, error="must be 1-63 of a-z 0-9 - (not starting or ending with -)"
        ),
    )
    endpoint = ma.fields.String(
        required=True,
        validate=[
            ma.validate.Length(min=1, max=255),
            ma.validate.Regexp(r"^[^\s\x00-\x1f\x7f]+$", error="must be printable, without spaces"),
        ],
        metadata={"description": "host[:port] that peers dial"},
    )


class HubSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    name = ma.fields.String(required=True)
    endpoint = ma.fields.String(required=True)
    created_at = ma.fields.AwareDateTime()
    last_heartbeat_at = ma.fields.AwareDateTime(allow_none=True)
    stale = ma.fields.Boolean()
    worker = ma.fields.Dict(allow_none=True)


class HubDetailSchema(HubSchema):
    interfaces = ma.fields.List(
        ma.fields.Nested(InterfaceSchema), metadata={"description": "the hub's interfaces"}
    )


class HubListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(HubSchema), required=True)

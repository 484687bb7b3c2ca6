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


class HubListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(HubSchema), required=True)


class MeshJoinSchema(StrictSchema):
    listen_port = ma.fields.Integer(
        required=True,
        validate=ma.validate.Range(min=1, max=65535),
        metadata={"description": "UDP port of the hub's mesh device (elymesh)"},
    )
    endpoint = ma.fields.String(
        metadata={
            "description": "host[:port] the other hubs dial (default: the hub's endpoint host"
            " on listen_port)"
        },
    )
    peers = ma.fields.List(
        ma.fields.String(),
        allow_none=True,
        metadata={"description": "link only to these hubs (default: every meshed hub)"},
    )


class MeshErrorSchema(ma.Schema):
    code = ma.fields.String()
    message = ma.fields.String()


class MeshLinkSchema(ma.Schema):
    hub = ma.fields.String(required=True, metadata={"description": "the hub at the far end"})
    endpoint = ma.fields.String(allow_none=True)
    public_key = ma.fields.String(allow_none=True)
    stale = ma.fields.Boolean(metadata={"description": "the far hub's worker is silent"})
    last_handshake_at = ma.fields.AwareDateTime(allow_none=True)
    rx_bytes = ma.fields.Integer()
    tx_bytes = ma.fields.Integer()
    error = ma.fields.Nested(MeshErrorSchema, allow_none=True)


class MeshSchema(ma.Schema):
    hub = ma.fields.String(required=True)
    meshed = ma.fields.Boolean(required=True)
    listen_port = ma.fields.Integer()
    endpoint = ma.fields.String()
    peers = ma.fields.List(ma.fields.String(), allow_none=True)
    public_key = ma.fields.String(allow_none=True, metadata={"description": "made on the hub"})
    joined_at = ma.fields.AwareDateTime(allow_none=True)
    links = ma.fields.List(ma.fields.Nested(MeshLinkSchema))


class MeshJobSchema(ma.Schema):
    job_id = ma.fields.String(required=True)
    hub = ma.fields.String(required=True, metadata={"description": "whose worker runs it"})
    peer_hub = ma.fields.String(required=True, metadata={"description": "the link's far end"})


class MeshAcceptedSchema(MeshSchema):
    jobs = ma.fields.List(
        ma.fields.Nested(MeshJobSchema),
        metadata={"description": "one link job per end of each link that changes"},
    )


class HubDetailSchema(HubSchema):
    interfaces = ma.fields.List(
        ma.fields.Nested(InterfaceSchema), metadata={"description": "the hub's interfaces"}
    )
    mesh = ma.fields.Nested(MeshSchema, metadata={"description": "its mesh links"})

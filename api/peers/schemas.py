"""Peer bodies and answers."""

from __future__ import annotations

from typing import Any

import marshmallow as ma

from api.interfaces.schemas import CidrField
from api.schemas import PageArgs, StrictSchema, id_field, name_field


def key_field(**kwargs: Any) -> ma.fields.String:
    """A WireGuard public key: standard base64 of 32 bytes (checked in full by the service)."""
    return ma.fields.String(
        validate=ma.validate.Length(min=1, max=64),
        metadata={"example": "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="},
        **kwargs,
    )


def subnets_field(**kwargs: Any) -> ma.fields.List:
    return ma.fields.List(CidrField(), validate=ma.validate.Length(max=64), **kwargs)


def tags_field(**kwargs: Any) -> ma.fields.List:
    """Tags for the access policy (checked in full by the service)."""
    return ma.fields.List(
        ma.fields.String(validate=ma.validate.Length(min=1, max=31)),
        validate=ma.validate.Length(max=32),
        metadata={"example": ["ops"]},
        **kwargs,
    )


class PeerCreateSchema(StrictSchema):
    name = name_field(required=True)
    public_key = key_field(required=True)
    subnets = subnets_field(load_default=list)
    tags = tags_field(load_default=list)
    expires_at = ma.fields.AwareDateTime(load_default=None, allow_none=True)


class PeerChangeSchema(StrictSchema):
    enabled = ma.fields.Boolean()
    subnets = subnets_field()
    tags = tags_field()
    expires_at = ma.fields.AwareDateTime(allow_none=True)


class PeerSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    interface_id = ma.fields.Integer()
    name = ma.fields.String()
    public_key = ma.fields.String()
    address = ma.fields.String(allow_none=True)
    address6 = ma.fields.String(allow_none=True)
    subnets = ma.fields.List(ma.fields.String())
    tags = ma.fields.List(ma.fields.String())
    enabled = ma.fields.Boolean()
    status = ma.fields.String()
    online = ma.fields.Boolean()
    last_handshake_at = ma.fields.AwareDateTime(allow_none=True)
    rx_bytes = ma.fields.Integer()
    tx_bytes = ma.fields.Integer()
    expires_at = ma.fields.AwareDateTime(allow_none=True)
    created_at = ma.fields.AwareDateTime()


class PeerPathSchema(ma.Schema):
    peer_id = ma.fields.Integer(required=True)
    path = ma.fields.String(metadata={"description": "direct, trying or relayed"})
    endpoint = ma.fields.String(allow_none=True)
    why = ma.fields.String(allow_none=True, metadata={"description": "why it is relayed"})
    reported_at = ma.fields.AwareDateTime()


class PeerDetailSchema(PeerSchema):
    paths = ma.fields.List(
        ma.fields.Nested(PeerPathSchema),
        metadata={"description": "on a direct interface, its paths as its client reported them"},
    )


class PeerListArgs(PageArgs):
    interface_id = id_field(load_default=None)
    online = ma.fields.Boolean(load_default=None)


class PeerPageSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(PeerSchema), required=True)
    next_cursor = ma.fields.String(allow_none=True, required=True)

"""Single sign-on bodies."""

from __future__ import annotations

import marshmallow as ma

from api.schemas import StrictSchema


class SsoConfigSchema(ma.Schema):
    issuer = ma.fields.String(required=True)
    client_id = ma.fields.String(
        required=True, metadata={"description": "the device-flow client of `elysium login --sso`"}
    )
    scopes = ma.fields.String(required=True)


class SsoTokenRequestSchema(StrictSchema):
    id_token = ma.fields.String(
        required=True,
        validate=ma.validate.Length(min=1, max=16384),
        metadata={"description": "an ID token the provider issued to Elysium's CLI client"},
    )


class SsoTokenSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    token = ma.fields.String(required=True, metadata={"description": "shown only here"})
    name = ma.fields.String()
    scope = ma.fields.String()
    expires_at = ma.fields.AwareDateTime(allow_none=True)


class SsoEnrollmentTokenSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    token = ma.fields.String(required=True, metadata={"description": "one use, shown only here"})
    interface_id = ma.fields.Integer(required=True)
    tags = ma.fields.List(ma.fields.String())
    expires_at = ma.fields.AwareDateTime()

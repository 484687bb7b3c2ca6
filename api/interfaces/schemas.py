"""Interface and enrollment-token bodies."""

from __future__ import annotations

import ipaddress

import marshmallow as ma

from api.schemas import StrictSchema, name_field

MAX_TTL = 10 * 365 * 86400


def _ip(value: str) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ma.ValidationError("must be an IP address") from None


class CidrField(ma.fields.String):
    """A network in CIDR notation (checked in full by the service)."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(validate=ma.validate.Length(min=1, max=64), **kwargs)  # type: ignore[arg-type]


class InterfaceCreateSchema(StrictSchema):
    name = ma.fields.String(
        required=True,
        validate=ma.validate.Regexp(
            r"^[A-Za-z0-9_=+.-]{1,15}$", error="must be 1-15 of A-Z a-z 0-9 _ = + . -"
        ),
    )
    network = CidrField(required=True, metadata={"example": "10.8.0.0/24"})
    network6 = CidrField(load_default=None, allow_none=True)
    listen_port = ma.fields.Integer(required=True, validate=ma.validate.Range(min=1, max=65535))
    mtu = ma.fields.Integer(
        load_default=None, allow_none=True, validate=ma.validate.Range(min=1280, max=9000)
    )
    dns = ma.fields.List(
        ma.fields.String(validate=[ma.validate.Length(max=45), _ip]),
        load_default=list,
        validate=ma.validate.Length(max=8),
    )
    keepalive = ma.fields.Integer(
        load_default=25, allow_none=True, validate=ma.validate.Range(min=0, max=65535)
    )


class InterfaceChangeSchema(StrictSchema):
    routes = ma.fields.List(
        CidrField(),
        validate=ma.validate.Length(max=64),
        metadata={"description": "networks behind the hub that its peers may reach"},
    )
    exit = ma.fields.Boolean(
        metadata={"description": "the hub is its peers' default route (0.0.0.0/0, ::/0)"}
    )
    direct = ma.fields.Boolean(
        metadata={
            "description": "peers that the policy lets talk connect directly where the network"
            " allows, the hub relaying the rest (default false: everything through the hub)"
        }
    )
    nat = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.String(),
        allow_none=True,
        metadata={
            "description": 'masquerade what leaves the hub through a device: {"egress": "eth0"};'
            " null: no NAT (say it explicitly to route an exit without NAT)",
            "example": {"egress": "eth0"},
        },
    )


class InterfaceSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    hub_id = ma.fields.Integer()
    hub = ma.fields.String()
    name = ma.fields.String(required=True)
    network = ma.fields.String()
    network6 = ma.fields.String(allow_none=True)
    listen_port = ma.fields.Integer()
    mtu = ma.fields.Integer(allow_none=True)
    dns = ma.fields.List(ma.fields.String())
    keepalive = ma.fields.Integer(allow_none=True)
    public_key = ma.fields.String(allow_none=True)
    status = ma.fields.String()
    routes = ma.fields.List(ma.fields.String())
    exit = ma.fields.Boolean()
    nat = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.String(), allow_none=True)
    direct = ma.fields.Boolean()
    created_at = ma.fields.AwareDateTime()
    updated_at = ma.fields.AwareDateTime()


class EnrollmentTokenCreateSchema(StrictSchema):
    name = name_field(load_default=None, allow_none=True)
    ttl_seconds = ma.fields.Integer(required=True, validate=ma.validate.Range(min=1, max=MAX_TTL))
    uses = ma.fields.Integer(load_default=1, validate=ma.validate.Range(min=1, max=100_000))
    subnets = ma.fields.List(CidrField(), load_default=list, validate=ma.validate.Length(max=64))
    tags = ma.fields.List(
        ma.fields.String(validate=ma.validate.Length(min=1, max=31)),
        load_default=list,
        validate=ma.validate.Length(max=32),
        metadata={"description": "given to every peer that enrolls with the token"},
    )


class EnrollmentTokenCreatedSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    token = ma.fields.String(required=True, metadata={"description": "shown only here"})
    interface_id = ma.fields.Integer()
    uses = ma.fields.Integer(attribute="uses_total")
    subnets = ma.fields.List(ma.fields.String())
    tags = ma.fields.List(ma.fields.String())
    expires_at = ma.fields.AwareDateTime(required=True)


class EnrollmentTokenSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    interface_id = ma.fields.Integer()
    name = ma.fields.String(allow_none=True)
    uses_total = ma.fields.Integer()
    uses_left = ma.fields.Integer()
    subnets = ma.fields.List(ma.fields.String())
    tags = ma.fields.List(ma.fields.String())
    created_by = ma.fields.String(allow_none=True)
    created_at = ma.fields.AwareDateTime()
    expires_at = ma.fields.AwareDateTime()
    revoked_at = ma.fields.AwareDateTime(allow_none=True)
    expired = ma.fields.Boolean()
    state = ma.fields.String(
        metadata={"description": "active, revoked, expired or used_up"},
    )


class EnrollmentTokenPageSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(EnrollmentTokenSchema), required=True)
    next_cursor = ma.fields.String(allow_none=True, required=True)

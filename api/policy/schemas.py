"""An interface's access policy, and the question "would the hub forward this?"."""

from __future__ import annotations

import marshmallow as ma

from api.schemas import StrictSchema

SELECTOR = (
    "tag:NAME, peer:ID, hub, routes (the interface's routes), or an address/CIDR"
    " (0.0.0.0/0 and ::/0 for anywhere)"
)


class RuleSchema(StrictSchema):
    src = ma.fields.String(
        data_key="from", attribute="from", required=True, metadata={"description": SELECTOR}
    )
    dst = ma.fields.String(
        data_key="to", attribute="to", required=True, metadata={"description": SELECTOR}
    )
    proto = ma.fields.String(
        load_default=None,
        allow_none=True,
        metadata={"description": "tcp, udp, icmp, or null for any"},
    )
    ports = ma.fields.List(
        ma.fields.Raw(metadata={"description": 'a port (22) or a range ("8000-8100")'}),
        load_default=list,
        metadata={"description": "with tcp or udp only"},
    )
    action = ma.fields.String(required=True, metadata={"description": "accept or drop"})


class PolicySchema(StrictSchema):
    default = ma.fields.String(
        load_default="drop",
        metadata={"description": "what happens to forwarded traffic no rule matches"},
    )
    rules = ma.fields.List(ma.fields.Nested(RuleSchema), load_default=list)


class PolicyCheckArgs(ma.Schema):
    src = ma.fields.String(
        data_key="from",
        attribute="from",
        required=True,
        metadata={"description": "an address, hub or peer:ID"},
    )
    dst = ma.fields.String(
        data_key="to",
        attribute="to",
        required=True,
        metadata={"description": "an address, hub or peer:ID"},
    )
    proto = ma.fields.String(load_default=None)
    port = ma.fields.Integer(load_default=None, validate=ma.validate.Range(min=1, max=65535))


class PolicyDecisionSchema(ma.Schema):
    action = ma.fields.String(required=True, metadata={"description": "allow or deny"})
    rule = ma.fields.Integer(
        allow_none=True, metadata={"description": "the deciding rule's index; null: the default"}
    )
    matched = ma.fields.Nested(RuleSchema, allow_none=True)
    default = ma.fields.Boolean()
    src = ma.fields.String(data_key="from", attribute="from")
    dst = ma.fields.String(data_key="to", attribute="to")

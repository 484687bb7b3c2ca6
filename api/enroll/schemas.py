"""The enrollment body."""

from __future__ import annotations

import marshmallow as ma

from api.peers.schemas import key_field, subnets_field
from api.schemas import StrictSchema, name_field
from elysium.pki import MAX_CSR_BYTES


class EnrollSchema(StrictSchema):
    token = ma.fields.String(
        required=True,
        validate=ma.validate.Length(min=1, max=128),
        metadata={"description": "the enrollment token"},
    )
    name = name_field(required=True)
    public_key = key_field(required=True)
    csr = ma.fields.String(
        load_default=None,
        allow_none=True,
        validate=ma.validate.Length(min=1, max=MAX_CSR_BYTES),
        metadata={"description": "PEM CSR; the certificate comes back in the job result"},
    )
    subnets = subnets_field(load_default=list)

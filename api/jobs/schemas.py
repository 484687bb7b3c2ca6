"""Job answers: the 202 of every mutation and the job itself."""

from __future__ import annotations

import marshmallow as ma


class JobAcceptedSchema(ma.Schema):
    """``202``: the job to follow with ``GET /v1/jobs/{id}?wait=N``."""

    job_id = ma.fields.String(required=True)
    status = ma.fields.String(required=True)
    interface_id = ma.fields.Integer()
    peer_id = ma.fields.Integer()


class JobSchema(ma.Schema):
    id = ma.fields.String(required=True)
    kind = ma.fields.String(required=True)
    status = ma.fields.String(required=True)
    created_at = ma.fields.AwareDateTime(required=True)
    started_at = ma.fields.AwareDateTime(allow_none=True)
    finished_at = ma.fields.AwareDateTime(allow_none=True)
    result = ma.fields.Dict(allow_none=True)
    error = ma.fields.Dict(allow_none=True, metadata={"description": "{code, message}"})
    interface_id = ma.fields.Integer(allow_none=True)
    peer_id = ma.fields.Integer(allow_none=True)


class JobWaitArgs(ma.Schema):
    wait = ma.fields.Float(
        load_default=0,
        validate=ma.validate.Range(min=0, max=3600),
        metadata={"description": "seconds to wait for the end (capped)"},
    )

"""What a peer reads and sends about itself."""

from __future__ import annotations

import marshmallow as ma

from api.peers.schemas import key_field
from api.schemas import StrictSchema


class PeerConfigSchema(ma.Schema):
    peer_id = ma.fields.Integer(required=True)
    interface_id = ma.fields.Integer()
    public_key = ma.fields.String()
    address = ma.fields.String(allow_none=True)
    address6 = ma.fields.String(allow_none=True)
    addresses = ma.fields.List(ma.fields.String())
    allowed_ips = ma.fields.List(ma.fields.String())
    hub_public_key = ma.fields.String(allow_none=True)
    hub_addresses = ma.fields.List(ma.fields.String())
    endpoint = ma.fields.String()
    keepalive = ma.fields.Integer(allow_none=True)
    dns = ma.fields.List(ma.fields.String())
    mtu = ma.fields.Integer(allow_none=True)
    routes = ma.fields.List(ma.fields.String(), metadata={"description": "networks behind the hub"})
    mesh_routes = ma.fields.List(
        ma.fields.String(),
        metadata={
            "description": "networks behind hubs linked to this peer's hub that its"
            " interface's policy may let it reach (in allowed_ips too)"
        },
    )
    exit = ma.fields.Boolean(metadata={"description": "the hub is this peer's default route"})
    tags = ma.fields.List(ma.fields.String())
    direct = ma.fields.Boolean(
        metadata={"description": "the interface has direct paths on (absent: off)"}
    )
    direct_peers = ma.fields.List(
        ma.fields.Nested(lambda: DirectPeerSchema()),
        metadata={
            "description": "on a direct interface, the peers this one may exchange traffic"
            " with under the policy (either direction), to try directly"
        },
    )
    inbound = ma.fields.Dict(
        allow_none=True,
        metadata={
            "description": "on a direct interface, the policy's rules whose destination is"
            " this peer ({default, hub, sets: {name: [address or CIDR]}, rules: [{index,"
            " from_hub, family, src (a set's name, or null: any), proto, ports, action}]}):"
            " the peer enforces them itself, as a direct path passes no hub"
        },
    )
    version = ma.fields.String(
        metadata={"description": "moves whenever anything in this config moves"}
    )


# Also what the worker's fast path accepts without the app (api/peer_self/fast.py).
VERSION_MAX_LEN = 64
WAIT_MAX_S = 3600


class PeerConfigArgs(ma.Schema):
    version = ma.fields.String(
        load_default=None,
        validate=ma.validate.Length(max=VERSION_MAX_LEN),
        metadata={"description": "the version the peer has; with wait, answer when it moves"},
    )
    wait = ma.fields.Float(
        load_default=0,
        validate=ma.validate.Range(min=0, max=WAIT_MAX_S),
        metadata={"description": "seconds to wait for a version other than `version` (capped)"},
    )
    delta = ma.fields.Boolean(
        load_default=False,
        metadata={
            "description": "with version and wait: a config that moves while waiting comes as"
            " {version, base, keys, set, unset, direct_peers: {upsert, remove, present},"
            " inbound_sets: {name: {add, remove}}} from the config of version `version`"
            " (a follower too far behind gets the whole config)"
        },
    )


class PeerCertificateSchema(StrictSchema):
    csr = ma.fields.String(
        required=True,
        validate=ma.validate.Length(min=1, max=16384),
        metadata={"description": "a PEM CSR signed by the new TLS key (made on the peer)"},
    )


class PeerKeySchema(StrictSchema):
    public_key = key_field(required=True)


class DirectPeerSchema(ma.Schema):
    peer_id = ma.fields.Integer(required=True)
    public_key = ma.fields.String(required=True)
    addresses = ma.fields.List(ma.fields.String(), metadata={"example": ["10.8.0.3/32"]})
    endpoints = ma.fields.List(
        ma.fields.String(),
        metadata={"description": "candidates in order: where the hub saw it, then its own"},
    )
    keepalive = ma.fields.Integer()


class PeerCandidatesSchema(StrictSchema):
    addresses = ma.fields.Raw(
        required=True,
        metadata={
            "description": "this peer's own addresses (at most 8; no loopback, link-local,"
            " multicast, unspecified, tunnel address)",
            "example": ["192.168.1.20"],
        },
    )
    listen_port = ma.fields.Raw(
        required=True, metadata={"description": "its WireGuard listen port", "example": 40312}
    )


class PeerCandidatesStoredSchema(ma.Schema):
    peer_id = ma.fields.Integer(required=True)
    addresses = ma.fields.List(ma.fields.String())
    listen_port = ma.fields.Integer()
    reported_at = ma.fields.AwareDateTime()


class PeerPathsSchema(StrictSchema):
    paths = ma.fields.Raw(
        required=True,
        metadata={
            "description": "[{peer_id, path: direct|trying|relayed, endpoint?, why?}] for the"
            " peers this peer's config lists",
            "example": [{"peer_id": 3, "path": "direct", "endpoint": "198.51.100.7:40312"}],
        },
    )


class PeerPathSchema(ma.Schema):
    peer_id = ma.fields.Integer(required=True)
    path = ma.fields.String(metadata={"description": "direct, trying or relayed"})
    endpoint = ma.fields.String(allow_none=True)
    why = ma.fields.String(allow_none=True, metadata={"description": "why it is relayed"})
    reported_at = ma.fields.AwareDateTime()


class PeerPathsStoredSchema(ma.Schema):
    paths = ma.fields.List(ma.fields.Nested(PeerPathSchema))

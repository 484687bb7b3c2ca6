-- Elysium schema v1: desired state, jobs, tokens, liveness and audit.

CREATE TABLE hubs (
    id                bigserial PRIMARY KEY,
    name              text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
    endpoint          text NOT NULL CHECK (length(endpoint) BETWEEN 1 AND 255),
    created_at        timestamptz NOT NULL DEFAULT now(),
    last_heartbeat_at timestamptz,
    worker            jsonb,
    stale             boolean NOT NULL DEFAULT true
);

CREATE TABLE interfaces (
    id          bigserial PRIMARY KEY,
    hub_id      bigint NOT NULL REFERENCES hubs (id) ON DELETE RESTRICT,
    name        text NOT NULL CHECK (name ~ '^[A-Za-z0-9_=+.-]{1,15}$'),
    network     cidr NOT NULL CHECK (family(network) = 4),
    network6    cidr CHECK (family(network6) = 6),
    listen_port integer NOT NULL CHECK (listen_port BETWEEN 1 AND 65535),
    mtu         integer CHECK (mtu BETWEEN 1280 AND 9000),
    dns         text[] NOT NULL DEFAULT '{}',
    keepalive   integer CHECK (keepalive BETWEEN 0 AND 65535),
    public_key  text CHECK (length(public_key) = 44),
    status      text NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'ready', 'failed', 'deleting')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (hub_id, name),
    UNIQUE (hub_id, listen_port)
);

-- Address allocation without scanning peers: the next never-used offset per family,
-- plus the set of released addresses; the lowest free address is the least of the two.
CREATE TABLE address_pools (
    interface_id bigint NOT NULL REFERENCES interfaces (id) ON DELETE CASCADE,
    family       smallint NOT NULL CHECK (family IN (4, 6)),
    next_offset  bigint NOT NULL DEFAULT 2 CHECK (next_offset >= 2),
    PRIMARY KEY (interface_id, family)
);

CREATE TABLE released_addresses (
    interface_id bigint NOT NULL REFERENCES interfaces (id) ON DELETE CASCADE,
    family       smallint NOT NULL CHECK (family IN (4, 6)),
    address      inet NOT NULL,
    PRIMARY KEY (interface_id, family, address)
);

CREATE TABLE peers (
    id                bigserial PRIMARY KEY,
    interface_id      bigint NOT NULL REFERENCES interfaces (id) ON DELETE CASCADE,
    name              text NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
    public_key        text NOT NULL CHECK (length(public_key) = 44),
    address           inet,
    address6          inet,
    subnets           cidr[] NOT NULL DEFAULT '{}',
    enabled           boolean NOT NULL DEFAULT true,
    status            text NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'active', 'disabled', 'removing', 'removed',
                                        'expired', 'failed')),
    expires_at        timestamptz,
    online            boolean NOT NULL DEFAULT false,
    endpoint          text,
    last_handshake_at timestamptz,
    rx_bytes          bigint NOT NULL DEFAULT 0,
    tx_bytes          bigint NOT NULL DEFAULT 0,
    enrollment_token_id bigint,
    certificate_serial text,
    created_by        text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CHECK (status IN ('removed', 'expired', 'failed') OR address IS NOT NULL)
);
-- Live peers (not removed or expired) never share an address or a key on one interface.
CREATE UNIQUE INDEX peers_live_address ON peers (interface_id, address)
    WHERE status NOT IN ('removed', 'expired', 'failed');
CREATE UNIQUE INDEX peers_live_address6 ON peers (interface_id, address6)
    WHERE status NOT IN ('removed', 'expired', 'failed') AND address6 IS NOT NULL;
CREATE UNIQUE INDEX peers_live_key ON peers (interface_id, public_key)
    WHERE status NOT IN ('removed', 'expired', 'failed');
CREATE INDEX peers_expiry ON peers (expires_at) WHERE expires_at IS NOT NULL
    AND status NOT IN ('removed', 'expired', 'failed');
CREATE INDEX peers_interface_id ON peers (interface_id, id);

CREATE TABLE api_tokens (
    id           bigserial PRIMARY KEY,
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
    scope        text NOT NULL CHECK (scope IN ('admin', 'operator', 'reader')),
    token_hash   bytea NOT NULL UNIQUE,
    created_by   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    revoked_at   timestamptz,
    last_used_at timestamptz
);

CREATE TABLE enrollment_tokens (
    id           bigserial PRIMARY KEY,
    interface_id bigint NOT NULL REFERENCES interfaces (id) ON DELETE CASCADE,
    name         text,
    token_hash   bytea NOT NULL UNIQUE,
    uses_total   integer NOT NULL CHECK (uses_total >= 1),
    uses_left    integer NOT NULL CHECK (uses_left >= 0),
    subnets      cidr[] NOT NULL DEFAULT '{}',
    created_by   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz,
    expired      boolean NOT NULL DEFAULT false
);

CREATE TABLE jobs (
    id              uuid PRIMARY KEY,
    kind            text NOT NULL,
    status          text NOT NULL DEFAULT 'queued'
                    CHECK (status IN ('queued', 'running', 'retrying', 'succeeded', 'failed')),
    queue           text NOT NULL,
    payload         jsonb NOT NULL DEFAULT '{}',
    result          jsonb,
    error_code      text,
    error_message   text,
    attempts        integer NOT NULL DEFAULT 0,
    idempotency_key text,
    submitter       text NOT NULL,
    hub_id          bigint,
    interface_id    bigint,
    peer_id         bigint,
    created_at      timestamptz NOT NULL DEFAULT now(),
    enqueued_at     timestamptz,
    started_at      timestamptz,
    finished_at     timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (submitter, idempotency_key)
);
CREATE INDEX jobs_open ON jobs (status, created_at) WHERE status IN ('queued', 'running', 'retrying');

CREATE TABLE audit (
    id      bigserial PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    actor   text NOT NULL,
    action  text NOT NULL,
    target  text,
    outcome text NOT NULL,
    detail  jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_at ON audit (at, id);

-- Leader election for beat: one holder, a lease that a second beat takes over when it lapses.
CREATE TABLE leases (
    name       text PRIMARY KEY,
    holder     text NOT NULL,
    expires_at timestamptz NOT NULL
);

-- Many hubs, one network: a hub that joins the mesh gets a WireGuard link to every other
-- meshed hub (or to those named in mesh_peers), programmed by each hub's own worker.
-- A hub is meshed when mesh_port is set. Its mesh key is made on the hub (never here); the
-- worker reports the public half.
ALTER TABLE hubs
    ADD COLUMN mesh_port integer CHECK (mesh_port BETWEEN 1 AND 65535),
    ADD COLUMN mesh_endpoint text CHECK (length(mesh_endpoint) BETWEEN 1 AND 255),
    ADD COLUMN mesh_peers text[],  -- NULL: every meshed hub
    ADD COLUMN mesh_public_key text,
    ADD COLUMN mesh_joined_at timestamptz,
    ADD CONSTRAINT hubs_mesh_whole CHECK ((mesh_port IS NULL) = (mesh_endpoint IS NULL));

-- What each end of a link last saw of the other: written by the hub's liveness task, and by
-- a link job that could not program the link (error).
CREATE TABLE mesh_links (
    hub_id            bigint NOT NULL REFERENCES hubs (id) ON DELETE CASCADE,
    peer_hub_id       bigint NOT NULL REFERENCES hubs (id) ON DELETE CASCADE,
    endpoint          text,
    last_handshake_at timestamptz,
    rx_bytes          bigint NOT NULL DEFAULT 0,
    tx_bytes          bigint NOT NULL DEFAULT 0,
    error_code        text,
    error_message     text,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (hub_id, peer_hub_id),
    CHECK (hub_id <> peer_hub_id)
);

-- Direct peer-to-peer paths. An interface opts in (direct); its peers then learn each other's
-- keys and candidates (where the hub saw them, and what each client reports of itself) when
-- its policy lets them exchange traffic. The hub still relays whatever cannot go direct.
ALTER TABLE interfaces ADD COLUMN direct boolean NOT NULL DEFAULT false;

-- What a peer's client reports of itself (PUT /v1/peer/candidates): its local addresses and
-- its WireGuard listen port, with the time it said so.
CREATE TABLE peer_candidates (
    peer_id     bigint PRIMARY KEY REFERENCES peers (id) ON DELETE CASCADE,
    addresses   inet[] NOT NULL,
    listen_port integer NOT NULL CHECK (listen_port BETWEEN 1 AND 65535),
    reported_at timestamptz NOT NULL DEFAULT now()
);

-- On a direct interface a peer's key, addresses, state, tags and the endpoint its hub sees are
-- in the other peers' configs: such a change moves every config of the interface.
CREATE FUNCTION notify_peer_config_direct() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    iface bigint;
BEGIN
    IF TG_TABLE_NAME = 'peer_candidates' THEN
        SELECT p.interface_id INTO iface FROM peers p
            WHERE p.id = coalesce(NEW.peer_id, OLD.peer_id);
    ELSE
        iface := coalesce(NEW.interface_id, OLD.interface_id);
    END IF;
    PERFORM pg_notify('peer_config', 'i' || iface::text)
        FROM interfaces i WHERE i.id = iface AND i.direct;
    RETURN NULL;
END;
$$;

CREATE TRIGGER peers_notify_direct_rows
    AFTER INSERT OR DELETE ON peers
    FOR EACH ROW EXECUTE FUNCTION notify_peer_config_direct();

CREATE TRIGGER peers_notify_direct_update
    AFTER UPDATE OF public_key, address, address6, enabled, status, tags, endpoint ON peers
    FOR EACH ROW
    WHEN ((OLD.public_key, OLD.address, OLD.address6, OLD.enabled, OLD.status, OLD.tags,
           OLD.endpoint)
          IS DISTINCT FROM (NEW.public_key, NEW.address, NEW.address6, NEW.enabled, NEW.status,
                            NEW.tags, NEW.endpoint))
    EXECUTE FUNCTION notify_peer_config_direct();

CREATE TRIGGER peer_candidates_notify_direct
    AFTER INSERT OR UPDATE OR DELETE ON peer_candidates
    FOR EACH ROW EXECUTE FUNCTION notify_peer_config_direct();

-- What a peer's client last reported of its paths to the peers its config lists: direct,
-- trying or relayed (through the hub), the endpoint in use, and why a pair is relayed.
CREATE TABLE peer_paths (
    peer_id     bigint NOT NULL REFERENCES peers (id) ON DELETE CASCADE,
    other_id    bigint NOT NULL REFERENCES peers (id) ON DELETE CASCADE,
    path        text NOT NULL CHECK (path IN ('direct', 'trying', 'relayed')),
    endpoint    text,
    why         text,
    reported_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (peer_id, other_id)
);
CREATE INDEX peer_paths_other ON peer_paths (other_id);

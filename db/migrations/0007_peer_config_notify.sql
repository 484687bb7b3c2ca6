-- A peer's config has a version; GET /v1/peer/config?version=V&wait=N waits for these
-- notifications on channel 'peer_config' instead of polling. Payloads:
--   'i<interface id>': the config of every peer of that interface may have moved;
--   'p<peer id>':      that one peer's own row moved.
-- Liveness writes (handshakes, counters) and heartbeats never notify.

CREATE FUNCTION notify_peer_config_interface() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Every column but bookkeeping: a column added later (routes, exit...) is covered too.
    IF to_jsonb(OLD) - 'updated_at' - 'status' IS DISTINCT FROM
       to_jsonb(NEW) - 'updated_at' - 'status' THEN
        PERFORM pg_notify('peer_config', 'i' || NEW.id::text);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER interfaces_notify_peer_config
    AFTER UPDATE ON interfaces
    FOR EACH ROW EXECUTE FUNCTION notify_peer_config_interface();

CREATE FUNCTION notify_peer_config_hub() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('peer_config', 'i' || i.id::text) FROM interfaces i WHERE i.hub_id = NEW.id;
    RETURN NULL;
END;
$$;

CREATE TRIGGER hubs_notify_peer_config
    AFTER UPDATE OF endpoint ON hubs
    FOR EACH ROW WHEN (OLD.endpoint IS DISTINCT FROM NEW.endpoint)
    EXECUTE FUNCTION notify_peer_config_hub();

-- A peer's routed subnets are in its interface's other peers' allowed IPs; the rest of its
-- row (key, addresses, state) is in its own config only.
CREATE FUNCTION notify_peer_config_peer() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    routes boolean := false;
BEGIN
    IF TG_OP = 'INSERT' THEN
        routes := NEW.subnets <> '{}';
    ELSIF TG_OP = 'DELETE' THEN
        routes := OLD.subnets <> '{}';
    ELSE
        routes := (OLD.subnets <> '{}' OR NEW.subnets <> '{}')
            AND (OLD.subnets, OLD.enabled, OLD.status, OLD.interface_id)
                IS DISTINCT FROM (NEW.subnets, NEW.enabled, NEW.status, NEW.interface_id);
        PERFORM pg_notify('peer_config', 'p' || NEW.id::text);
    END IF;
    IF routes THEN
        PERFORM pg_notify('peer_config', 'i' || coalesce(NEW.interface_id, OLD.interface_id)::text);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER peers_notify_peer_config_rows
    AFTER INSERT OR DELETE ON peers
    FOR EACH ROW EXECUTE FUNCTION notify_peer_config_peer();

CREATE TRIGGER peers_notify_peer_config_update
    AFTER UPDATE OF public_key, address, address6, subnets, enabled, status, interface_id ON peers
    FOR EACH ROW
    WHEN ((OLD.public_key, OLD.address, OLD.address6, OLD.subnets, OLD.enabled, OLD.status,
           OLD.interface_id)
          IS DISTINCT FROM (NEW.public_key, NEW.address, NEW.address6, NEW.subnets, NEW.enabled,
                            NEW.status, NEW.interface_id))
    EXECUTE FUNCTION notify_peer_config_peer();

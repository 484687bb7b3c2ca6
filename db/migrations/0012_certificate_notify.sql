-- A peer's certificate serial moving (a renewal) names the peer too ('p<peer id>'): an API
-- process that keeps who a follower's connection was authenticated as (api/gunicorn_worker.py
-- parks a follower's next wait before the app) must learn that the certificate it checked is
-- no longer the peer's, as it learns of a peer that is no longer live.
DROP TRIGGER peers_notify_peer_config_update ON peers;

CREATE TRIGGER peers_notify_peer_config_update
    AFTER UPDATE OF public_key, address, address6, subnets, enabled, status, interface_id,
        certificate_serial ON peers
    FOR EACH ROW
    WHEN ((OLD.public_key, OLD.address, OLD.address6, OLD.subnets, OLD.enabled, OLD.status,
           OLD.interface_id, OLD.certificate_serial)
          IS DISTINCT FROM (NEW.public_key, NEW.address, NEW.address6, NEW.subnets, NEW.enabled,
                            NEW.status, NEW.interface_id, NEW.certificate_serial))
    EXECUTE FUNCTION notify_peer_config_peer();

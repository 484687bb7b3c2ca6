-- No code ever set a peer 'disabled' (a disabled peer is enabled = false); the named states
-- in elysium/states.py are the whole list.
ALTER TABLE peers DROP CONSTRAINT peers_status_check;
ALTER TABLE peers ADD CONSTRAINT peers_status_check
    CHECK (status IN ('pending', 'active', 'removing', 'removed', 'expired', 'failed'));

-- A hash of the request that made a job with an Idempotency-Key: the same key sent again
-- with another body is refused (422) instead of answered with the first job.
ALTER TABLE jobs ADD COLUMN request_hash text;

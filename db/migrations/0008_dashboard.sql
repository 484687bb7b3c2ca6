-- The dashboard (api/ui): its queries' indexes, its session signing key, and sign-out.
CREATE INDEX enrollment_tokens_interface ON enrollment_tokens (interface_id, id);
-- Peer search by name prefix within an interface, paged by id.
CREATE INDEX peers_interface_name ON peers (interface_id, lower(name) text_pattern_ops, id);
-- A target's own audit (a peer's page), newest first.
CREATE INDEX audit_target ON audit (target, id);
-- The newest jobs (the jobs page) and the failures of the last hour (the overview).
CREATE INDEX jobs_created ON jobs (created_at, id);
CREATE INDEX jobs_failed ON jobs (finished_at) WHERE status = 'failed';

-- One random key signs every dashboard session cookie, shared by all API processes.
CREATE TABLE dashboard_key (
    id  integer PRIMARY KEY CHECK (id = 1),
    key bytea NOT NULL
);
-- Signing out ends every dashboard session of the token issued before this time.
ALTER TABLE api_tokens ADD COLUMN signed_out_at timestamptz;

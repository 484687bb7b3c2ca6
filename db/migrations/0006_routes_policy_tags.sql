-- The network layer: what a hub pushes to its peers and the policy it enforces.
-- routes: networks behind the hub that peers may reach; exit: the hub is the peers' default
-- route; nat: SQL NULL = never said, JSON null = no masquerade, {"egress": DEV} = masquerade
-- what leaves through DEV; policy: {"default": "accept"|"drop", "rules": [...]}.
ALTER TABLE interfaces
    ADD COLUMN routes cidr[] NOT NULL DEFAULT '{}',
    ADD COLUMN exit boolean NOT NULL DEFAULT false,
    ADD COLUMN nat jsonb,
    ADD COLUMN policy jsonb NOT NULL DEFAULT '{"default": "drop", "rules": []}';

-- Tags name groups of peers for the policy; an enrollment token gives its peers its tags.
ALTER TABLE peers ADD COLUMN tags text[] NOT NULL DEFAULT '{}';
ALTER TABLE enrollment_tokens ADD COLUMN tags text[] NOT NULL DEFAULT '{}';
CREATE INDEX peers_tags ON peers USING gin (tags);

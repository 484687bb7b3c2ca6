-- The dashboard: an interface's enrollment tokens, and peer search by name prefix.
CREATE INDEX enrollment_tokens_interface ON enrollment_tokens (interface_id, id);
CREATE INDEX peers_interface_name ON peers (interface_id, lower(name) text_pattern_ops, id);

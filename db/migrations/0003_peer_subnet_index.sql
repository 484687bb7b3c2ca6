-- Peers that route subnets, per interface: a peer's config lists the other peers' subnets
-- without reading every peer of a 10,000-peer interface.
CREATE INDEX peers_routing ON peers (interface_id) WHERE subnets <> '{}'
    AND status NOT IN ('removed', 'expired', 'failed');

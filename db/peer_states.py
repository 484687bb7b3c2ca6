"""Groups of peer states as SQL fragments on the alias ``p`` (shared by every peer query)."""

from __future__ import annotations

from elysium.states import ENDED_PEER, LIVE_PEER, PeerStatus, sql_list


def sql_in(states: frozenset[PeerStatus]) -> str:
    """A group of peer states as an SQL list literal (fixed names, never user input)."""
    return "(" + ", ".join(f"'{s}'" for s in sql_list(states)) + ")"


# Not ended: still holds its key, name and addresses (live, or on its way off its hub).
ENDED = f"p.status IN {sql_in(ENDED_PEER)}"
# Spelt as the partial indexes' predicate (db/migrations/0001), so the planner can use them.
NOT_ENDED = f"p.status NOT IN {sql_in(ENDED_PEER)}"
LIVE = f"p.status IN {sql_in(LIVE_PEER)}"

"""Running a program inside a named network namespace (``/run/netns/NAME``)."""

from __future__ import annotations


def netns_exec(netns: str | None) -> list[str]:
    """The command prefix that runs what follows in ``netns``; none for the caller's own."""
    return ["ip", "netns", "exec", netns] if netns else []

"""Peer tags: the names an access policy uses for groups of peers (``tag:ops``)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from elysium.errors import ValidationError

TAG_PATTERN = r"^[a-z][a-z0-9_]{0,30}$"  # also part of nftables set names on the hubs
MAX_TAGS = 32
_TAG = re.compile(TAG_PATTERN)


def check_tag(field: str, value: object) -> str:
    """A tag name (lower case, digits, underscores; starts with a letter; up to 31)."""
    if not isinstance(value, str) or not _TAG.match(value):
        raise ValidationError(field, "must be 1-31 of a-z 0-9 _, starting with a letter")
    return value


def check_tags(field: str, tags: Iterable[object]) -> list[str]:
    """Valid, unique tags in a stable order, or ValidationError naming ``field.N``."""
    out: list[str] = []
    for i, raw in enumerate(tags):
        tag = check_tag(f"{field}.{i}", raw)
        if tag not in out:
            out.append(tag)
    if len(out) > MAX_TAGS:
        raise ValidationError(field, f"at most {MAX_TAGS} tags")
    return sorted(out)

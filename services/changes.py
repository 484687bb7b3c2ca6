"""What a PATCH may change: the one guard every resource's change request passes first."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from elysium.errors import ValidationError


def check_changeable(changes: Mapping[str, Any], changeable: Iterable[str]) -> None:
    """Refuse a change request naming a field outside ``changeable``: a 422 that names the
    first such field (in sorted order, so the answer is the same every time)."""
    unknown = set(changes) - set(changeable)
    if unknown:
        raise ValidationError(sorted(unknown)[0], "cannot be changed")

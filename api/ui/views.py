"""The dashboard blueprint with every route registered on it."""

from __future__ import annotations

from api.ui import actions, login, pages
from api.ui.blueprint import blp

ROUTES = (actions, login, pages)  # imported for the routes they add to ``blp``

__all__ = ["blp"]

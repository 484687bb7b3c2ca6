"""The dashboard blueprint with every route registered on it."""

from __future__ import annotations

from api.ui import actions, login, pages, sso
from api.ui.blueprint import blp

ROUTES = (actions, login, pages, sso)  # imported for the routes they add to ``blp``

__all__ = ["blp"]

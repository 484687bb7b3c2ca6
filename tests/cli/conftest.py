"""The command line against the API tests' servers: the SSO API and its OpenID provider."""

from __future__ import annotations

from tests.api import conftest as api_fixtures

# The API tests' session fixtures, shared rather than started twice.
api_pki = api_fixtures.api_pki
api_url = api_fixtures.api_url
sso = api_fixtures.sso
db = api_fixtures.db

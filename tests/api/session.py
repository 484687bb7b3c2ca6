"""The API's session-wide parts: its PKI, its server and the single sign-on server.

One of each for the whole run: ``tests/conftest.py`` registers these once. A conftest that
binds a session fixture to a name of its own registers another one, and with it another
server that lives to the end of the session (four API servers ran at once that way, holding
PostgreSQL connections the database tests needed).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from elysium import pki
from elysium.settings import Settings
from tests.api.conftest import Pki, Sso, free_port, start_api
from tests.oidc import sso_settings, start_provider


@pytest.fixture(scope="session")
def api_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca_cert, ca_key = pki.create_ca()
    pki.write_certificate(d / "ca.pem", ca_cert)
    pki.write_private_key(d / "ca.key", ca_key)
    cert, key = pki.create_server_certificate(ca_cert, ca_key, ["127.0.0.1", "localhost"])
    pki.write_certificate(d / "server.pem", cert)
    pki.write_private_key(d / "server.key", key)
    other_ca, other_key = pki.create_ca("Not Elysium")
    peer_key = pki.new_private_key()
    foreign = pki.sign_csr(other_ca, other_key, pki.make_csr(peer_key), 1, 1)
    pki.write_certificate(d / "foreign.pem", foreign)
    pki.write_private_key(d / "foreign.key", peer_key)
    return Pki(
        d,
        d / "ca.pem",
        d / "ca.key",
        d / "server.pem",
        d / "server.key",
        d / "foreign.pem",
        d / "foreign.key",
    )


@pytest.fixture(scope="session")
def api_url(
    settings: Settings, api_pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    server, url = start_api(settings, api_pki, tmp_path_factory.mktemp("api") / "gunicorn.log")
    try:
        yield url
    finally:
        server.stop()
        r = redis.Redis.from_url(settings.redis_url)
        keys = list(r.scan_iter(f"{settings.redis_key_prefix}*", count=1000))
        if keys:
            r.delete(*keys)


@pytest.fixture(scope="session")
def sso(
    settings: Settings, api_pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Sso]:
    """oidc-provider on loopback and a second API server configured for it (ELYSIUM_OIDC_*),
    on the session's database; both stopped by pid."""
    work = tmp_path_factory.mktemp("oidc")
    api_port = free_port()
    redirect = f"https://127.0.0.1:{api_port}/ui/sso/callback"
    provider = start_provider(work, free_port(), redirect)
    try:
        server, url = start_api(
            settings, api_pki, work / "gunicorn.log", api_port, **sso_settings(provider, redirect)
        )
        try:
            yield Sso(provider, url)
        finally:
            server.stop()
    finally:
        provider.process.stop()

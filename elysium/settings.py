"""One typed settings object, read once from ``ELYSIUM_*`` environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from elysium.errors import ConfigError


@dataclass(frozen=True)
class Settings:
    """Everything a process of Elysium may be configured with.

    Build it once at process start with :meth:`from_env` and pass it down.
    """

    database_url: str = "postgresql://elysium:elysium@127.0.0.1:5432/elysium"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Redis Sentinel (README "High availability"): "host:port,host:port,..." of the sentinels;
    # when set, every process finds the primary of redis_master_name through them (the
    # database number still comes from redis_url) instead of connecting to redis_url's host.
    redis_sentinels: tuple[str, ...] = ()
    redis_master_name: str = "elysium"
    # Prefix of every broker key: lets several Elysium deployments (or test runs) share a Redis.
    redis_key_prefix: str = ""
    state_dir: Path = Path("/var/lib/elysium")
    # A hub worker: its hub's name and the network namespace it acts in ("" = its own).
    hub: str = ""
    netns: str = ""
    # Dataplane driver on hubs and clients: auto | kernel | userspace.
    wg_driver: str = "auto"
    wireguard_go: str = "wireguard-go"
    db_pool_min: int = 1
    db_pool_max: int = 10
    # API
    api_bind: str = "127.0.0.1:8443"
    api_workers: int = 2
    # Threads per API worker: requests being worked on. A waiting config follow or job wait
    # (GET /v1/peer/config?wait, GET /v1/jobs/{id}?wait) holds none: api/gunicorn_worker.py
    # parks it. More threads than the database pool (db_pool_max) mostly queue on it.
    api_threads: int = 64
    # Open connections per API worker (each one file descriptor): every following peer keeps
    # one, so this bounds the followers a worker holds (the open-file limit must allow it).
    api_connections: int = 10000
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    ca_key: Path | None = None
    peer_cert_days: int = 30
    job_wait_max_s: int = 30
    config_wait_max_s: int = 60  # longest GET /v1/peer/config?version=V&wait=N
    # Periodic workflows (seconds)
    liveness_interval_s: float = 30.0
    online_after_s: float = 180.0
    hub_stale_after_s: float = 90.0
    expiry_interval_s: float = 60.0
    reconcile_interval_s: float = 300.0
    janitor_interval_s: float = 30.0
    job_requeue_after_s: float = 60.0
    job_time_limit_s: float = 300.0
    beat_lease_s: float = 15.0
    heartbeat_interval_s: float = 15.0
    # A control worker, hub worker or beat serves its metrics on 127.0.0.1:<port> (0: none).
    metrics_port: int = 0
    # Single sign-on through an OpenID provider (README "Single sign-on"); off while no issuer.
    oidc_issuer: str = ""
    oidc_client_id: str = ""  # the dashboard's client (authorization code + PKCE)
    oidc_client_secret: str = ""  # "" for a public client
    oidc_cli_client_id: str = ""  # `elysium login --sso`'s device-flow client ("": the same)
    oidc_redirect_url: str = ""  # https://<api>/ui/sso/callback, as registered at the provider
    oidc_scopes: str = "openid email profile groups"
    oidc_groups_claim: str = "groups"
    # Claim mapping: a user gets the highest scope that one of its groups or its verified
    # e-mail domain names (comma-separated lists); a user no list names is refused.
    oidc_admin_groups: tuple[str, ...] = ()
    oidc_operator_groups: tuple[str, ...] = ()
    oidc_reader_groups: tuple[str, ...] = ()
    oidc_admin_email_domains: tuple[str, ...] = ()
    oidc_operator_email_domains: tuple[str, ...] = ()
    oidc_reader_email_domains: tuple[str, ...] = ()
    # `elysium-client enroll --sso`: where a user's peers go, "group:NAME=HUB/INTERFACE" or
    # "domain:NAME=HUB/INTERFACE", each optionally ":TAG+TAG", comma-separated; the first rule
    # that names the user wins (see enroll_rules).
    oidc_enroll: tuple[str, ...] = ()
    oidc_token_ttl_s: int = 3600  # the API token that `elysium login --sso` gets

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read ``ELYSIUM_<FIELD>`` variables (upper case) over the defaults."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"ELYSIUM_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            values[f.name] = _convert(f.name, str(f.type), raw)
        values.update(overrides)
        settings = cls(**values)
        if settings.wg_driver not in ("auto", "kernel", "userspace"):
            raise ConfigError("ELYSIUM_WG_DRIVER must be auto, kernel or userspace", "wg_driver")
        if settings.oidc_issuer and not settings.oidc_client_id:
            raise ConfigError("ELYSIUM_OIDC_CLIENT_ID is needed with ELYSIUM_OIDC_ISSUER", "oidc")
        settings.enroll_rules  # noqa: B018 (a malformed rule stops the process at start)
        for sentinel in settings.redis_sentinels:
            host, _, port = sentinel.rpartition(":")
            if not host or not port.isdigit():
                raise ConfigError(
                    f"ELYSIUM_REDIS_SENTINELS: {sentinel!r} is not host:port", "redis_sentinels"
                )
        return settings

    @property
    def enroll_rules(self) -> tuple[EnrollRule, ...]:
        """``oidc_enroll`` parsed; ConfigError naming a malformed rule."""
        return tuple(EnrollRule.parse(text) for text in self.oidc_enroll)

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """``redis_sentinels`` as (host, port) pairs."""
        return [(h, int(p)) for h, _, p in (s.rpartition(":") for s in self.redis_sentinels)]

    @property
    def sso(self) -> bool:
        """Whether single sign-on is configured."""
        return bool(self.oidc_issuer)

    @property
    def oidc_audiences(self) -> tuple[str, ...]:
        """The client ids an ID token may be issued to: the dashboard's and the CLI's."""
        return tuple(dict.fromkeys(c for c in (self.oidc_client_id, self.oidc_cli_client_id) if c))

    def to_env(self) -> dict[str, str]:
        """The ``ELYSIUM_*`` variables that make a child process read these settings."""
        env: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                env[f"ELYSIUM_{f.name.upper()}"] = ",".join(value)
            elif value is not None:
                env[f"ELYSIUM_{f.name.upper()}"] = str(value)
        return env


@dataclass(frozen=True)
class EnrollRule:
    """Where a single sign-on user's peers enroll: the users it names (by ``group`` or
    e-mail ``domain``), the hub and interface, and the tags their peers get."""

    kind: str
    match: str
    hub: str
    interface: str
    tags: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> EnrollRule:
        """``group:NAME=HUB/INTERFACE[:TAG+TAG]`` or ``domain:NAME=...``."""
        kind, _, rest = text.partition(":")
        match, _, target = rest.partition("=")
        place, _, tags = target.partition(":")
        hub, _, interface = place.partition("/")
        if kind not in ("group", "domain") or not (match and hub and interface):
            raise ConfigError(
                f"ELYSIUM_OIDC_ENROLL: {text!r} is not group:NAME=HUB/INTERFACE[:TAG+TAG]"
                " or domain:NAME=HUB/INTERFACE[:TAG+TAG]",
                "oidc_enroll",
            )
        found = tuple(t for t in tags.split("+") if t)
        return cls(kind, match.lower() if kind == "domain" else match, hub, interface, found)


def _convert(name: str, type_name: str, raw: str) -> Any:
    try:
        if type_name.startswith("tuple"):
            return tuple(item.strip() for item in raw.split(",") if item.strip())
        if "Path" in type_name:
            return Path(raw)
        if type_name.startswith("int"):
            return int(raw)
        if type_name.startswith("float"):
            return float(raw)
    except ValueError as exc:
        raise ConfigError(f"ELYSIUM_{name.upper()}: {exc}", name) from exc
    return raw

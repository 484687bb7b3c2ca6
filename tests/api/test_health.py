"""Liveness, readiness, metrics, the OpenAPI document and its viewer: open to anyone."""

from __future__ import annotations

from typing import Any

import psycopg
import requests

from elysium.settings import Settings
from tests.api.conftest import Api, Pki, start_api


def test_healthz_answers_ok_without_a_token(anonymous: Api) -> None:
    r = anonymous.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"


def test_readyz_is_ok_when_postgresql_and_redis_answer(anonymous: Api) -> None:
    r = anonymous.get("/readyz")
    assert r.status_code == 200 and r.json() == {"status": "ok", "down": []}


def test_readyz_is_503_naming_what_is_down(settings: Settings, api_pki: Pki, tmp_path: Any) -> None:
    server, url = start_api(
        settings,
        api_pki,
        tmp_path / "api.log",
        ELYSIUM_DATABASE_URL="postgresql://nobody:x@127.0.0.1:1/none",
        ELYSIUM_REDIS_URL="redis://127.0.0.1:1/0",
        ELYSIUM_STATE_DIR=str(tmp_path),
    )
    try:
        r = requests.get(f"{url}/readyz", verify=str(api_pki.ca), timeout=30)
    finally:
        server.stop()
    assert r.status_code == 503
    assert r.json() == {"status": "unavailable", "down": ["postgresql", "redis"]}


def test_metrics_count_requests_by_route_and_status_across_workers(
    anonymous: Api, admin: Api, db: psycopg.Connection[Any]
) -> None:
    for _ in range(10):  # several connections: both gunicorn workers serve some
        Api(anonymous.base, anonymous.ca).get("/healthz")
    admin.post("/v1/hubs", json={"name": "hub-m", "endpoint": "192.0.2.9"})
    text = anonymous.get("/metrics").text
    assert 'elysium_api_requests_total{method="GET",route="/healthz",status="200"}' in text
    count = next(
        line
        for line in text.splitlines()
        if line.startswith('elysium_api_requests_total{method="GET",route="/healthz"')
    )
    assert float(count.rsplit(" ", 1)[1]) >= 10
    assert 'route="/v1/hubs",status="201"' in text
    assert "elysium_api_request_seconds_bucket" in text
    assert "elysium_peers_online 0.0" in text


def test_metrics_count_jobs_by_kind_and_status(admin: Api, interface_id: int) -> None:
    text = admin.get("/metrics").text
    assert 'elysium_jobs{kind="create_interface",status="queued"} 1.0' in text


def test_openapi_document_lists_every_v1_call(anonymous: Api) -> None:
    spec = anonymous.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    for path in (
        "/v1/tokens",
        "/v1/hubs",
        "/v1/enroll",
        "/v1/jobs/{job_id}",
        "/v1/peer/config",
        "/v1/peer/key",
        "/v1/audit",
        "/v1/peers",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert path in spec["paths"]


def test_docs_page_is_swagger_ui_and_needs_nothing_from_the_internet(anonymous: Api) -> None:
    r = anonymous.get("/docs")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    assert "/openapi.json" in r.text and "https://" not in r.text and "http://" not in r.text
    assert "SwaggerUIBundle" in r.text
    for asset in ("swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css"):
        assert f'"/docs/assets/{asset}"' in r.text
        served = anonymous.get(f"/docs/assets/{asset}")
        assert served.status_code == 200 and len(served.content) > 1000, asset

"""The Flask app factory: settings, per-process resources, OpenAPI, error handling, blueprints.

Run it under gunicorn with ``api/gunicorn_conf.py`` (``elysium api``); the config serves TLS
and passes verified client certificates in. Every answer is JSON, errors included.
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask_smorest import Api
from werkzeug.routing import BaseConverter

from api import errors, metrics
from api.health.docs import DOCS_ASSETS_URL
from api.schemas import ErrorSchema
from api.state import EXTENSION, ApiState
from elysium.settings import Settings

MAX_BODY_BYTES = 64 * 1024


class ElysiumApi(Api):
    """flask-smorest's Api documenting our error body as every operation's default answer."""

    ERROR_SCHEMA = ErrorSchema


def create_app(settings: Settings | None = None) -> Flask:
    """Build the API app; ``settings`` default to the ``ELYSIUM_*`` environment."""
    settings = settings or Settings.from_env()
    app = Flask("elysium")
    app.config.update(
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        API_TITLE="Elysium",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        # Swagger UI at /docs, its assets from the swagger-ui-bundle package (api/health/docs.py).
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL=DOCS_ASSETS_URL,
        API_SPEC_OPTIONS={
            "info": {
                "description": "Hub-and-spoke WireGuard automation. Errors are"
                ' {"error": {"code", "message", "fields"}}; bad input is a 400.'
            },
            "components": {
                "securitySchemes": {
                    "bearer": {"type": "http", "scheme": "bearer"},
                }
            },
            "security": [{"bearer": []}],
        },
    )
    app.extensions[EXTENSION] = ApiState(settings)
    app.url_map.converters["id"] = IdConverter
    api = ElysiumApi(app)
    api.register_converter(
        IdConverter, lambda _: {"type": "integer", "minimum": 1, "maximum": 10**18 - 1}
    )
    errors.register_error_handlers(app)
    metrics.instrument(app)
    for blp in _blueprints():
        api.register_blueprint(blp)
    # Pages and files, not API calls: outside the OpenAPI document.
    from api.health.docs import blp as docs_assets
    from api.ui.views import blp as ui

    app.register_blueprint(docs_assets)
    app.register_blueprint(ui)
    return app


def _blueprints() -> list[Any]:
    from api.audit.views import blp as audit
    from api.enroll.views import blp as enroll
    from api.health.views import blp as health
    from api.hubs.views import blp as hubs
    from api.interfaces.views import blp as interfaces
    from api.jobs.views import blp as jobs
    from api.peer_self.views import blp as peer_self
    from api.peers.views import blp as peers
    from api.policy.views import blp as policy
    from api.sso.views import blp as sso
    from api.tokens.views import blp as tokens

    return [health, tokens, hubs, interfaces, policy, peers, enroll, jobs, peer_self, audit, sso]


class IdConverter(BaseConverter):
    """``<id:name>``: a positive bigint; anything else is a 404, never a database error."""

    regex = r"[1-9][0-9]{0,17}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: Any) -> str:
        return str(value)

"""The files of Swagger UI (``/docs``), served from the swagger-ui-bundle package: no CDN."""

from __future__ import annotations

from flask import Blueprint
from swagger_ui_bundle import swagger_ui_path
from werkzeug.wrappers import Response

DOCS_ASSETS_URL = "/docs/assets/"

blp = Blueprint(
    "docs_assets", __name__, static_folder=swagger_ui_path, static_url_path="/docs/assets"
)


@blp.after_request
def cache(resp: Response) -> Response:
    resp.headers.setdefault("Cache-Control", "public, max-age=86400")
    return resp

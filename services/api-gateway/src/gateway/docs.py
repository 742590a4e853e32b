"""GET /openapi.json and a browsable GET /docs (Swagger UI), both without credentials; beside
them GET /asyncapi.json, the AsyncAPI 3.0 document of the event stream (calls_platform.asyncapi).

The docs page works offline: Swagger UI's files come from the swagger-ui-bundle-v2 package and
are served by the gateway itself under /docs/assets/; nothing is fetched from a CDN, and the
online spec validator Swagger UI would call by default is switched off.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from aiohttp import web
from calls_platform import asyncapi
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]  # no py.typed

from .openapi import render

OPENAPI_PATH: Final = "/openapi.json"
ASYNCAPI_PATH: Final = "/asyncapi.json"
DOCS_PATH: Final = "/docs"
ASSETS_PATH: Final = "/docs/assets"
ASSETS_DIR: Final = Path(str(swagger_ui_path))

# Relative URLs: the page keeps working behind a proxy that mounts the gateway under a prefix.
PAGE: Final = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Calls API</title>
  <link rel="stylesheet" href="docs/assets/swagger-ui.css">
  <link rel="icon" type="image/png" href="docs/assets/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="docs/assets/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({
      url: "openapi.json",
      dom_id: "#swagger-ui",
      deepLinking: true,
      persistAuthorization: true,
      validatorUrl: null,
      presets: [SwaggerUIBundle.presets.apis],
      layout: "BaseLayout"
    });
  </script>
</body>
</html>
"""


def setup_docs(app: web.Application) -> None:
    """Add the document, the page and its assets to `app` (call from setup_routes)."""
    document = render().encode()
    events_document = asyncapi.render().encode()

    async def openapi_json(request: web.Request) -> web.Response:
        return web.Response(body=document, content_type="application/json")

    async def asyncapi_json(request: web.Request) -> web.Response:
        return web.Response(body=events_document, content_type="application/json")

    async def docs_page(request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    app.router.add_get(OPENAPI_PATH, openapi_json)
    app.router.add_get(ASYNCAPI_PATH, asyncapi_json)
    app.router.add_get(DOCS_PATH, docs_page)
    app.router.add_static(ASSETS_PATH, ASSETS_DIR)

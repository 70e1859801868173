"""GET /docs: a browsable reference over /openapi.json (Swagger UI), its files served from the
installed `openapi-ui-bundles` package, never from a CDN, so the page works offline and loads
nothing from elsewhere.

Only the files the page uses are served, by name; each may be cached for a day (they change
only with the package's version).
"""

from __future__ import annotations

from openapi_ui_bundles import swagger_ui
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response

from service.errors import NotFound

# Relative links, so the page works under any path prefix a proxy puts in front of it.
PAGE = """<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <title>Mailfold API reference</title>
    <link rel="stylesheet" href="docs/swagger-ui.css">
    <link rel="icon" type="image/png" href="docs/favicon-32x32.png">
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="docs/swagger-ui-bundle.js"></script>
    <script src="docs/mailfold-docs.js"></script>
  </body>
</html>
"""
# A script file rather than an inline script, so a Content-Security-Policy may forbid inline.
INIT = """window.ui = SwaggerUIBundle({
  url: "openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
});
"""
ASSETS = {
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
    "favicon-32x32.png": "image/png",
}
CACHE = {"Cache-Control": "public, max-age=86400"}


async def page(request: Request) -> Response:
    """GET /docs"""
    return HTMLResponse(PAGE)


async def asset(request: Request) -> Response:
    """GET /docs/{asset}: one of the page's files."""
    name = request.path_params["asset"]
    if name == "mailfold-docs.js":
        return Response(INIT, media_type="text/javascript", headers=CACHE)
    if name not in ASSETS:
        raise NotFound(f"no file {name[:100]!r} under /docs")
    path = swagger_ui.static_path / name
    return FileResponse(path, media_type=ASSETS[name], headers=CACHE)

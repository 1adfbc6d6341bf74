"""``GET /docs``: Swagger UI for ``/openapi.json``, from vendored assets (no CDN).

The assets are swagger-ui-dist 5.35.0 (Apache-2.0, licence files beside them)
in ``oauthproxy/ui/static/swagger/``, shipped as package data and read once.
Version 5 is needed: earlier ones cannot render OpenAPI 3.1.

The page is public (like ``/openapi.json``, which it loads) and served with a
Content-Security-Policy that allows only this origin: no inline script (the
initialiser is ``/docs/init.js``), no third-party origin, no framing.  Swagger
UI's online validator is switched off, so the browser talks to nobody else.
"""

from __future__ import annotations

from importlib import resources
from typing import ClassVar

from attrs import define, field
from klein import Klein
from twisted.web.server import Request

from oauthproxy.admin.errors import render_error
from oauthproxy.errors import NotFound

#: the only sources the page may use (ATK: no third-party script or style)
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)

PAGE = b"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>oauthproxy admin API</title>
<link rel="stylesheet" href="/docs/swagger-ui.css">
<link rel="icon" type="image/png" href="/docs/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script>
</body>
</html>
"""

INIT = b"""window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout"
  });
});
"""

#: vendored file -> content type
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}


def read_assets() -> dict[str, tuple[bytes, str]]:
    """The served files: name -> (content, content type); the vendored ones from package data."""
    folder = resources.files("oauthproxy").joinpath("ui", "static", "swagger")
    files = {name: (folder.joinpath(name).read_bytes(), kind) for name, kind in ASSETS.items()}
    files["init.js"] = (INIT, "text/javascript; charset=utf-8")
    return files


def _headers(request: Request, content_type: str, cache: str) -> None:
    """Security and caching headers of every docs response."""
    for name, value in (
        (b"content-type", content_type),
        (b"content-security-policy", CSP),
        (b"x-content-type-options", "nosniff"),
        (b"referrer-policy", "no-referrer"),
        (b"cache-control", cache),
    ):
        request.responseHeaders.setRawHeaders(name, [value.encode("ascii")])


@define
class DocsResource:
    """Serves the Swagger UI page and its assets (not in the OpenAPI document: not JSON)."""

    app: ClassVar[Klein] = Klein()
    assets: dict[str, tuple[bytes, str]] = field(factory=read_assets)

    @app.route("/docs", methods=["GET", "HEAD"], strict_slashes=False)
    def page(self, request: Request) -> bytes:
        """The HTML page that loads Swagger UI."""
        _headers(request, "text/html; charset=utf-8", "no-cache")
        return PAGE

    @app.route("/docs/<name>", methods=["GET", "HEAD"])
    def asset(self, request: Request, name: str) -> bytes:
        """One asset, or a JSON 404 for any other name."""
        found = self.assets.get(name)
        if found is None:
            return render_error(request, NotFound("no such file"))
        content, kind = found
        _headers(request, kind, "public, max-age=3600")
        return content

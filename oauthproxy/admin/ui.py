"""The built-in web UI: ``GET /`` and its assets under ``/ui/static/``, from package data.

The UI is a single page of plain HTML, JavaScript and CSS in
``oauthproxy/ui/static/`` (no build step, no CDN).  It talks only to this API
with the token the operator pastes, kept in ``sessionStorage``; the page and
its assets are public, like ``/docs``.

Only the files named in :data:`ASSETS` are served, read once when the resource
is built: a request names a key of that table, never a path on disk, so there is
no directory listing and no way to traverse out of the folder.  Every answer
carries a Content-Security-Policy that allows this origin only (no inline
script, no third-party origin, no framing) and ``nosniff``.
"""

from __future__ import annotations

from importlib import resources
from typing import ClassVar

from attrs import define, field
from klein import Klein
from twisted.web.server import Request

from oauthproxy.admin.errors import render_error
from oauthproxy.errors import NotFound

#: only this origin; forms are submitted by script, never by navigation (no token in a URL)
CSP = "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

#: the page served at ``/``
PAGE = "index.html"

#: the files under ``/ui/static/``: name -> content type
ASSETS = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}


def read_files() -> dict[str, bytes]:
    """The page and the assets as package data: file name -> content."""
    folder = resources.files("oauthproxy").joinpath("ui", "static")
    return {name: folder.joinpath(name).read_bytes() for name in (PAGE, *ASSETS)}


def _headers(request: Request, content_type: str) -> None:
    """Security and caching headers of every UI response."""
    for name, value in (
        (b"content-type", content_type),
        (b"content-security-policy", CSP),
        (b"x-content-type-options", "nosniff"),
        # browsers without CSP frame-ancestors still honour this (O21-13)
        (b"x-frame-options", "DENY"),
        (b"referrer-policy", "no-referrer"),
        # the names carry no version: revalidate so an upgrade never mixes old and new files
        (b"cache-control", "no-cache"),
    ):
        request.responseHeaders.setRawHeaders(name, [value.encode("ascii")])


@define
class UIResource:
    """Serves the web UI page and its assets (not in the OpenAPI document: not JSON)."""

    app: ClassVar[Klein] = Klein()
    files: dict[str, bytes] = field(factory=read_files)

    @app.route("/", methods=["GET", "HEAD"])
    def page(self, request: Request) -> bytes:
        """The single HTML page of the UI."""
        _headers(request, "text/html; charset=utf-8")
        return self.files[PAGE]

    @app.route("/ui/static/<name>", methods=["GET", "HEAD"])
    def asset(self, request: Request, name: str) -> bytes:
        """One asset by its name in :data:`ASSETS`, or the API's JSON 404."""
        kind = ASSETS.get(name)
        if kind is None:
            return render_error(request, NotFound("no such file"))
        _headers(request, kind)
        return self.files[name]

"""The web console: ``GET /`` and its assets under ``/ui/static/``, from package data.

The console is one page of plain HTML and CSS with JavaScript ES modules, one
per screen, in ``oauthproxy/ui/static/`` (no build step, no CDN); the only
third-party code is uPlot, vendored with its licence under ``vendor/uplot/``.
It talks only to this API with the token the operator pastes, kept in
``sessionStorage``; the page and its assets are public, like ``/docs``.

The files served are read once when the resource is built into a table keyed by
their path under ``ui/static/`` (Swagger UI's folder excepted: ``/docs`` serves
that).  A request names a key of that table, never a path on disk, so there is
no directory listing and no way to traverse out of the folder.  Every answer
carries a Content-Security-Policy that allows this origin only (no inline
script or style, no third-party origin, no framing) and ``nosniff``.
"""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable
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

#: content types by file suffix; other files are not served
CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".html": "text/html; charset=utf-8",
}
#: licence texts of vendored code are served as plain text
LICENCE_NAMES = ("LICENSE", "LICENCE", "NOTICE")
#: folders under ui/static/ that are not the console's
_NOT_SERVED = ("swagger",)


def _walk(folder: Traversable, prefix: str) -> dict[str, Traversable]:
    """Every file under ``folder`` by its ``/``-separated path (folders in _NOT_SERVED left out)."""
    found: dict[str, Traversable] = {}
    for entry in folder.iterdir():
        name = prefix + entry.name
        if entry.is_dir():
            if name not in _NOT_SERVED:
                found.update(_walk(entry, name + "/"))
        else:
            found[name] = entry
    return found


def content_type(name: str) -> str | None:
    """The content type ``name`` is served with, None if it is not served."""
    base = name.rsplit("/", 1)[-1]
    if base in LICENCE_NAMES:
        return "text/plain; charset=utf-8"
    dot = base.rfind(".")
    return CONTENT_TYPES.get(base[dot:]) if dot > 0 else None


def read_files() -> dict[str, tuple[bytes, str]]:
    """The page and the assets as package data: path under ``ui/static/`` -> (content, type)."""
    folder = resources.files("oauthproxy").joinpath("ui", "static")
    files = {}
    for name, entry in _walk(folder, "").items():
        kind = content_type(name)
        if kind is not None:
            files[name] = (entry.read_bytes(), kind)
    return files


def _headers(request: Request, content_type: str) -> None:
    """Security and caching headers of every console response."""
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
    """Serves the console page and its assets (not in the OpenAPI document: not JSON)."""

    app: ClassVar[Klein] = Klein()
    files: dict[str, tuple[bytes, str]] = field(factory=read_files)

    @app.route("/", methods=["GET", "HEAD"])
    def page(self, request: Request) -> bytes:
        """The single HTML page of the console."""
        content, kind = self.files[PAGE]
        _headers(request, kind)
        return content

    @app.route("/ui/static/<path:name>", methods=["GET", "HEAD"])
    def asset(self, request: Request, name: str) -> bytes:
        """One asset by its path under ``ui/static/``, or the API's JSON 404."""
        found = self.files.get(name)
        if found is None or name == PAGE:
            return render_error(request, NotFound("no such file"))
        content, kind = found
        _headers(request, kind)
        return content

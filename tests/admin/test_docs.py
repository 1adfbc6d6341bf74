"""Tests for ``/docs``: Swagger UI from package assets, public, under a strict CSP."""

from __future__ import annotations

import re

from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.admin.docs import ASSETS
from tests.admin.harness import Harness


class DocsTests(SynchronousTestCase):
    """The page and its assets."""

    def setUp(self) -> None:
        self.h = Harness(self)

    def test_page_is_public_html(self) -> None:
        """``GET /docs`` without a token is the HTML page with the UI container."""
        answer = self.h.call("GET", "/docs")
        self.assertEqual(answer.status, 200)
        self.assertEqual(answer.header(b"content-type"), b"text/html; charset=utf-8")
        self.assertIn(b'<div id="swagger-ui">', answer.body)

    def test_trailing_slash_is_the_same_page(self) -> None:
        """``/docs/`` serves the page too."""
        self.assertEqual(self.h.call("GET", "/docs/").body, self.h.call("GET", "/docs").body)

    def test_csp_allows_no_other_origin_nor_inline_script(self) -> None:
        """The policy names only 'self' (and data: images), never a host or 'unsafe-inline'."""
        policy = (self.h.call("GET", "/docs").header(b"content-security-policy") or b"").decode()
        self.assertIn("default-src 'none'", policy)
        self.assertIn("script-src 'self'", policy)
        self.assertNotIn("unsafe", policy)
        self.assertIsNone(re.search(r"https?:|\*", policy))

    def test_page_loads_only_local_assets(self) -> None:
        """Every script and stylesheet of the page is under /docs/, and it has no inline script."""
        body = self.h.call("GET", "/docs").body.decode()
        sources = re.findall(r'(?:src|href)="([^"]+)"', body)
        self.assertTrue(sources)
        self.assertTrue(all(source.startswith("/docs/") for source in sources), sources)
        self.assertNotRegex(body, r"<script>")

    def test_initialiser_loads_openapi_json_without_validator(self) -> None:
        """``init.js`` points Swagger UI at ``/openapi.json`` and disables the online validator."""
        answer = self.h.call("GET", "/docs/init.js")
        self.assertEqual(answer.header(b"content-type"), b"text/javascript; charset=utf-8")
        self.assertIn(b'url: "/openapi.json"', answer.body)
        self.assertIn(b"validatorUrl: null", answer.body)

    def test_vendored_assets_are_served(self) -> None:
        """The bundle, stylesheet and icon come from package data, with their types."""
        for name, kind in ASSETS.items():
            answer = self.h.call("GET", f"/docs/{name}")
            self.assertEqual(answer.status, 200, name)
            self.assertEqual(answer.header(b"content-type"), kind.encode())
            self.assertEqual(answer.header(b"x-content-type-options"), b"nosniff")
            self.assertGreater(len(answer.body), 500, name)

    def test_bundle_is_swagger_ui_5(self) -> None:
        """Version 5 renders OpenAPI 3.1 (4 does not)."""
        body = self.h.call("GET", "/docs/swagger-ui-bundle.js").body
        self.assertIn(b"SwaggerUIBundle", body)
        self.assertRegex(self.h.call("GET", "/docs/swagger-ui.css").body[:400], rb"swagger")

    def test_unknown_asset_is_json_404(self) -> None:
        """Any other name under /docs/ is the API's JSON 404 (no file system access)."""
        for name in ("missing.js", "..%2Fsetup.cfg", "LICENSE"):
            answer = self.h.call("GET", f"/docs/{name}")
            self.assertEqual(answer.status, 404, name)

"""Tests for the web UI at ``/``: package assets, public, under a same-origin CSP."""

from __future__ import annotations

import posixpath
import re

from twisted.trial.unittest import SynchronousTestCase

from tests.admin.harness import Answer, Harness


class PageTests(SynchronousTestCase):
    """``GET /``: the single page of the UI."""

    def setUp(self) -> None:
        self.h = Harness(self)

    def test_page_is_public_html(self) -> None:
        """``GET /`` without a token is the HTML page with the sign-in form and the navigation."""
        answer = self.h.call("GET", "/")
        self.assertEqual(answer.status, 200)
        self.assertEqual(answer.header(b"content-type"), b"text/html; charset=utf-8")
        self.assertIn(b'<form id="login-form"', answer.body)
        for screen in (
            b"proxies",
            b"routes",
            b"certificates",
            b"services",
            b"tokens",
            b"auth",
            b"oauth",
            b"logs",
            b"health",
        ):
            self.assertIn(b'data-screen="' + screen + b'"', answer.body)

    def test_sign_in_text_names_the_real_ways_to_get_a_token(self) -> None:
        """The sign-in text names the first-start admin token, token-admin and token create."""
        body = self.h.call("GET", "/").body
        self.assertIn(b"oauthproxyctl token-admin", body)
        self.assertIn(b"oauthproxyctl token create", body)
        self.assertNotIn(b"ADMIN_TOKEN", body)

    def test_page_has_the_security_headers(self) -> None:
        """Same-origin CSP, no framing (O21-13), nosniff and no referrer (BCP-1 §4.2)."""
        answer = self.h.call("GET", "/")
        policy = (answer.header(b"content-security-policy") or b"").decode()
        self.assertIn("default-src 'self'", policy)
        self.assertIn("frame-ancestors 'none'", policy)
        self.assertEqual(answer.header(b"x-frame-options"), b"DENY")
        self.assertEqual(answer.header(b"x-content-type-options"), b"nosniff")
        self.assertEqual(answer.header(b"referrer-policy"), b"no-referrer")

    def test_csp_names_no_other_origin_nor_unsafe_source(self) -> None:
        """The policy allows no host, scheme or 'unsafe-*' source: no CDN, no inline script."""
        policy = (self.h.call("GET", "/").header(b"content-security-policy") or b"").decode()
        self.assertNotIn("unsafe", policy)
        self.assertIsNone(re.search(r"https?:|data:|\*", policy))

    def test_page_loads_only_local_assets_and_no_inline_script(self) -> None:
        """Every script, stylesheet and icon of the page is under /ui/static/."""
        body = self.h.call("GET", "/").body.decode()
        sources = re.findall(r'<(?:script|link)[^>]*(?:src|href)="([^"]+)"', body)
        self.assertEqual(len(sources), 4, sources)
        self.assertTrue(all(s.startswith("/ui/static/") for s in sources), sources)
        self.assertNotRegex(body, r"<script>|<script [^>]*>[^<]|\son[a-z]+=|style=")

    def test_head_has_the_same_headers_and_no_body(self) -> None:
        """``HEAD /`` answers like GET, without the body."""
        answer = self.h.call("HEAD", "/")
        self.assertEqual(answer.status, 200)
        self.assertEqual(answer.header(b"content-type"), b"text/html; charset=utf-8")
        self.assertEqual(answer.body, b"")

    def test_post_is_method_not_allowed(self) -> None:
        """The page is read-only: ``POST /`` is the API's JSON 405."""
        self.h.assert_error(self.h.call("POST", "/"), 405, "method_not_allowed")


class AssetTests(SynchronousTestCase):
    """``/ui/static/<name>``: only the shipped files, each with its type."""

    def setUp(self) -> None:
        self.h = Harness(self)

    def test_assets_have_their_content_type_and_headers(self) -> None:
        """Scripts, stylesheets, the icon and the vendored licence come with their types."""
        for name, kind in (
            ("js/main.js", b"text/javascript; charset=utf-8"),
            ("js/screens/proxies.js", b"text/javascript; charset=utf-8"),
            ("app.css", b"text/css; charset=utf-8"),
            ("favicon.svg", b"image/svg+xml"),
            ("vendor/uplot/uPlot.esm.js", b"text/javascript; charset=utf-8"),
            ("vendor/uplot/LICENSE", b"text/plain; charset=utf-8"),
        ):
            answer = self.h.call("GET", f"/ui/static/{name}")
            self.assertEqual(answer.status, 200, name)
            self.assertEqual(answer.header(b"content-type"), kind, name)
            self.assertEqual(answer.header(b"x-content-type-options"), b"nosniff", name)
            self.assertIn(b"default-src 'self'", answer.header(b"content-security-policy") or b"")
            self.assertGreater(len(answer.body), 200, name)

    def test_every_module_import_is_served(self) -> None:
        """Each ES module import names a file the console serves (no build step, no CDN)."""
        pending, seen = ["js/main.js"], set()
        while pending:
            name = pending.pop()
            seen.add(name)
            script = self.h.call("GET", f"/ui/static/{name}")
            self.assertEqual(script.status, 200, name)
            folder = name.rsplit("/", 1)[0]
            for target in re.findall(rb'from "(\.[^"]+)"', script.body):
                resolved = posixpath.normpath(posixpath.join(folder, target.decode()))
                if resolved not in seen:
                    pending.append(resolved)
        self.assertIn("vendor/uplot/uPlot.esm.js", seen)
        self.assertGreaterEqual(len(seen), 14)

    def test_script_keeps_the_token_in_session_storage_only(self) -> None:
        """The token goes to sessionStorage and an Authorization header, never a cookie."""
        script = self.h.call("GET", "/ui/static/js/api.js").body
        self.assertIn(b"sessionStorage", script)
        self.assertIn(b'"Bearer "', script)
        self.assertIn(b'credentials: "omit"', script)
        for name in ("js/api.js", "js/main.js", "js/dom.js", "js/forms.js", "js/ui.js"):
            body = self.h.call("GET", f"/ui/static/{name}").body
            self.assertNotIn(b"document.cookie", body, name)
            self.assertNotIn(b"localStorage", body, name)
            self.assertNotIn(b"innerHTML", body, name)

    def _assert_not_found(self, path: str) -> Answer:
        """``path`` is the API's JSON 404."""
        answer = self.h.call("GET", path)
        self.assertEqual(answer.status, 404, path)
        self.assertEqual(answer.header(b"content-type"), b"application/json", path)
        return answer

    def test_unknown_asset_is_404(self) -> None:
        """A name that is not a shipped asset is a JSON 404, even if the file exists."""
        for name in (
            "missing.js",
            "index.html",
            "swagger",
            "swagger/swagger-ui.css",
            "swagger/swagger-ui-bundle.js",
            ".",
            "..",
            "js",
            "js/",
        ):
            self._assert_not_found(f"/ui/static/{name}")

    def test_folder_is_not_listed(self) -> None:
        """``/ui/static/`` and ``/ui/`` list nothing."""
        for path in ("/ui/static/", "/ui/static", "/ui/", "/ui"):
            self._assert_not_found(path)

    def test_path_traversal_is_404(self) -> None:
        """Dot segments, encoded or not, never reach a file outside the asset table."""
        for path in (
            "/ui/static/../api.py",
            "/ui/static/../../admin/api.py",
            "/ui/static/..%2Fapi.py",
            "/ui/static/..%2fapi.py",
            "/ui/static/%2e%2e/api.py",
            "/ui/static/%2e%2e%2fapi.py",
            "/ui/static/%2E%2E%2F%2E%2E%2Fsetup.cfg",
            "/ui/static/..%5capi.py",
            "/ui/static/%252e%252e%252fapi.py",
            "/ui/static/app.css%00.py",
            "/ui/static//etc/passwd",
        ):
            answer = self._assert_not_found(path)
            self.assertNotIn(b"import", answer.body, path)

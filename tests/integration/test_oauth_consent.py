# treq and twisted.web are untyped; mypy strict would flag every call into them
# mypy: disable-error-code="no-untyped-call"
"""The consent and login steps of the real daemon, bound to the browser that started them.

New requirement ID, in the numbering of ``shared/reference/REQUIREMENTS.md``:

* ATK-36 [AS] Consent binding: the consent form and the GitHub login are bound to the
  browser that opened them (a ``__Host-`` cookie checked against the form's token), a
  cross-site form post (foreign or ``null`` ``Origin``, ``Sec-Fetch-Site: cross-site``)
  is refused, and no interactive page may be framed (``frame-ancestors 'none'``,
  ``X-Frame-Options: DENY``).  A plain-HTTP loopback issuer (a local trial) still works
  in a browser: its cookies drop the ``__Host-`` prefix and ``Secure``, which browsers
  refuse without TLS.

The daemon's issuer is its HTTP listener on loopback, as in a local trial.  The last test
drives headless Chromium through the whole login.
"""

from __future__ import annotations

import re
from http.cookiejar import CookieJar
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from oauthproxy.oauth.pkce import s256_challenge
from tests.integration.test_oauth_guard import (
    FORM,
    REDIRECT,
    VERIFIER,
    AuthGateway,
    start_auth_gateway,
    wait_until,
)
from tests.support.chromium import open_page

FIELDS = re.compile(r'name="(request_id|csrf_token)" value="([^"]+)"')


def authorize_url(gateway: AuthGateway, client_id: str, redirect_uri: str = REDIRECT) -> str:
    """An /authorize URL of the daemon for ``client_id`` with PKCE S256."""
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "state": "st",
            "code_challenge": s256_challenge(VERIFIER),
            "code_challenge_method": "S256",
        }
    )
    return f"{gateway.issuer}/authorize?{query}"


class ConsentBindingTests(TestCase):
    """ATK-36 through the daemon's gateway (the auth hostname)."""

    timeout = 120

    async def setUp(self) -> None:
        """A daemon, a client, and the consent page opened in "browser A"."""
        self.gateway = await start_auth_gateway(self)
        self.client_id = await self.gateway.register()
        page, body = await self.gateway.fetch("GET", authorize_url(self.gateway, self.client_id))
        assert page.code == 200, body
        self.page = page
        self.fields = dict(FIELDS.findall(body.decode()))
        self.cookies = [
            line.decode().split(";")[0] for line in page.headers.getRawHeaders(b"set-cookie") or []
        ]

    async def submit(self, cookies: list[str], **headers: str) -> Any:
        """Post the form of browser A's page with exactly ``cookies`` and ``headers``."""
        sent: Any = {**FORM, **{k.replace("_", "-"): [v] for k, v in headers.items()}}
        if cookies:
            sent["Cookie"] = ["; ".join(cookies)]
        response = await _browser(self).request(
            "POST",
            f"{self.gateway.issuer}/authorize/consent",
            headers=sent,
            data=urlencode({**self.fields, "decision": "approve"}).encode(),
            allow_redirects=False,
        )
        await response.content()
        return response

    async def test_form_from_another_browser_is_refused(self) -> None:
        """ATK-36, MCP-20: browser A's form fields, posted by browser B, reach nobody."""
        refused = await self.submit([])
        self.assertEqual(refused.code, 403)
        self.assertIsNone(refused.headers.getRawHeaders(b"location"))

    async def test_cross_site_post_is_refused(self) -> None:
        """ATK-36: even with A's cookie, a post another site made A's browser send fails."""
        for headers in (
            {"Origin": "https://evil.test"},
            {"Origin": "null"},
            {"Sec_Fetch_Site": "cross-site"},
        ):
            refused = await self.submit(self.cookies, **headers)
            self.assertEqual(refused.code, 403, headers)
            self.assertIsNone(refused.headers.getRawHeaders(b"location"))
        accepted = await self.submit(
            self.cookies, Origin=self.gateway.issuer, Sec_Fetch_Site="same-origin"
        )
        self.assertEqual(accepted.code, 303)

    async def test_interactive_pages_cannot_be_framed(self) -> None:
        """ATK-36, O21-13: the consent page and a refusal forbid framing."""
        refused = await self.submit([])
        for response in (self.page, refused):
            [policy] = response.headers.getRawHeaders(b"content-security-policy")
            self.assertIn(b"frame-ancestors 'none'", policy)
            self.assertEqual(response.headers.getRawHeaders(b"x-frame-options"), [b"DENY"])

    async def test_local_trial_cookies_are_not_secure_only(self) -> None:
        """ATK-36: on the plain-HTTP loopback issuer the flow cookie is one HTTP can keep."""
        [line] = [c for c in self.page.headers.getRawHeaders(b"set-cookie") if b"-flow=" in c]
        self.assertTrue(line.startswith(b"oauthproxy-flow="), line)
        self.assertNotIn(b"Secure", line)
        self.assertIn(b"HttpOnly", line)


class LocalTrialBrowserTests(TestCase):
    """ATK-36: a whole login over plain HTTP on loopback, cookies kept by real clients."""

    timeout = 120

    async def test_login_with_a_standard_cookie_jar(self) -> None:
        """ATK-36: a client keeping cookies by the rules (no Secure ones over HTTP) logs in."""
        gateway = await start_auth_gateway(self)
        client_id = await gateway.register()
        browser = _browser(self)

        async def fetch(method: str, url: str, **kw: Any) -> tuple[Any, bytes]:
            response = await browser.request(method, url, allow_redirects=False, **kw)
            return response, await response.content()

        page, body = await fetch("GET", authorize_url(gateway, client_id))
        self.assertEqual(page.code, 200, body)
        fields = dict(FIELDS.findall(body.decode()))
        to_github, body = await fetch(
            "POST",
            f"{gateway.issuer}/authorize/consent",
            headers=FORM,
            data=urlencode({**fields, "decision": "approve"}).encode(),
        )
        self.assertEqual(to_github.code, 303, body)
        location = to_github.headers.getRawHeaders(b"location")[0].decode()
        for _ in range(3):
            if location.startswith(REDIRECT):
                break
            step, body = await fetch("GET", location)
            self.assertIn(step.code, (302, 303), body)
            location = step.headers.getRawHeaders(b"location")[0].decode()
        self.assertTrue(location.startswith(REDIRECT), location)
        self.assertIn("code", parse_qs(urlsplit(location).query))

    async def test_login_in_chromium(self) -> None:
        """ATK-36: headless Chromium approves and logs in on the http://127.0.0.1 issuer.

        The browser sends what browsers send (``Origin``, ``Sec-Fetch-Site``, its own
        cookie rules); the client's redirect URI is a small loopback server that keeps
        the query it receives.
        """
        gateway = await start_auth_gateway(self)
        received: list[dict[str, list[str]]] = []
        redirect = await _redirect_target(self, received)
        client_id = await gateway.register(redirect)
        page = await open_page(self, authorize_url(gateway, client_id, redirect))
        await page.wait_for("document.querySelector('button[value=approve]') !== null")
        await page.click("button[value=approve]")

        async def arrived() -> bool:
            return bool(received)

        await wait_until(arrived, 15.0)
        self.assertIn("code", received[0], received)
        self.assertEqual(received[0]["iss"], [gateway.issuer])


def _browser(test: TestCase) -> HTTPClient:
    """A new client with an empty cookie jar kept by the standard rules (a new browser)."""
    pool = HTTPConnectionPool(reactor, persistent=False)
    test.addCleanup(pool.closeCachedConnections)
    return HTTPClient(Agent(reactor, pool=pool), cookiejar=CookieJar())


class _Recorder(Resource):
    """The client's redirect URI: keeps each query, answers a short page."""

    isLeaf = True

    def __init__(self, received: list[dict[str, list[str]]]) -> None:
        super().__init__()
        self.received = received

    def render_GET(self, request: Request) -> bytes:
        self.received.append(parse_qs(urlsplit(request.uri.decode()).query))
        return b"<!doctype html><title>done</title>"


async def _redirect_target(test: TestCase, received: list[dict[str, list[str]]]) -> str:
    """A loopback listener standing in for a native app's redirect URI; its URL."""
    endpoint = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
    port = await endpoint.listen(Site(_Recorder(received)))
    test.addCleanup(port.stopListening)
    return f"http://127.0.0.1:{port.getHost().port}/cb"

# trial and twisted.web are untyped; mypy strict would flag every assertion and request call
# mypy: disable-error-code="no-untyped-call"
"""Tests for the browser login of redirect-mode proxies (no sockets)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from oauthproxy.gateway.guard_login import (
    COOKIE_NAMES,
    LOGIN_COOKIE,
    SESSION_COOKIE,
    BrowserLogin,
    safe_return_path,
    strip_cookies,
)
from oauthproxy.oauth.records import OAuthClient
from tests.gateway.test_guard import claims, get, harness, oauth_proxy

ISSUER = "https://auth.example.test"
#: the names over HTTPS
SECURE_SESSION, SECURE_LOGIN = f"__Host-{SESSION_COOKIE}", f"__Host-{LOGIN_COOKIE}"


class _Response:
    """A treq response twin."""

    def __init__(self, code: int, body: dict[str, Any]) -> None:
        self.code = code
        self._body = json.dumps(body).encode()

    def content(self) -> Deferred[bytes]:
        """The body."""
        return succeed(self._body)


class _Http:
    """Records token requests; answers with ``answer``."""

    def __init__(self, answer: _Response) -> None:
        self.answer = answer
        self.posts: list[tuple[str, dict[str, list[str]]]] = []

    def post(self, url: str, data: bytes, headers: Any) -> Deferred[_Response]:
        """Record and answer."""
        self.posts.append((url, parse_qs(data.decode())))
        return succeed(self.answer)


def login(answer: _Response | None = None) -> tuple[BrowserLogin, list[OAuthClient], _Http]:
    """A BrowserLogin with recording fakes."""
    registered: list[OAuthClient] = []

    def register(client: OAuthClient) -> Deferred[None]:
        registered.append(client)
        return succeed(None)

    http = _Http(answer or _Response(200, {"access_token": "tok", "expires_in": 60}))
    return BrowserLogin(ISSUER, b"k" * 32, Clock(), http, register), registered, http


def cookies(request: Any) -> dict[str, str]:
    """name -> whole Set-Cookie line."""
    lines = request.responseHeaders.getRawHeaders(b"set-cookie") or []
    return {line.decode().split("=")[0]: line.decode() for line in lines}


class PureTests(SynchronousTestCase):
    """The helpers."""

    def test_return_path_is_same_origin_only(self) -> None:
        """No open redirect: URLs and scheme-relative paths become ``/``."""
        self.assertEqual(safe_return_path("/a?b=1"), "/a?b=1")
        self.assertEqual(safe_return_path("//evil.test/x"), "/")
        self.assertEqual(safe_return_path("https://evil.test/"), "/")
        self.assertEqual(safe_return_path("/\\evil.test"), "/")
        self.assertEqual(safe_return_path(None), "/")

    def test_strip_cookies_keeps_the_others(self) -> None:
        """Our cookies go, under every name they may have; the application's stay."""
        request: Any = DummyRequest([b""])
        ours = "; ".join(f"{name}=t" for name in COOKIE_NAMES)
        request.requestHeaders.setRawHeaders(b"cookie", [f"{ours}; theme=dark".encode()])
        strip_cookies(request, *COOKIE_NAMES)
        self.assertEqual(request.requestHeaders.getRawHeaders(b"cookie"), [b"theme=dark"])


class FlowTests(SynchronousTestCase):
    """Start and finish of a login."""

    def start(self, flow: BrowserLogin, secure: bool = True) -> Any:
        """Start a login for ``/notes`` (over HTTPS unless ``secure`` is False)."""
        request = self.request(b"/notes", secure)
        origin = f"{'https' if secure else 'http'}://web.example.test"
        flow.start(request, "web.example.test", origin, origin)
        return request

    def request(self, uri: bytes, secure: bool = True) -> Any:
        """A request for ``uri``, over HTTPS unless ``secure`` is False."""
        request: Any = DummyRequest([b""])
        request.uri = uri
        request.isSecure = lambda: secure
        return request

    def test_start_redirects_with_pkce_and_resource(self) -> None:
        """O21-1, MCP-11: S256 challenge, state and the proxy's resource go to /authorize."""
        flow, registered, _ = login()
        request = self.start(flow)
        self.assertEqual(request.responseCode, 302)
        location = request.responseHeaders.getRawHeaders(b"location")[0].decode()
        query = parse_qs(urlsplit(location).query)
        self.assertTrue(location.startswith(f"{ISSUER}/authorize?"))
        self.assertEqual(query["code_challenge_method"], ["S256"])
        self.assertEqual(query["resource"], ["https://web.example.test"])
        self.assertEqual(query["redirect_uri"], ["https://web.example.test/.oauthproxy/callback"])
        [client] = registered
        self.assertEqual(client.redirect_uris, ("https://web.example.test/.oauthproxy/callback",))
        self.assertIn("Secure; HttpOnly", cookies(request)[SECURE_LOGIN])

    def finish(self, flow: BrowserLogin, started: Any, **override: str) -> Any:
        """Come back to the callback with the started login's state and cookie."""
        location = started.responseHeaders.getRawHeaders(b"location")[0].decode()
        state = parse_qs(urlsplit(location).query)["state"][0]
        secure = started.isSecure()
        name = SECURE_LOGIN if secure else LOGIN_COOKIE
        cookie = cookies(started)[name].split(";")[0].split("=", 1)[1]
        params = {"code": "c", "state": state, "iss": ISSUER, **override}
        query = "&".join(f"{k}={v}" for k, v in params.items())
        request = self.request(f"/.oauthproxy/callback?{query}".encode(), secure)
        origin = f"{'https' if secure else 'http'}://web.example.test"
        flow.finish(request, "web.example.test", origin, origin, cookie)
        return request

    def test_finish_sets_session_and_returns(self) -> None:
        """ATK-32: the token becomes a host-bound session cookie; back to the page."""
        flow, _, http = login()
        request = self.finish(flow, self.start(flow))
        self.assertEqual(request.responseCode, 302)
        self.assertEqual(request.responseHeaders.getRawHeaders(b"location"), [b"/notes"])
        session = cookies(request)[SECURE_SESSION]
        self.assertTrue(session.startswith(f"{SECURE_SESSION}=tok;"))
        self.assertIn("Secure; HttpOnly", session)
        self.assertNotIn("Domain", session)
        [(url, form)] = http.posts
        self.assertEqual(url, f"{ISSUER}/token")
        self.assertEqual(form["grant_type"], ["authorization_code"])
        self.assertIn("code_verifier", form)

    def test_plain_http_login_uses_cookies_browsers_keep(self) -> None:
        """On an HTTP-only proxy (a local trial) the cookies have no ``__Host-``/``Secure``.

        Browsers drop ``Secure`` cookies set over plain HTTP, so the login would loop.
        """
        flow, _, _ = login()
        started = self.start(flow, secure=False)
        self.assertNotIn("Secure", cookies(started)[LOGIN_COOKIE])
        request = self.finish(flow, started)
        self.assertEqual(request.responseCode, 302)
        session = cookies(request)[SESSION_COOKIE]
        self.assertTrue(session.startswith(f"{SESSION_COOKIE}=tok;"))
        self.assertIn("HttpOnly; SameSite=Lax", session)
        self.assertNotIn("Secure", session)

    def test_wrong_state_refused(self) -> None:
        """ATK-23: a state this browser did not start is refused; no code is redeemed."""
        flow, _, http = login()
        request = self.finish(flow, self.start(flow), state="other")
        self.assertEqual(request.responseCode, 403)
        self.assertEqual(http.posts, [])

    def test_other_issuer_refused(self) -> None:
        """O21-15 (RFC 9207): an ``iss`` that is not ours is refused."""
        flow, _, http = login()
        request = self.finish(flow, self.start(flow), iss="https://evil.test")
        self.assertEqual(request.responseCode, 403)
        self.assertEqual(http.posts, [])

    def test_expired_login_refused(self) -> None:
        """A login cookie past its lifetime is refused."""
        flow, _, _ = login()
        started = self.start(flow)
        flow.clock.advance(601)  # type: ignore[attr-defined]
        self.assertEqual(self.finish(flow, started).responseCode, 403)


class GuardRedirectModeTests(SynchronousTestCase):
    """The guard's use of the login for redirect-mode proxies."""

    def test_browser_without_session_goes_to_login(self) -> None:
        """A browser navigation gets a redirect to our authorize endpoint, not a 401."""
        h = harness(oauth_proxy(auth_mode="redirect"))
        h.guard.login, _, _ = login()
        d = h.client().get(
            "https://mcp.example.test/",
            headers={"Host": "mcp.example.test", "Accept": "text/html"},
            allow_redirects=False,
        )
        response = self.successResultOf(d)
        self.assertEqual(response.code, 302)
        [location] = response.headers.getRawHeaders("location")
        self.assertTrue(location.startswith(f"{ISSUER}/authorize?"))

    def test_api_client_still_gets_401(self) -> None:
        """MCP-2: a non-browser client of a redirect-mode proxy gets the 401 challenge."""
        h = harness(oauth_proxy(auth_mode="redirect"))
        h.guard.login, _, _ = login()
        self.assertEqual(get(h, "/", Accept="application/json").code, 401)

    def test_session_cookie_admits_and_is_not_forwarded(self) -> None:
        """The session cookie is checked like a bearer token and removed before forwarding."""
        h = harness(oauth_proxy(auth_mode="redirect"))
        h.guard.login, _, _ = login()
        h.verifier.tokens["tok"] = claims()
        response = get(h, "/", Accept="text/html", Cookie=f"{SECURE_SESSION}=tok; a=b")
        self.assertEqual(response.code, 200)
        [(_d, seen)] = h.forwarded
        self.assertEqual(seen["cookie"], ["a=b"])
        self.assertEqual(seen["x-auth-user"], ["alice"])

    def test_session_cookie_ignored_in_forward_mode(self) -> None:
        """MCP-16: outside redirect mode a cookie is never a credential."""
        h = harness(oauth_proxy())
        h.verifier.tokens["tok"] = claims()
        self.assertEqual(get(h, "/", Cookie=f"{SECURE_SESSION}=tok").code, 401)

    def test_cookie_tossed_over_plain_http_is_no_session_over_https(self) -> None:
        """Over HTTPS only the ``__Host-`` name counts (a plain one can be set by anyone)."""
        h = harness(oauth_proxy(auth_mode="redirect"))
        h.guard.login, _, _ = login()
        h.verifier.tokens["tok"] = claims()
        response = get(h, "/", Accept="application/json", Cookie=f"{SESSION_COOKIE}=tok")
        self.assertEqual(response.code, 401)
        self.assertEqual(h.forwarded, [])

# treq and twisted.web are untyped; mypy strict would flag every call into them
# mypy: disable-error-code="no-untyped-call"
"""The guard inside the real daemon: OAuth-protected proxies, tokens from our own server.

One ``twistd -n oauthproxy`` (embedded redis-server) serves the gateway on a loopback HTTP
port; its issuer is ``http://127.0.0.1:<port>`` (the gateway's auth hostname, plain HTTP
being allowed on loopback), GitHub is the fake on loopback.  A user logs in the way a
browser and an MCP client would (DCR, consent with its CSRF token, GitHub, callback, code
with PKCE), and the tokens are then used against OAuth-protected proxies in front of an
echo backend.  The test carries the login's cookies by hand.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from attrs import define
from treq.client import HTTPClient
from twisted.internet import reactor, task
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool, ResponseNeverReceived
from twisted.web.server import Site

from oauthproxy.oauth.pkce import s256_challenge
from tests.integration.test_gateway_websocket import echo_server
from tests.support.backends import Backend, start_backend
from tests.support.daemon import DaemonProcess, free_port, start_daemon
from tests.support.fake_github import FakeGitHub, FakeUser, start_fake_github
from tests.support.tls import raw_exchange

REDIRECT = "http://127.0.0.1:50123/cb"
VERIFIER = "v" * 43
FORM = {"Content-Type": ["application/x-www-form-urlencoded"]}
JSON = {"Content-Type": ["application/json"]}
LOOPBACK_ACME = {
    "ACME_DIRECTORY_URL": "https://127.0.0.1:1/directory",
    "ACME_STAGING_URL": "https://127.0.0.1:1/directory",
}


@define
class AuthGateway:
    """A daemon whose gateway serves protected proxies and its own authorization server."""

    daemon: DaemonProcess
    http: HTTPClient
    port: int
    github: FakeGitHub
    #: the admin token
    admin: str

    @property
    def issuer(self) -> str:
        """The issuer: the gateway's HTTP listener on loopback."""
        return f"http://127.0.0.1:{self.port}"

    def resource(self, host: str) -> str:
        """The resource URI of an HTTP-only proxy for ``host``: its URL at our listener."""
        return f"http://{host}:{self.port}"

    async def fetch(
        self, method: str, url: str, headers: Any = None, **kw: Any
    ) -> tuple[Any, bytes]:
        """One request without following redirects: ``(response, body)``."""
        response = await self.http.request(
            method, url, headers=headers or {}, allow_redirects=False, timeout=10, **kw
        )
        return response, await response.content()

    async def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """The admin API as the admin."""
        headers = {"Authorization": [f"Bearer {self.admin}"], **JSON}
        data = json.dumps(body).encode() if body is not None else None
        response, content = await self.fetch(
            method, self.daemon.api_url + path, headers=headers, data=data
        )
        return response.code, json.loads(content) if content else None

    async def protect(self, hostname: str, backend: Backend, **auth: Any) -> None:
        """Create an HTTP proxy for ``hostname`` with OAuth required."""
        code, body = await self.api(
            "POST",
            "/proxy/targets/",
            {"hostname": hostname, "target_url": backend.url, "enable_https": False},
        )
        assert code == 201, body
        await self.set_auth(hostname, **auth)
        await wait_until(lambda: self._protected(hostname), 1.0)

    async def _protected(self, hostname: str) -> bool:
        return bool((await self.call(hostname)).code == 401)

    async def set_auth(self, hostname: str, **auth: Any) -> None:
        """Set the proxy's auth settings."""
        settings = {"auth_type": "oauth", "auth_mode": "forward", **auth}
        code, body = await self.api("POST", f"/proxy/targets/{hostname}/auth", settings)
        assert code in (200, 201), body

    async def call(self, host: str, path: str = "/", token: str | None = None) -> Any:
        """``GET`` on the gateway for ``host``; the response."""
        headers: Any = {"Host": [host]}
        if token is not None:
            headers["Authorization"] = [f"Bearer {token}"]
        response, body = await self.fetch(
            "GET", f"http://127.0.0.1:{self.port}{path}", headers=headers
        )
        response.body = body
        return response

    async def register(self, redirect_uri: str = REDIRECT, refresh: bool = False) -> str:
        """A public client registered with DCR (RFC 7591); its client_id.

        ``refresh``: the client may use refresh tokens (it gets them).
        """
        metadata: dict[str, Any] = {
            "redirect_uris": [redirect_uri],
            "client_name": "guard test",
            "token_endpoint_auth_method": "none",
        }
        if refresh:
            metadata["grant_types"] = ["authorization_code", "refresh_token"]
        response, body = await self.fetch(
            "POST", f"{self.issuer}/register", headers=JSON, data=json.dumps(metadata).encode()
        )
        assert response.code == 201, body
        client_id: str = json.loads(body)["client_id"]
        return client_id

    async def authorize(self, client_id: str, resource: str) -> dict[str, list[str]]:
        """Consent, GitHub, callback: the query our server redirected the client to."""
        query = urlencode(
            {
                "response_type": "code",
                "client_id": client_id,
                "redirect_uri": REDIRECT,
                "state": "st",
                "code_challenge": s256_challenge(VERIFIER),
                "code_challenge_method": "S256",
                "resource": resource,
            }
        )
        location = await self.browse(f"{self.issuer}/authorize?{query}")
        return parse_qs(urlsplit(location).query)

    async def browse(self, authorize: str) -> str:
        """Follow an authorize URL as a browser (consent if shown, GitHub, our callback).

        The browser's cookies for the issuer (the consent flow's, the login's) are kept
        and sent back as a browser would.  Returns where our server finally redirects it.
        """
        jar: dict[str, str] = {}
        response, page = await self.fetch("GET", authorize)
        jar.update(_set_cookies(response))
        if response.code == 200:
            fields = dict(
                re.findall(r'name="(request_id|csrf_token)" value="([^"]+)"', page.decode())
            )
            assert len(fields) == 2, page
            response, _ = await self.fetch(
                "POST",
                f"{self.issuer}/authorize/consent",
                headers={**FORM, "Cookie": [_cookie_header(jar)]},
                data=urlencode({**fields, "decision": "approve"}).encode(),
            )
            jar.update(_set_cookies(response))
        location = response.headers.getRawHeaders(b"location")
        assert location, (response.code, page)
        at_github, _ = await self.fetch("GET", location[0])
        callback = at_github.headers.getRawHeaders(b"location")[0].decode()
        back, body = await self.fetch("GET", callback, headers={"Cookie": [_cookie_header(jar)]})
        location = back.headers.getRawHeaders(b"location")
        assert location, (back.code, body)
        return str(location[0].decode())

    async def redeem(self, client_id: str, code: str) -> tuple[int, Any]:
        """Redeem ``code`` with PKCE: ``(status, JSON body)``, whatever the outcome."""
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "client_id": client_id,
            "redirect_uri": REDIRECT,
            "code_verifier": VERIFIER,
        }
        response, body = await self.fetch(
            "POST", f"{self.issuer}/token", headers=FORM, data=urlencode(form).encode()
        )
        return response.code, json.loads(body)

    async def token(self, client_id: str, code: str) -> dict[str, Any]:
        """Redeem ``code`` with PKCE; the token response (it must succeed)."""
        status, tokens = await self.redeem(client_id, code)
        assert status == 200, tokens
        result: dict[str, Any] = tokens
        return result

    async def login(self, resource: str) -> tuple[str, str]:
        """A registered client and an access token for ``resource``."""
        client_id = await self.register()
        params = await self.authorize(client_id, resource)
        assert "code" in params, params
        return client_id, (await self.token(client_id, params["code"][0]))["access_token"]


async def start_auth_gateway(
    test: TestCase, user: str = "alice", *, args: Sequence[str] = (), **env: str
) -> AuthGateway:
    """Fake GitHub, then a daemon with its gateway on a free port and its issuer there.

    ``args`` are more ``twistd oauthproxy`` options (another listener, say).
    """
    github = FakeGitHub("gh-id", "gh-secret", FakeUser(7, user))
    running = await start_fake_github(reactor, github)
    test.addCleanup(running.stop)
    port = free_port()
    environment = {
        **LOOPBACK_ACME,
        "OAUTHPROXY_OAUTH_ISSUER": f"http://127.0.0.1:{port}",
        "GITHUB_CLIENT_ID": "gh-id",
        "GITHUB_CLIENT_SECRET": "gh-secret",
        "OAUTHPROXY_GITHUB_BASE_URL": running.base_url,
        "OAUTHPROXY_GITHUB_API_URL": running.base_url,
        **env,
    }
    listeners = ["--http", f"tcp:{port}:interface=127.0.0.1", *args]
    daemon = await start_daemon(test, args=listeners, env=environment)
    await daemon.wait_for(lambda body: "http" in body.get("listeners", {}))
    pool = HTTPConnectionPool(reactor, persistent=False)
    test.addCleanup(pool.closeCachedConnections)
    http = HTTPClient(Agent(reactor, pool=pool))
    token = daemon.admin_token
    assert token is not None, "\n".join(daemon.output[-20:])
    gateway = AuthGateway(daemon, http, port, github, token)
    await wait_until(lambda: _metadata_served(gateway), 10.0)
    return gateway


async def _metadata_served(gateway: AuthGateway) -> bool:
    response, _ = await gateway.fetch(
        "GET", f"{gateway.issuer}/.well-known/oauth-authorization-server"
    )
    return bool(response.code == 200)


async def wait_until(predicate: Any, timeout: float) -> float:
    """Poll the async ``predicate`` every 50 ms; seconds taken, fails after ``timeout``."""
    started = reactor.seconds()
    while reactor.seconds() - started <= timeout:
        if await predicate():
            return float(reactor.seconds() - started)
        await task.deferLater(reactor, 0.05, lambda: None)
    raise AssertionError(f"condition not met within {timeout} s")


class OAuthGuardDaemonTests(TestCase):
    """Protected proxies of a real daemon, with tokens from its own authorization server."""

    timeout = 120

    async def test_token_admits_and_identity_reaches_backend(self) -> None:
        """MCP-2, MCP-19, BCP-6: 401 + metadata, then the token passes; backend sees identity."""
        gateway = await start_auth_gateway(self)
        backend = await start_backend(self, reactor)
        await gateway.protect("a.test", backend)
        refused = await gateway.call("a.test", "/mcp")
        self.assertEqual(refused.code, 401)
        [challenge] = refused.headers.getRawHeaders(b"www-authenticate")
        expected = (
            f'resource_metadata="{gateway.resource("a.test")}/.well-known/oauth-protected-resource"'
        )
        self.assertIn(expected.encode(), challenge)
        metadata = await gateway.call("a.test", "/.well-known/oauth-protected-resource")
        self.assertEqual(json.loads(metadata.body)["authorization_servers"], [gateway.issuer])
        _, token = await gateway.login(gateway.resource("a.test"))
        admitted = await gateway.call("a.test", "/mcp", token)
        self.assertEqual(admitted.code, 200, admitted.body)
        headers = {name.lower(): value for name, value in json.loads(admitted.body)["headers"]}
        self.assertEqual(headers["x-auth-user"], "alice")
        self.assertNotIn("authorization", headers)

    async def test_request_log_knows_the_user_the_guard_admitted(self) -> None:
        """The guard's user reaches the request log: ``/logs/user/alice`` finds the request."""
        gateway = await start_auth_gateway(self)
        backend = await start_backend(self, reactor)
        await gateway.protect("a.test", backend)
        _, token = await gateway.login(gateway.resource("a.test"))
        self.assertEqual((await gateway.call("a.test", "/logged", token)).code, 200)

        async def logged() -> bool:
            code, body = await gateway.api("GET", "/logs/user/alice")
            return code == 200 and any(item["path"] == "/logged" for item in body["items"])

        await wait_until(logged, 5.0)  # the writer flushes every second

    async def test_token_for_proxy_a_refused_by_proxy_b(self) -> None:
        """ATK-21, MCP-17: the audience is the proxy's resource URL; B refuses A's token."""
        gateway = await start_auth_gateway(self)
        backend = await start_backend(self, reactor)
        await gateway.protect("a.test", backend)
        await gateway.protect("b.test", backend)
        _, token = await gateway.login(gateway.resource("a.test"))
        self.assertEqual((await gateway.call("a.test", "/", token)).code, 200)
        self.assertEqual((await gateway.call("b.test", "/", token)).code, 401)

    async def test_user_not_on_allowlist_gets_no_token_and_403(self) -> None:
        """BCP-3, MCP-11: no token with B in its audience for alice; an older one gets 403."""
        gateway = await start_auth_gateway(self)
        backend = await start_backend(self, reactor)
        await gateway.protect("b.test", backend)
        _, earlier = await gateway.login(gateway.resource("b.test"))
        await gateway.set_auth("b.test", required_users=["bob"])
        await wait_until(
            lambda: status_is(gateway, "b.test", earlier, 403),
            1.0,
        )
        client_id = await gateway.register()
        params = await gateway.authorize(client_id, gateway.resource("b.test"))
        self.assertNotIn("code", params)
        self.assertEqual(params["error"], ["invalid_target"])

    async def test_revoked_token_refused_within_a_second(self) -> None:
        """MCP-17, ATK-27: after RFC 7009 revocation the proxy refuses the token within 1 s."""
        gateway = await start_auth_gateway(self)
        backend = await start_backend(self, reactor)
        await gateway.protect("a.test", backend)
        client_id, token = await gateway.login(gateway.resource("a.test"))
        self.assertEqual((await gateway.call("a.test", "/", token)).code, 200)
        form = urlencode({"token": token, "client_id": client_id}).encode()
        revoked, _ = await gateway.fetch("POST", f"{gateway.issuer}/revoke", FORM, data=form)
        self.assertEqual(revoked.code, 200)
        await wait_until(lambda: status_is(gateway, "a.test", token, 401), 1.0)

    async def test_oauth_metrics_count_the_issuer_served_by_the_gateway(self) -> None:
        """The OAuth counters see the authorization server where clients reach it.

        Here the issuer is the gateway's own listener (as behind ``auth_proxy``), not the
        admin API: registration, the token and its revocation are all counted.
        """
        gateway = await start_auth_gateway(self)
        await gateway.protect("a.test", await start_backend(self, reactor))
        client_id, token = await gateway.login(gateway.resource("a.test"))
        form = urlencode({"token": token, "client_id": client_id}).encode()
        revoked, _ = await gateway.fetch("POST", f"{gateway.issuer}/revoke", FORM, data=form)
        self.assertEqual(revoked.code, 200)
        refused, _ = await gateway.redeem(client_id, "no-such-code")
        self.assertEqual(refused, 400)
        status, text = await gateway.daemon.get("/metrics", gateway.admin)
        self.assertEqual(status, 200)
        samples = dict(
            line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("oauthproxy_oauth")
        )
        self.assertEqual(
            [
                samples.get(
                    'oauthproxy_oauth_tokens_issued_total{grant_type="authorization_code"}'
                ),
                samples.get('oauthproxy_oauth_token_refusals_total{status="400"}'),
                samples.get("oauthproxy_oauth_registrations_total"),
                samples.get("oauthproxy_oauth_revocations_total"),
            ],
            ["1.0", "1.0", "1.0", "1.0"],
            samples,
        )

    async def test_stream_cut_when_token_expires(self) -> None:
        """ATK-27: an SSE response outliving its token is cut at the token's expiry."""
        gateway = await start_auth_gateway(self, OAUTH_ACCESS_TOKEN_LIFETIME="2")
        backend = await start_backend(self, reactor)
        await gateway.protect("a.test", backend)
        _, token = await gateway.login(gateway.resource("a.test"))
        headers: Any = {"Host": ["a.test"], "Authorization": [f"Bearer {token}"]}
        response = await gateway.http.request(
            "GET",
            f"http://127.0.0.1:{gateway.port}/sse",
            headers=headers,
            timeout=10,
        )
        self.assertEqual(response.code, 200)
        body = response.content()
        await wait_until(lambda: _fired(body), 4.0)
        self.failureResultOf(body)

    async def test_stream_cut_when_token_revoked(self) -> None:
        """ATK-27, MCP-17: revoking the token of an open SSE stream cuts it within 1 s."""
        gateway = await start_auth_gateway(self)
        backend = await start_backend(self, reactor)
        await gateway.protect("a.test", backend)
        client_id, token = await gateway.login(gateway.resource("a.test"))
        headers: Any = {"Host": ["a.test"], "Authorization": [f"Bearer {token}"]}
        response = await gateway.http.request(
            "GET", f"http://127.0.0.1:{gateway.port}/sse", headers=headers, timeout=10
        )
        self.assertEqual(response.code, 200)
        body = response.content()
        form = urlencode({"token": token, "client_id": client_id}).encode()
        revoked, _ = await gateway.fetch("POST", f"{gateway.issuer}/revoke", FORM, data=form)
        self.assertEqual(revoked.code, 200)
        await wait_until(lambda: _fired(body), 1.0)
        self.failureResultOf(body)

    async def test_websocket_cut_when_token_expires(self) -> None:
        """ATK-27: a WebSocket tunnel opened with a token is closed when the token expires."""
        gateway = await start_auth_gateway(self, OAUTH_ACCESS_TOKEN_LIFETIME="3")
        site = Site(echo_server())
        upstream = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(site)
        self.addCleanup(upstream.stopListening)
        code, body = await gateway.api(
            "POST",
            "/proxy/targets/",
            {
                "hostname": "ws.test",
                "target_url": f"http://127.0.0.1:{upstream.getHost().port}",
                "enable_https": False,
            },
        )
        self.assertEqual(code, 201, body)
        await gateway.set_auth("ws.test")
        await wait_until(lambda: gateway._protected("ws.test"), 1.0)
        _, token = await gateway.login(gateway.resource("ws.test"))
        upgrade = (
            b"GET /chat HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer " + token.encode() + b"\r\n\r\n"
        )
        started = reactor.seconds()
        received = await raw_exchange(reactor, gateway.port, upgrade, timeout=10.0)
        self.assertTrue(received.startswith(b"HTTP/1.1 101"), received[:200])
        # open until the token's exp (about 3 s after login), then cut well before 10 s
        self.assertGreater(reactor.seconds() - started, 1.0)
        self.assertLess(reactor.seconds() - started, 5.0)

        # an upgraded request never finishes as HTTP: the tunnel is logged when it ends
        async def tunnel_logged() -> bool:
            _, found = await gateway.api("GET", "/logs/host/ws.test")
            return any(r["status"] == 101 for r in found["items"])

        await wait_until(tunnel_logged, 5.0)
        _, found = await gateway.api("GET", "/logs/host/ws.test")
        [record] = [r for r in found["items"] if r["status"] == 101]
        self.assertEqual(
            (record["method"], record["path"], record["user"]), ("GET", "/chat", "alice")
        )
        self.assertGreater(record["duration"], 1.0)  # the tunnel's lifetime
        self.assertTrue(record["upstream"].startswith("http://127.0.0.1:"), record)

    async def test_browser_login_keeps_a_host_bound_session(self) -> None:
        """ATK-32, MCP-19, BCP-6: redirect mode logs a browser in, then a session cookie.

        The proxy is plain HTTP (a local trial), so the cookies are the ones browsers keep
        there: no ``__Host-`` prefix and no ``Secure`` (an HTTPS proxy's have both).
        """
        gateway = await start_auth_gateway(self)
        backend = await start_backend(self, reactor)
        await gateway.protect("web.test", backend, auth_mode="redirect")
        page: Any = {"Host": ["web.test"], "Accept": ["text/html"]}
        url = f"http://127.0.0.1:{gateway.port}/notes?x=1"
        first, _ = await gateway.fetch("GET", url, page)
        self.assertEqual(first.code, 302)
        authorize = first.headers.getRawHeaders(b"location")[0].decode()
        self.assertTrue(authorize.startswith(f"{gateway.issuer}/authorize?"), authorize)
        guard_cookie = _cookie(first, b"oauthproxy-guard")
        callback = await gateway.browse(authorize)
        parts = urlsplit(callback)
        self.assertEqual(
            f"{parts.scheme}://{parts.netloc}{parts.path}",
            f"{gateway.resource('web.test')}/.oauthproxy/callback",
        )
        back, body = await gateway.fetch(
            "GET",
            f"http://127.0.0.1:{gateway.port}{parts.path}?{parts.query}",
            {**page, "Cookie": [guard_cookie]},
        )
        self.assertEqual(back.code, 302, body)
        self.assertEqual(back.headers.getRawHeaders(b"location"), [b"/notes?x=1"])
        [line] = [
            v
            for v in back.headers.getRawHeaders(b"set-cookie")
            if v.startswith(b"oauthproxy-session=")
        ]
        self.assertNotIn(b"Secure", line)
        self.assertIn(b"HttpOnly", line)
        self.assertNotIn(b"Domain", line)
        session = line.decode().split(";")[0]
        admitted, echoed = await gateway.fetch(
            "GET", url, {**page, "Cookie": [session + "; theme=dark"]}
        )
        self.assertEqual(admitted.code, 200, echoed)
        headers = {n.lower(): v for n, v in json.loads(echoed)["headers"]}
        self.assertEqual(headers["x-auth-user"], "alice")
        self.assertEqual(headers["cookie"], "theme=dark")
        gateway.http._cookiejar.clear()  # an API client: no browser session
        api, _ = await gateway.fetch("GET", url, {"Host": ["web.test"]})
        self.assertEqual(api.code, 401)

    async def test_forged_callback_refused(self) -> None:
        """ATK-23: a callback without this browser's login cookie is refused."""
        gateway = await start_auth_gateway(self)
        backend = await start_backend(self, reactor)
        await gateway.protect("web.test", backend, auth_mode="redirect")
        forged, _ = await gateway.fetch(
            "GET",
            f"http://127.0.0.1:{gateway.port}/.oauthproxy/callback?code=c&state=s",
            {"Host": ["web.test"], "Accept": ["text/html"]},
        )
        self.assertEqual(forged.code, 403)


def _set_cookies(response: Any) -> dict[str, str]:
    """The cookies a response sets: name -> value."""
    found = {}
    for line in response.headers.getRawHeaders(b"set-cookie") or []:
        name, _, rest = line.decode().partition("=")
        found[name] = rest.split(";")[0]
    return found


def _cookie_header(jar: dict[str, str]) -> str:
    """A ``Cookie`` header carrying ``jar``."""
    return "; ".join(f"{name}={value}" for name, value in jar.items())


def _cookie(response: Any, name: bytes) -> str:
    """``name=value`` of a cookie the response sets."""
    for line in response.headers.getRawHeaders(b"set-cookie") or []:
        if line.startswith(name + b"="):
            return str(line.decode().split(";")[0])
    raise AssertionError(f"no {name!r} cookie")


async def status_is(gateway: AuthGateway, host: str, token: str, status: int) -> bool:
    """Whether a ``GET`` with ``token`` answers ``status`` now.

    A request in flight when its token is revoked is cut (ATK-27: streams do not outlive
    their token), so a lost connection means "ask again", not a failure.
    """
    try:
        response = await gateway.call(host, "/", token)
    except ResponseNeverReceived:
        return False
    return bool(response.code == status)


async def _fired(d: Any) -> bool:
    return bool(d.called)

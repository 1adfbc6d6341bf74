"""A whole login over real sockets: OAuthServer on loopback, Redis, the fake GitHub on loopback.

The client side is plain treq with its own pool: it registers (DCR), follows the browser
steps by hand (consent form, GitHub, callback, carrying the ``__Host-`` cookies itself
since they are ``Secure`` and the test speaks plain HTTP to an https issuer), redeems the code
with PKCE, and replays it.  A second daemon's mirror on the same Redis must then refuse
the first access token (O21-6, MCP-17).
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.server import Site

from oauthproxy.oauth.github import GitHubApp, GitHubClient
from oauthproxy.oauth.keys import ensure_signing_key
from oauthproxy.oauth.pkce import s256_challenge
from oauthproxy.oauth.resource_http import OAuthSettings
from oauthproxy.oauth.server import OAuthServer
from oauthproxy.oauth.verifier import SnapshotVerifier
from oauthproxy.storage.crypto import SecretBox
from oauthproxy.storage.mirror import Mirror
from oauthproxy.storage.redis import RedisStorage, connect_storage
from tests.integration.test_oauth_revocation import within
from tests.support.fake_github import FakeGitHub, FakeUser, start_fake_github
from tests.support.redis import RedisServer

ISSUER = "https://auth.example.test"
REDIRECT = "http://127.0.0.1:50123/cb"
VERIFIER = "z" * 43
JSON: dict[bytes | str, bytes | str] = {"Content-Type": "application/json"}
FORM: dict[bytes | str, bytes | str] = {"Content-Type": "application/x-www-form-urlencoded"}


class LoginOverSocketsTests(TestCase):
    """The browser and client steps against a listening server."""

    def setUp(self) -> None:
        """A private redis-server, a box and an HTTP client with its own pool."""
        self.redis = RedisServer.for_test(self)
        self.box = SecretBox.generate()
        pool = HTTPConnectionPool(reactor, persistent=False)  # type: ignore[no-untyped-call]
        self.addCleanup(pool.closeCachedConnections)
        self.http = HTTPClient(Agent(reactor, pool=pool))  # type: ignore[no-untyped-call]

    def connect(self) -> RedisStorage:
        """One daemon's storage connection."""
        storage = connect_storage(self.redis.address(), self.box, 5.0, reactor)
        self.addCleanup(storage.close)
        return storage

    async def mirror(self, storage: RedisStorage) -> Mirror:
        """A loaded, running mirror."""
        mirror = Mirror(storage, reactor, block=0.5, initial_delay=0.1, max_delay=1.0)
        mirror.startService()
        self.addCleanup(mirror.stopService)
        await mirror.when_loaded()
        return mirror

    async def start_server(self, storage: RedisStorage, github_url: str) -> str:
        """The OAuth server on a loopback port; its base URL."""
        key = await ensure_signing_key(
            storage.oauth, self.box, configured_pem_b64=None, now=reactor.seconds()
        )
        app = GitHubApp("gh-id", "gh-secret", base_url=github_url, api_url=github_url)
        self.server = OAuthServer(
            OAuthSettings(issuer=ISSUER, github=app, secret=b"k" * 32),
            storage.oauth,
            await self.mirror(storage),
            reactor,
            GitHubClient(self.http, app, reactor),
            key,
        )
        endpoint = TCP4ServerEndpoint(  # type: ignore[no-untyped-call]
            reactor, 0, interface="127.0.0.1"
        )
        site = Site(self.server.resource())  # type: ignore[no-untyped-call]
        port = await endpoint.listen(site)  # type: ignore[no-untyped-call]
        self.addCleanup(port.stopListening)
        return f"http://127.0.0.1:{port.getHost().port}"

    async def fetch(self, method: str, url: str, **kwargs: Any) -> tuple[Any, bytes]:
        """One request without following redirects: ``(response, body)``."""
        response = await self.http.request(method, url, allow_redirects=False, **kwargs)
        return response, await response.content()

    async def test_login_code_token_and_replay_revocation(self) -> None:
        """MCP-20, O21-1, O21-6, MCP-17, MCP-19: full login; a code replay revokes everywhere."""
        github = await start_fake_github(
            reactor, FakeGitHub("gh-id", "gh-secret", FakeUser(5, "alice"))
        )
        self.addCleanup(github.stop)
        storage = self.connect()
        base = await self.start_server(storage, github.base_url)
        _, body = await self.fetch(
            "POST",
            f"{base}/register",
            data=json.dumps(
                {
                    "redirect_uris": [REDIRECT],
                    "client_name": "Sock",
                    "token_endpoint_auth_method": "none",
                }
            ).encode(),
            headers=JSON,
        )
        client_id = json.loads(body)["client_id"]
        query = urlencode(
            {
                "response_type": "code",
                "client_id": client_id,
                "redirect_uri": REDIRECT,
                "state": "s1",
                "code_challenge": s256_challenge(VERIFIER),
                "code_challenge_method": "S256",
            }
        )
        consent, page = await self.fetch("GET", f"{base}/authorize?{query}")
        fields = dict(re.findall(r'name="(request_id|csrf_token)" value="([^"]+)"', page.decode()))
        flow_cookie = next(
            line.decode().split(";")[0]
            for line in consent.headers.getRawHeaders(b"set-cookie")
            if line.startswith(b"__Host-oauthproxy-flow=")
        )
        to_github, _ = await self.fetch(
            "POST",
            f"{base}/authorize/consent",
            data=urlencode({**fields, "decision": "approve"}).encode(),
            headers={**FORM, "Cookie": flow_cookie},
        )
        login_cookie = next(
            line.decode().split(";")[0]
            for line in to_github.headers.getRawHeaders(b"set-cookie")
            if line.startswith(b"__Host-oauthproxy-login=")
        )
        at_github, _ = await self.fetch("GET", to_github.headers.getRawHeaders(b"location")[0])
        callback = urlsplit(at_github.headers.getRawHeaders(b"location")[0].decode())
        self.assertEqual(f"{callback.scheme}://{callback.netloc}", ISSUER)
        back, _ = await self.fetch(
            "GET", f"{base}{callback.path}?{callback.query}", headers={"Cookie": login_cookie}
        )
        params = parse_qs(urlsplit(back.headers.getRawHeaders(b"location")[0].decode()).query)
        self.assertEqual(params["iss"], [ISSUER])
        form = urlencode(
            {
                "grant_type": "authorization_code",
                "code": params["code"][0],
                "client_id": client_id,
                "redirect_uri": REDIRECT,
                "code_verifier": VERIFIER,
            }
        ).encode()
        _, tokens = await self.fetch("POST", f"{base}/token", data=form, headers=FORM)
        access = json.loads(tokens)["access_token"]
        other = SnapshotVerifier(await self.mirror(self.connect()), reactor, ISSUER)
        await within(5.0, lambda: other.verify(access) is not None)
        replay, answer = await self.fetch("POST", f"{base}/token", data=form, headers=FORM)
        self.assertEqual((replay.code, json.loads(answer)["error"]), (400, "invalid_grant"))
        await within(1.0, lambda: other.verify(access) is None)
        self.assertNotIn(access, json.dumps([r.headers for r in github.github.requests]))

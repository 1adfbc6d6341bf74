"""An OAuthServer over MemoryStorage, a Clock, a live Mirror and the fake GitHub (StubTreq)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, cast
from urllib.parse import parse_qs, urlencode, urlsplit

from attrs import frozen
from treq.client import HTTPClient
from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.model import Proxy, ProxyAuth
from oauthproxy.oauth.github import GitHubApp, GitHubClient
from oauthproxy.oauth.keys import ensure_signing_key
from oauthproxy.oauth.pkce import s256_challenge
from oauthproxy.oauth.resource_http import OAuthSettings
from oauthproxy.oauth.server import OAuthServer
from oauthproxy.storage.crypto import SecretBox
from oauthproxy.storage.mirror import Mirror
from oauthproxy.testing import MemoryStorage
from tests.oauth.samples import signing_key
from tests.support.fake_github import FakeGitHub, FakeUser

ISSUER = "https://auth.example.test"
RESOURCE = "https://mcp.example.test"
REDIRECT = "http://127.0.0.1:50123/cb"
VERIFIER = "w" * 43
GITHUB = "https://github.test"


@frozen
class Answer:
    """One response, read completely."""

    status: int
    headers: Mapping[bytes, list[bytes]]
    body: bytes

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        """The first value of a header."""
        values = self.headers.get(name.lower().encode())
        return values[0].decode() if values else None

    def cookies(self) -> dict[str, str]:
        """The cookies the response sets (name -> value)."""
        found = {}
        for line in self.headers.get(b"set-cookie", []):
            name, _, rest = line.decode().partition("=")
            found[name] = rest.split(";")[0]
        return found


class OAuthHarness:
    """The server under test and helpers to drive a whole login."""

    def __init__(
        self, test: SynchronousTestCase, user: FakeUser | None = None, **settings: Any
    ) -> None:
        self.test = test
        self.clock = Clock()
        self.clock.advance(1_750_000_000)
        self.storage = MemoryStorage(self.clock)
        self.mirror = Mirror(self.storage, self.clock)
        self.mirror.startService()
        test.addCleanup(self.mirror.stopService)
        self.fake = FakeGitHub("gh-id", "gh-secret", user or FakeUser(1001, "alice"))
        self.github_http: Any = StubTreq(self.fake.resource())  # type: ignore[no-untyped-call]
        self.box = SecretBox.generate()
        key = test.successResultOf(
            Deferred.fromCoroutine(
                ensure_signing_key(
                    self.storage.oauth,
                    self.box,
                    configured_pem_b64=None,
                    now=self.clock.seconds(),
                    generate=signing_key,
                )
            )
        )
        app = GitHubApp("gh-id", "gh-secret", base_url=GITHUB, api_url=GITHUB)
        self.server = OAuthServer(
            OAuthSettings(**{"issuer": ISSUER, "github": app, "secret": b"k" * 32, **settings}),
            self.storage.oauth,
            self.mirror,
            self.clock,
            # StubTreq offers HTTPClient's methods over the fake, in memory
            GitHubClient(cast(HTTPClient, self.github_http), app, self.clock),
            key,
            box=self.box,
        )
        self.treq: Any = StubTreq(self.server.resource())  # type: ignore[no-untyped-call]

    def add_proxy(
        self, hostname: str, users: tuple[str, ...] = (), scopes: tuple[str, ...] = ()
    ) -> None:
        """An OAuth-protected proxy in the store (and, through the mirror, the snapshot)."""
        auth = ProxyAuth(auth_type="oauth", required_users=users, required_scopes=scopes)
        proxy = Proxy(hostname=hostname, target_url="http://127.0.0.1:1", auth=auth)
        self.test.successResultOf(self.storage.proxies.create(proxy))

    def settle(self, d: Deferred[Any]) -> Any:
        """Pump both StubTreqs until ``d`` fires (bounded)."""
        for _ in range(50):
            self.treq.flush()
            self.github_http.flush()
            if d.called:
                break
        return self.test.successResultOf(d)

    def call(
        self,
        method: str,
        path: str,
        *,
        form: Mapping[str, str] | None = None,
        body: object = None,
        headers: Mapping[str, str] | None = None,
        cookies: Mapping[str, str] | None = None,
    ) -> Answer:
        """Send one request to the server and read the whole answer."""
        sent = {k: [v] for k, v in (headers or {}).items()}
        data = None
        if form is not None:
            data = urlencode(form).encode()
            sent["Content-Type"] = ["application/x-www-form-urlencoded"]
        if body is not None:
            data = json.dumps(body).encode()
            sent["Content-Type"] = ["application/json"]
        if cookies:
            sent["Cookie"] = ["; ".join(f"{k}={v}" for k, v in cookies.items())]
        url = path if path.startswith("http") else "https://auth.example.test" + path
        response = self.settle(
            self.treq.request(method, url, headers=sent, data=data, allow_redirects=False)
        )
        content = self.settle(self.treq.content(response))
        raw = {k.lower(): list(v) for k, v in response.headers.getAllRawHeaders()}
        return Answer(response.code, raw, content)

    def register(self, **metadata: Any) -> dict[str, Any]:
        """Register a public client (DCR) and return the response body."""
        body = {
            "redirect_uris": [REDIRECT],
            "client_name": "Test Client",
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            **metadata,
        }
        answer = self.call("POST", "/register", body=body)
        self.test.assertEqual(answer.status, 201, answer.body)
        result: dict[str, Any] = answer.json()
        return result

    def authorize_query(self, client_id: str, **extra: str) -> str:
        """An /authorize URL path for ``client_id`` with PKCE S256."""
        params = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT,
            "state": "client-state",
            "code_challenge": s256_challenge(VERIFIER),
            "code_challenge_method": "S256",
            **extra,
        }
        return "/authorize?" + urlencode(params)

    def consent(self, page: Answer, decision: str = "approve") -> Answer:
        """Submit the consent form found in ``page``."""
        text = page.body.decode()
        request_id = re.search(r'name="request_id" value="([^"]+)"', text)
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', text)
        assert request_id is not None and csrf is not None, text
        return self.call(
            "POST",
            "/authorize/consent",
            form={"request_id": request_id[1], "csrf_token": csrf[1], "decision": decision},
        )

    def github_redirect(self, to_github: Answer) -> str:
        """Let the fake GitHub log the user in; the callback URL it redirects to."""
        location = to_github.header("location")
        assert location is not None and location.startswith(GITHUB), to_github
        response = self.settle(self.github_http.get(location, allow_redirects=False))
        self.settle(self.github_http.content(response))
        back = response.headers.getRawHeaders(b"location")[0].decode()
        assert isinstance(back, str)
        return back

    def login(self, client_id: str, **extra: str) -> dict[str, str]:
        """Authorize, consent, GitHub, callback: the client's redirect query parameters."""
        page = self.call("GET", self.authorize_query(client_id, **extra))
        self.test.assertEqual(page.status, 200, page.body)
        to_github = self.consent(page)
        self.test.assertEqual(to_github.status, 303, to_github.body)
        callback = self.github_redirect(to_github)
        login_cookie = to_github.cookies()["__Host-oauthproxy-login"]
        back = self.call(
            "GET",
            urlsplit(callback).path + "?" + urlsplit(callback).query,
            cookies={"__Host-oauthproxy-login": login_cookie},
        )
        self.test.assertEqual(back.status, 303, back.body)
        location = back.header("location") or ""
        self.test.assertTrue(location.startswith(REDIRECT), location)
        return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}

    def token(self, **form: str) -> Answer:
        """POST /token."""
        return self.call("POST", "/token", form=form)

    def tokens(self, client_id: str, **extra: str) -> dict[str, Any]:
        """A whole login and code redemption: the token response."""
        code = self.login(client_id, **extra)["code"]
        answer = self.token(
            grant_type="authorization_code",
            code=code,
            client_id=client_id,
            redirect_uri=REDIRECT,
            code_verifier=VERIFIER,
        )
        self.test.assertEqual(answer.status, 200, answer.body)
        result: dict[str, Any] = answer.json()
        return result

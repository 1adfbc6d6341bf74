"""The fake GitHub fixture over real loopback HTTP, driven by our GitHub client."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool

from oauthproxy.oauth.github import GitHubApp, GitHubClient, authorize_url
from oauthproxy.oauth.pkce import new_verifier, s256_challenge
from tests.support.fake_github import FakeGitHub, FakeUser, start_fake_github

CALLBACK = "http://127.0.0.1:1/callback"


class FakeGitHubOverLoopbackTests(TestCase):
    """The fixture integration tests will use, exercised once over a real socket."""

    async def test_full_login_over_loopback(self) -> None:
        """ATK-33: authorize redirect, code exchange with PKCE and /user over real HTTP."""
        fake = FakeGitHub("id", "secret", FakeUser(id=7, login="octo"), callback_url=CALLBACK)
        running = await start_fake_github(reactor, fake)
        self.addCleanup(running.stop)
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(pool.closeCachedConnections)
        http = HTTPClient(Agent(reactor, pool=pool))
        app = GitHubApp("id", "secret", base_url=running.base_url, api_url=running.base_url)
        verifier = new_verifier()
        url = authorize_url(
            app, redirect_uri=CALLBACK, state="s1", code_challenge=s256_challenge(verifier)
        )
        response = await http.get(url, allow_redirects=False)
        await response.content()
        self.assertEqual(response.code, 302)
        location = response.headers.getRawHeaders("location")[0]
        code = parse_qs(urlsplit(location).query)["code"][0]
        client = GitHubClient(http, app, reactor)
        token = await client.exchange_code(code, redirect_uri=CALLBACK, code_verifier=verifier)
        user = await client.user(token)
        self.assertEqual((user.subject, user.username), ("7", "octo"))

"""Tests for :mod:`oauthproxy.oauth.github` against the fake GitHub, in memory."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from treq.client import HTTPClient
from treq.testing import RequestTraversalAgent, _SynchronousProducer
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from oauthproxy.oauth.github import GitHubApp, GitHubClient, GitHubError, authorize_url
from oauthproxy.oauth.pkce import new_verifier, s256_challenge
from oauthproxy.oauth.records import UserIdentity
from tests.support.fake_github import FakeGitHub, FakeUser

T = TypeVar("T")
BASE = "https://github.fake.test"
CALLBACK = "https://auth.example.test/callback"


class GitHubClientTests(SynchronousTestCase):
    """The upstream OAuth client (ATK-33, MCP-19)."""

    def setUp(self) -> None:
        """A fake GitHub with one user, reached through an in-memory agent."""
        self.fake = FakeGitHub(
            client_id="gh-id",
            client_secret="gh-secret",
            user=FakeUser(id=42, login="Octo", orgs=("Acme",), teams=(("Acme", "Ops"),)),
            callback_url=CALLBACK,
        )
        self.agent = RequestTraversalAgent(self.fake.resource())
        http = HTTPClient(self.agent, data_to_body_producer=_SynchronousProducer)
        self.app = GitHubApp("gh-id", "gh-secret", base_url=BASE, api_url=BASE)
        self.client = GitHubClient(http, self.app, Clock())

    def run_async(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Drive a client coroutine to its result through the in-memory agent."""
        d: Deferred[T] = Deferred.fromCoroutine(coroutine)
        self.agent.flush()
        return self.successResultOf(d)

    def login(self) -> tuple[str, str]:
        """Follow the authorize URL at the fake; return (code, verifier)."""
        verifier = new_verifier()
        url = authorize_url(
            self.app, redirect_uri=CALLBACK, state="st-1", code_challenge=s256_challenge(verifier)
        )
        http = HTTPClient(self.agent, data_to_body_producer=_SynchronousProducer)
        d = http.get(url, allow_redirects=False)
        self.agent.flush()
        response = self.successResultOf(d)
        location = response.headers.getRawHeaders("location")[0]
        query = parse_qs(urlsplit(location).query)
        self.assertEqual(query["state"], ["st-1"])
        return query["code"][0], verifier

    def test_authorize_url_carries_state_and_s256(self) -> None:
        """ATK-33: the GitHub authorize URL has our state and a PKCE S256 challenge."""
        url = authorize_url(self.app, redirect_uri=CALLBACK, state="s", code_challenge="c" * 43)
        query = parse_qs(urlsplit(url).query)
        self.assertTrue(url.startswith(BASE + "/login/oauth/authorize?"))
        self.assertEqual(query["state"], ["s"])
        self.assertEqual(query["code_challenge_method"], ["S256"])
        self.assertEqual(query["redirect_uri"], [CALLBACK])

    def test_login_yields_identity_with_memberships(self) -> None:
        """ATK-33: code + verifier exchange, then /user, /user/orgs, /user/teams."""
        code, verifier = self.login()
        token = self.run_async(
            self.client.exchange_code(code, redirect_uri=CALLBACK, code_verifier=verifier)
        )
        identity = self.run_async(self.client.identity(token, memberships=True))
        self.assertEqual(
            identity,
            UserIdentity(subject="42", username="Octo", orgs=("acme",), teams=("acme/ops",)),
        )

    def test_wrong_verifier_is_refused_by_github(self) -> None:
        """ATK-33: the upstream code is bound to our PKCE verifier."""
        code, _ = self.login()
        d = Deferred.fromCoroutine(
            self.client.exchange_code(code, redirect_uri=CALLBACK, code_verifier=new_verifier())
        )
        self.agent.flush()
        self.failureResultOf(d, GitHubError)

    def test_only_github_token_is_sent_to_github(self) -> None:
        """MCP-19: API calls carry GitHub's token; the token endpoint gets no Authorization."""
        code, verifier = self.login()
        token = self.run_async(
            self.client.exchange_code(code, redirect_uri=CALLBACK, code_verifier=verifier)
        )
        self.run_async(self.client.user(token))
        for request in self.fake.requests:
            auth = request.headers.get("authorization")
            if request.path.startswith("/user"):
                self.assertEqual(auth, f"Bearer {token}")
            else:
                self.assertIsNone(auth)

    def test_bad_token_is_a_github_error(self) -> None:
        """A token GitHub does not know fails the login."""
        d = Deferred.fromCoroutine(self.client.user("gho_unknown"))
        self.agent.flush()
        self.failureResultOf(d, GitHubError)


class _Stalling(Resource):
    """Answers nothing (a hung GitHub), or redirects when told to."""

    isLeaf = True

    def __init__(self, redirect_to: str | None = None) -> None:
        super().__init__()
        self.redirect_to = redirect_to
        self.paths: list[bytes] = []

    def render(self, request: Request) -> bytes | int:
        """Record the path; redirect or hang."""
        self.paths.append(request.path or b"")
        if self.redirect_to is not None:
            request.setResponseCode(302)
            request.setHeader(b"location", self.redirect_to.encode())
            return b""
        return NOT_DONE_YET


class GitHubFailureTests(SynchronousTestCase):
    """GitHub being slow or odd becomes a GitHubError, nothing else."""

    def client_for(self, resource: Resource) -> tuple[GitHubClient, RequestTraversalAgent, Clock]:
        """A client talking to ``resource`` in memory, with its own clock."""
        agent = RequestTraversalAgent(resource)
        clock = Clock()
        http = HTTPClient(agent, data_to_body_producer=_SynchronousProducer)
        app = GitHubApp("id", "secret", base_url=BASE, api_url=BASE)
        return GitHubClient(http, app, clock, timeout=5.0), agent, clock

    def test_hung_github_times_out(self) -> None:
        """A GitHub that never answers fails the call after the timeout."""
        client, agent, clock = self.client_for(_Stalling())
        d = Deferred.fromCoroutine(client.user("gho_x"))
        agent.flush()
        self.assertNoResult(d)
        clock.advance(5.0)
        self.failureResultOf(d, GitHubError)

    def test_redirects_are_not_followed(self) -> None:
        """ATK-31: a redirect from the API is an error; the token never goes elsewhere."""
        stalling = _Stalling(redirect_to="https://evil.test/steal")
        client, agent, _ = self.client_for(stalling)
        d = Deferred.fromCoroutine(client.user("gho_x"))
        agent.flush()
        self.failureResultOf(d, GitHubError)
        self.assertEqual(stalling.paths, [b"/user"])

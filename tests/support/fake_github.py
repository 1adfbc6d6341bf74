"""A small fake GitHub OAuth app, served as a real HTTP server on loopback.

GitHub is not reachable from the test machine, so integration tests point the daemon's
``github_base_url`` and ``github_api_url`` at this server.  It implements what the
authorization server uses: ``GET /login/oauth/authorize`` (logs in the configured user at
once and redirects back with ``code`` and ``state``), ``POST /login/oauth/access_token``
(checks the app's credentials, the redirect URI and PKCE S256, answers JSON or form as
GitHub does), ``GET /user``, ``/user/orgs`` and ``/user/teams``.  Every request is
recorded so tests can assert what was (not) sent, e.g. that no token of ours reached it.
"""

from __future__ import annotations

import json
import secrets
from typing import Any
from urllib.parse import urlencode

from attrs import define, field, frozen
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import IListeningPort, IReactorTCP
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from oauthproxy.oauth.pkce import s256_challenge


@frozen
class FakeUser:
    """The GitHub user the fake logs in."""

    id: int
    login: str
    orgs: tuple[str, ...] = ()
    #: (org, team-slug) pairs
    teams: tuple[tuple[str, str], ...] = ()


@frozen
class RecordedRequest:
    """One request the fake received."""

    method: str
    path: str
    headers: dict[str, str]
    args: dict[str, str]


@frozen
class _Grant:
    client_id: str
    redirect_uri: str
    code_challenge: str | None
    user: FakeUser


def _arg(request: Request, name: str) -> str | None:
    values = (request.args or {}).get(name.encode())
    return values[0].decode() if values else None


@define
class FakeGitHub:
    """The fake's state: one OAuth app, one logged-in user, issued codes and tokens."""

    client_id: str
    client_secret: str
    user: FakeUser
    #: when set, the only redirect_uri accepted (an app with wildcards off, ATK-33)
    callback_url: str | None = None
    codes: dict[str, _Grant] = field(factory=dict)
    tokens: dict[str, FakeUser] = field(factory=dict)
    requests: list[RecordedRequest] = field(factory=list)

    def resource(self) -> Resource:
        """The twisted.web resource serving both github.com and api.github.com paths."""
        return _FakeGitHubResource(self)

    def _record(self, request: Request) -> None:
        headers = {
            k.decode().lower(): v[0].decode() for k, v in request.requestHeaders.getAllRawHeaders()
        }
        args = {k.decode(): v[0].decode() for k, v in (request.args or {}).items()}
        path = (request.path or b"").decode()
        self.requests.append(RecordedRequest(request.method.decode(), path, headers, args))

    def authorize(self, request: Request) -> bytes:
        """Log the configured user in and redirect back with code and state."""
        client_id = _arg(request, "client_id")
        redirect_uri = _arg(request, "redirect_uri")
        if client_id != self.client_id or not redirect_uri:
            request.setResponseCode(400)
            return b"unknown client or missing redirect_uri"
        if self.callback_url is not None and redirect_uri != self.callback_url:
            request.setResponseCode(400)
            return b"redirect_uri mismatch"
        method = _arg(request, "code_challenge_method")
        challenge = _arg(request, "code_challenge")
        if challenge is not None and method != "S256":
            request.setResponseCode(400)
            return b"unsupported code_challenge_method"
        code = secrets.token_hex(10)
        self.codes[code] = _Grant(client_id, redirect_uri, challenge, self.user)
        query = {"code": code}
        state = _arg(request, "state")
        if state is not None:
            query["state"] = state
        sep = "&" if "?" in redirect_uri else "?"
        request.setResponseCode(302)
        request.setHeader(b"location", f"{redirect_uri}{sep}{urlencode(query)}".encode())
        return b""

    def access_token(self, request: Request) -> bytes:
        """Exchange a code: GitHub answers 200 even for errors, with an ``error`` field."""
        grant = self.codes.pop(_arg(request, "code") or "", None)
        answer: dict[str, str]
        if (
            _arg(request, "client_id") != self.client_id
            or _arg(request, "client_secret") != self.client_secret
        ):
            answer = {"error": "incorrect_client_credentials"}
        elif grant is None:
            answer = {"error": "bad_verification_code"}
        elif _arg(request, "redirect_uri") not in (None, grant.redirect_uri):
            answer = {"error": "redirect_uri_mismatch"}
        elif (
            grant.code_challenge is not None
            and s256_challenge(_arg(request, "code_verifier") or "") != grant.code_challenge
        ):
            answer = {"error": "bad_verification_code"}
        else:
            token = "gho_" + secrets.token_hex(18)
            self.tokens[token] = grant.user
            answer = {"access_token": token, "token_type": "bearer", "scope": "read:user"}
        accept = (request.getHeader(b"accept") or b"").decode()
        if "json" in accept:
            request.setHeader(b"content-type", b"application/json")
            return json.dumps(answer).encode()
        request.setHeader(b"content-type", b"application/x-www-form-urlencoded")
        return urlencode(answer).encode()

    def api(self, request: Request, path: str) -> bytes:
        """``/user``, ``/user/orgs``, ``/user/teams`` for a token the fake issued."""
        auth = (request.getHeader(b"authorization") or b"").decode()
        scheme, _, token = auth.partition(" ")
        user = self.tokens.get(token) if scheme.lower() in ("bearer", "token") else None
        request.setHeader(b"content-type", b"application/json")
        if user is None:
            request.setResponseCode(401)
            return json.dumps({"message": "Bad credentials"}).encode()
        body: Any
        if path == "/user":
            body = {"id": user.id, "login": user.login, "name": user.login.title()}
        elif path == "/user/orgs":
            body = [{"login": org} for org in user.orgs]
        elif path == "/user/teams":
            body = [{"slug": slug, "organization": {"login": org}} for org, slug in user.teams]
        else:
            request.setResponseCode(404)
            body = {"message": "Not Found"}
        return json.dumps(body).encode()


class _FakeGitHubResource(Resource):
    """Every path of the fake, as one leaf resource."""

    isLeaf = True

    def __init__(self, github: FakeGitHub) -> None:
        super().__init__()
        self._github = github

    def render(self, request: Request) -> bytes:
        """Record the request, then dispatch on path and method."""
        self._github._record(request)
        path = (request.path or b"").decode()
        if path == "/login/oauth/authorize" and request.method == b"GET":
            return self._github.authorize(request)
        if path == "/login/oauth/access_token" and request.method == b"POST":
            return self._github.access_token(request)
        if path.startswith("/user") and request.method == b"GET":
            return self._github.api(request, path)
        request.setResponseCode(404)
        return b"not found"


@define
class RunningFakeGitHub:
    """A fake GitHub listening on loopback; ``base_url`` serves web and API paths."""

    github: FakeGitHub
    port: IListeningPort

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        address = self.port.getHost()
        assert isinstance(address, IPv4Address)
        return f"http://127.0.0.1:{address.port}"

    def stop(self) -> Deferred[None]:
        """Stop listening."""
        stopped = self.port.stopListening()
        return stopped if stopped is not None else succeed(None)


async def start_fake_github(reactor: IReactorTCP, github: FakeGitHub) -> RunningFakeGitHub:
    """Listen on a free loopback port; the caller adds ``stop`` as a cleanup."""
    site = Site(github.resource())
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(site)
    return RunningFakeGitHub(github, port)

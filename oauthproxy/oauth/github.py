"""The GitHub upstream: we are an OAuth client of a GitHub OAuth app.

The authorize URL carries our random ``state`` and a PKCE S256 challenge (GitHub accepts
S256; ATK-33).  The code exchange, ``/user``, ``/user/orgs`` and ``/user/teams`` go
through an injected treq ``HTTPClient`` to base URLs from configuration (tests point
them at a fake GitHub on loopback).  Only GitHub's own token is ever sent to GitHub:
our clients' tokens never leave the daemon (MCP-19).
"""

from __future__ import annotations

import json
from typing import Any, TypeVar
from urllib.parse import urlencode

from attrs import define, field, frozen
from treq.client import HTTPClient
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectError
from twisted.internet.interfaces import IReactorTime
from twisted.web.client import ResponseFailed, ResponseNeverReceived

from oauthproxy.errors import OAuthProxyError
from oauthproxy.oauth.pkce import S256
from oauthproxy.oauth.records import UserIdentity

T = TypeVar("T")
DEFAULT_SCOPES = ("read:user", "read:org")
MAX_RESPONSE_BYTES = 1024 * 1024
API_HEADERS: dict[bytes | str, bytes | str] = {
    "Accept": "application/vnd.github+json",
    "X-GitHub-Api-Version": "2022-11-28",
    "User-Agent": "oauthproxy",
}

TOKEN_HEADERS: dict[bytes | str, bytes | str] = {
    "Accept": "application/json",
    "User-Agent": "oauthproxy",
}


class GitHubError(OAuthProxyError):
    """GitHub refused the request or answered something unusable."""

    code = "github_error"


@frozen
class GitHubApp:
    """A GitHub OAuth app's credentials and the GitHub it lives on."""

    client_id: str
    client_secret: str = field(repr=False)
    base_url: str = "https://github.com"
    api_url: str = "https://api.github.com"


def authorize_url(
    app: GitHubApp,
    *,
    redirect_uri: str,
    state: str,
    code_challenge: str,
    scopes: tuple[str, ...] = DEFAULT_SCOPES,
) -> str:
    """Where to send the browser to log in at GitHub (state + PKCE S256, ATK-33)."""
    query = urlencode(
        {
            "client_id": app.client_id,
            "redirect_uri": redirect_uri,
            "scope": " ".join(scopes),
            "state": state,
            "code_challenge": code_challenge,
            "code_challenge_method": S256,
            "allow_signup": "false",
        }
    )
    return f"{app.base_url.rstrip('/')}/login/oauth/authorize?{query}"


@define
class GitHubClient:
    """Talks to GitHub on behalf of the authorization server."""

    http: HTTPClient
    app: GitHubApp
    reactor: IReactorTime
    #: seconds each GitHub call may take
    timeout: float = 10.0

    async def _timed(self, request: Deferred[T]) -> T:
        # a GitHub outage must surface as GitHubError (the AS answers
        # temporarily_unavailable), never as a hung login or a stray traceback
        try:
            return await request.addTimeout(self.timeout, self.reactor)
        except (defer.TimeoutError, ConnectError, ResponseFailed, ResponseNeverReceived) as e:
            raise GitHubError(f"GitHub is unreachable ({e.__class__.__name__})") from e

    async def _json(self, response: Any) -> Any:
        body: bytes = await self._timed(response.content())
        if len(body) > MAX_RESPONSE_BYTES:
            raise GitHubError("GitHub's answer is too large")
        try:
            return json.loads(body)
        except ValueError as e:
            raise GitHubError(f"GitHub answered {response.code} with non-JSON") from e

    async def exchange_code(self, code: str, *, redirect_uri: str, code_verifier: str) -> str:
        """GitHub's access token for the ``code`` our callback received."""
        response = await self._timed(
            self.http.post(
                f"{self.app.base_url.rstrip('/')}/login/oauth/access_token",
                data={
                    "client_id": self.app.client_id,
                    "client_secret": self.app.client_secret,
                    "code": code,
                    "redirect_uri": redirect_uri,
                    "code_verifier": code_verifier,
                },
                headers=TOKEN_HEADERS,
                allow_redirects=False,
            )
        )
        if response.code != 200:
            raise GitHubError(f"GitHub's token endpoint answered {response.code}")
        answer = await self._json(response)
        token = answer.get("access_token") if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token:
            error = answer.get("error", "no access_token") if isinstance(answer, dict) else ""
            raise GitHubError(f"GitHub refused the code: {str(error)[:100]}")
        return token

    async def _get(self, path: str, token: str) -> Any:
        response = await self._timed(
            self.http.get(
                f"{self.app.api_url.rstrip('/')}{path}",
                headers={**API_HEADERS, "Authorization": f"Bearer {token}"},
                allow_redirects=False,
            )
        )
        if response.code != 200:
            await self._timed(response.content())
            raise GitHubError(f"GitHub {path} answered {response.code}")
        return await self._json(response)

    async def user(self, token: str) -> UserIdentity:
        """The GitHub user the token belongs to, without memberships."""
        data = await self._get("/user", token)
        if not isinstance(data, dict) or "id" not in data or "login" not in data:
            raise GitHubError("GitHub /user lacks id or login")
        return UserIdentity(subject=str(data["id"]), username=str(data["login"]))

    async def orgs(self, token: str) -> tuple[str, ...]:
        """Lower-case logins of the user's organisations (first 100)."""
        data = await self._get("/user/orgs?per_page=100", token)
        if not isinstance(data, list):
            raise GitHubError("GitHub /user/orgs is not a list")
        return tuple(str(o["login"]).lower() for o in data if isinstance(o, dict) and "login" in o)

    async def teams(self, token: str) -> tuple[str, ...]:
        """Lower-case ``org/team-slug`` of the user's teams (first 100)."""
        data = await self._get("/user/teams?per_page=100", token)
        if not isinstance(data, list):
            raise GitHubError("GitHub /user/teams is not a list")
        result = []
        for team in data:
            if isinstance(team, dict) and isinstance(team.get("organization"), dict):
                result.append(f"{team['organization'].get('login', '')}/{team.get('slug', '')}")
        return tuple(t.lower() for t in result)

    async def identity(self, token: str, *, memberships: bool = False) -> UserIdentity:
        """The user, with org and team memberships when an allowlist needs them."""
        user = await self.user(token)
        if not memberships:
            return user
        return UserIdentity(
            subject=user.subject,
            username=user.username,
            orgs=await self.orgs(token),
            teams=await self.teams(token),
        )

# twisted.web is untyped; mypy strict would flag every call into it
# mypy: disable-error-code="no-untyped-call"
"""The guard: authentication of requests to protected proxies, before they are forwarded.

:meth:`Guard.admit` sees every routing outcome and returns either an outcome for the gateway
to act on (a :class:`~oauthproxy.gateway.routing.Forward`, possibly rewritten to carry the
caller's identity) or a :class:`Answered` response it rendered itself.  What a request needs
comes from its proxy's :class:`~oauthproxy.model.ProxyAuth`, or from the matching route's
:class:`~oauthproxy.model.RouteAuth` when that route sets ``override_proxy_auth``:

- ``none``: passes; ``bearer``/``admin``: one of our API tokens (the admin token for
  ``admin``), found by SHA-256 digest in the snapshot, never in Redis;
- ``oauth``: a JWT of our authorization server in ``Authorization: Bearer`` only (a token in
  the query string is never read, MCP-16), its signature, expiry, revocation and audience
  (this proxy's resource URL, MCP-17, ATK-21) checked in memory, then the user allowlists
  (the proxy's or route's and the global one) and the scopes.  Without a valid token: 401
  with ``WWW-Authenticate: Bearer resource_metadata="…"`` and the scopes (MCP-2, MCP-18);
  missing scopes: 403 ``insufficient_scope`` naming all of them; a user not allowed: 403.
- ``excluded_paths`` pass without authentication; they are matched on the canonical path
  without the query (ATK-11).  ``auth_mode: passthrough`` leaves authentication to the
  backend (the request passes untouched, headers included).  ``auth_mode: redirect``
  sends browsers through a login and keeps a host-bound session cookie
  (:mod:`~oauthproxy.gateway.guard_login`); other clients get the 401 as in ``forward``.

The proxy's RFC 9728 protected-resource metadata is served by the guard itself at the root
and path-inserted well-known URLs; every URL in it comes from configuration and the records,
never from ``Host`` (ATK-8).  An admitted caller's identity reaches the backend as
``X-Auth-*`` headers set after the forwarder strips any inbound copies (ATK-6, BCP-6): they
ride on the proxy's custom request headers, which the header hygiene applies after
stripping.  The client's ``Authorization`` header never reaches the backend of an
OAuth-protected proxy, on paths that need no token as well (MCP-19).  Responses to an
OAuth-authenticated request (streams and WebSocket tunnels included) are aborted when the
token expires or is revoked (ATK-27, :class:`~.guard_streams.StreamCloser`); one still
waiting for its upstream gets the 401 instead.  Requests for
the authorization server's own hostname are handed to its resource.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from io import BytesIO
from typing import Any
from urllib.parse import urlsplit

from attrs import define, evolve, field, frozen
from twisted.internet.interfaces import IReactorTime
from twisted.web.resource import IResource, getChildForRequest
from twisted.web.server import NOT_DONE_YET, Request

from oauthproxy.admin.credentials import hash_token, same_hash
from oauthproxy.gateway.guard_login import (
    CALLBACK_PATH,
    COOKIE_NAMES,
    LOGIN_COOKIE,
    SESSION_COOKIE,
    BrowserLogin,
    login_cookies,
    request_cookie,
    strip_cookies,
    wants_login,
)
from oauthproxy.gateway.guard_rules import (
    Requirement,
    is_excluded,
    login_allowed,
    request_path,
    requirement_of,
)
from oauthproxy.gateway.guard_streams import BodyCollector, StreamCloser, abort_request
from oauthproxy.gateway.paths import split_target
from oauthproxy.gateway.routing import Forward, NotFound, Outcome, Unavailable, normalize_host
from oauthproxy.interfaces import ISnapshotSource
from oauthproxy.model import ApiToken, Event, Proxy, Snapshot
from oauthproxy.oauth.challenges import (
    Challenge,
    bearer_token,
    insufficient_scope,
    missing_scopes,
    unauthorized,
)
from oauthproxy.oauth.errors import InvalidToken
from oauthproxy.oauth.metadata import (
    AS_WELL_KNOWN,
    OIDC_WELL_KNOWN,
    PRM_WELL_KNOWN,
    protected_resource_metadata_urls,
)
from oauthproxy.oauth.proxies import proxy_resource_metadata, resource_of
from oauthproxy.oauth.records import AccessTokenClaims
from oauthproxy.oauth.resource_http import DEFAULT_SCOPES
from oauthproxy.requestlog.record import notes_for

#: our API tokens' prefix (``oauthproxy.admin.credentials``)
_API_TOKEN_PREFIX = "acm_"
_PRM_ROOT = f"/.well-known/{PRM_WELL_KNOWN}"
_AS_PATHS = frozenset({f"/.well-known/{AS_WELL_KNOWN}", f"/.well-known/{OIDC_WELL_KNOWN}"})
#: identity headers the gateway sets for the backend (inbound copies are always stripped)
USER_HEADER = "X-Auth-User"
SCOPES_HEADER = "X-Auth-Scopes"
CLIENT_HEADER = "X-Auth-Client-Id"
SUBJECT_HEADER = "X-Auth-Subject"
TYPE_HEADER = "X-Auth-Type"

#: checks a JWT for an audience; raises InvalidToken (``SnapshotVerifier.check``)
TokenCheck = Callable[[str, str | None], AccessTokenClaims]


@frozen
class Answered:
    """The guard answered the request itself; ``body`` is what ``render`` returns."""

    body: Any


@define(eq=False)
class Guard:
    """Authenticates requests to protected proxies; see the module docstring."""

    snapshots: ISnapshotSource
    check_token: TokenCheck
    clock: IReactorTime
    #: the authorization server's issuer (from configuration)
    issuer: str
    #: the global GitHub allowlist (``OAUTH_ALLOWED_GITHUB_USERS``)
    allowed_users: tuple[str, ...] = ("*",)
    #: the resource URL of a proxy (its tokens' audience, ``Proxy.oauth_resource`` aware)
    resource_of: Callable[[Proxy], str] = resource_of
    #: renders the RFC 8414 document at a proxy's own host (``OAuthServer.proxy_metadata``)
    proxy_metadata: Callable[[Request, str], bytes] | None = None
    #: the authorization server's own resource, served for the auth hostnames
    auth_resource: IResource | None = None
    auth_hosts: frozenset[str] = frozenset()
    #: logs browsers in for ``auth_mode: redirect`` proxies; None = they get 401 too
    login: BrowserLogin | None = None
    #: advertised for a proxy that requires no scope of its own
    default_scopes: tuple[str, ...] = DEFAULT_SCOPES
    streams: StreamCloser = field(init=False)

    def __attrs_post_init__(self) -> None:
        """Follow the snapshot so that revoked tokens' streams are closed (ATK-27)."""
        self.streams = StreamCloser(self.clock)

    def start(self) -> Callable[[], None]:
        """Subscribe to revocations; returns the unsubscribe function (call at shutdown)."""
        return self.snapshots.subscribe(self._snapshot_changed)

    def _snapshot_changed(self, snapshot: Snapshot, event: Event | None) -> None:
        if event is None or event.kind == "oauth_revocation":
            self.streams.revoked(snapshot.oauth_revocations)

    # -- the one entry point ---------------------------------------------------------------

    def check(
        self, request: Request, decision: Outcome, scheme: str, host: bytes | None
    ) -> tuple[Outcome | None, Any]:
        """The gateway's hook: ``(outcome, None)`` to act on, or ``(None, body)`` to return."""
        verdict = self.admit(request, decision, scheme, host)
        if isinstance(verdict, Answered):
            return None, verdict.body
        return verdict, None

    def admit(
        self, request: Request, decision: Outcome, scheme: str, host: bytes | None
    ) -> Outcome | Answered:
        """The outcome to act on (maybe rewritten), or the guard's own answer."""
        if (
            self.auth_resource is not None
            and isinstance(decision, Forward | NotFound | Unavailable)
            and normalize_host(host) in self.auth_hosts
        ):
            # the authorization server's own hostname (ACME and HTTPS redirects still apply)
            notes_for(request).authorization_server = True
            return Answered(self._render_auth(request))
        if not isinstance(decision, Forward):
            return decision
        need = requirement_of(decision)
        if need is not None and need.mode == "passthrough":
            return decision  # the backend authenticates: the request passes untouched
        # the one credential: read before the header may be removed below
        authorization = _header(request, b"authorization")
        session = pending = None
        if _oauth_proxy(decision.proxy):
            # MCP-19: a token sent to an OAuth-protected proxy never reaches its backend,
            # also on the paths (excluded, or a route without auth) that need none
            request.requestHeaders.removeHeader(b"authorization")
            cookies = login_cookies(request)
            session = request_cookie(request, cookies.name(SESSION_COOKIE))
            pending = request_cookie(request, cookies.name(LOGIN_COOKIE))
            strip_cookies(request, *COOKIE_NAMES)
        path = request_path(request)
        if need is None or path is None:
            return decision  # nothing required (or a target the router already refused)
        if need.auth_type == "oauth":
            if path == _PRM_ROOT or path.startswith(_PRM_ROOT + "/"):
                return Answered(self._render_metadata(request, decision.proxy))
            if path in _AS_PATHS and self.proxy_metadata is not None:
                # clients of the 2025-03-26 spec look for it at the resource's own host
                return Answered(self.proxy_metadata(request, decision.proxy.hostname))
            if path == CALLBACK_PATH and need.mode == "redirect" and self.login is not None:
                target = self._login_target(decision.proxy)
                return Answered(self.login.finish(request, *target, pending))
        if is_excluded(path, need.excluded_paths):
            return decision
        if need.auth_type in ("bearer", "admin"):
            return self._api_token(request, decision, need, authorization)
        return self._oauth(request, decision, need, authorization, session)

    # -- API tokens --------------------------------------------------------------------------

    def _api_token(
        self, request: Request, decision: Forward, need: Requirement, authorization: str | None
    ) -> Outcome | Answered:
        value = bearer_token(authorization)
        token = self._find_api_token(value) if value is not None else None
        if token is None:
            return Answered(
                _render(
                    request,
                    401,
                    (("WWW-Authenticate", 'Bearer realm="oauthproxy"'),),
                    {"error": "unauthorized", "error_description": "a valid API token is required"},
                )
            )
        if need.auth_type == "admin" and not token.is_admin:
            body = {"error": "forbidden", "error_description": "the admin token is required"}
            return Answered(_render(request, 403, (), body))
        request.requestHeaders.removeHeader(b"authorization")
        notes_for(request).user = token.name  # the request log's user index
        return _with_identity(decision, ((USER_HEADER, token.name), (TYPE_HEADER, need.auth_type)))

    def _find_api_token(self, value: str) -> ApiToken | None:
        if not value.startswith(_API_TOKEN_PREFIX):
            return None
        digest = hash_token(value)
        found = None
        for token in self.snapshots.current.tokens.values():
            # every digest is compared: the time taken does not say which one matched
            if same_hash(token.token_hash, digest) and found is None:
                found = token
        return found

    # -- OAuth -------------------------------------------------------------------------------

    def metadata_url(self, proxy: Proxy) -> str:
        """Where this proxy's protected-resource metadata is (named in challenges, MCP-2)."""
        return protected_resource_metadata_urls(self.resource_of(proxy))[0]

    def _login_target(self, proxy: Proxy) -> tuple[str, str, str]:
        """(hostname, origin, resource) of a redirect-mode proxy's browser login."""
        resource = self.resource_of(proxy)
        parts = urlsplit(resource)
        return proxy.hostname, f"{parts.scheme}://{parts.netloc}", resource

    def _oauth(
        self,
        request: Request,
        decision: Forward,
        need: Requirement,
        authorization: str | None,
        session: str | None = None,
    ) -> Outcome | Answered:
        metadata = self.metadata_url(decision.proxy)
        # MCP-16: the header is the only place a token is read from (browsers of a
        # redirect-mode proxy: the host-bound session cookie the login set, ATK-32)
        token = bearer_token(authorization)
        browser = need.mode == "redirect" and self.login is not None and wants_login(request)
        if token is None and need.mode == "redirect":
            token = session
        if token is None:
            if browser:
                assert self.login is not None
                return Answered(self.login.start(request, *self._login_target(decision.proxy)))
            return Answered(_challenge(request, unauthorized(metadata, scopes=need.scopes)))
        try:
            claims = self.check_token(token, self.resource_of(decision.proxy))
        except InvalidToken as e:
            if browser and authorization is None:
                assert self.login is not None  # an expired or revoked session: log in again
                return Answered(self.login.start(request, *self._login_target(decision.proxy)))
            answer = unauthorized(
                metadata, scopes=need.scopes, token_presented=True, description=e.description
            )
            return Answered(_challenge(request, answer))
        if not (
            login_allowed(claims.username, need.users)
            and login_allowed(claims.username, self.allowed_users)
        ):
            body = {
                "error": "access_denied",
                "error_description": "this user may not use this resource",
            }
            return Answered(_render(request, 403, (("Cache-Control", "no-store"),), body))
        if missing_scopes(claims.scopes, need.scopes):
            return Answered(_challenge(request, insufficient_scope(metadata, required=need.scopes)))
        # MCP-19: the client's token never reaches the backend
        request.requestHeaders.removeHeader(b"authorization")

        def refuse(request: Request, why: str) -> None:
            # the token ended before the upstream answered: the same 401 as the next
            # request with it gets (ATK-27, MCP-17)
            answer = unauthorized(
                metadata, scopes=need.scopes, token_presented=True, description=why
            )
            body = _challenge(request, answer)
            request.setHeader(b"content-length", b"%d" % len(body))
            request.write(body)
            request.finish()

        self.streams.watch(request, claims.jti, claims.expires_at, refuse)
        notes = notes_for(request)  # the request log's user and client indexes
        notes.user, notes.client_id = claims.username, claims.client_id
        identity = [
            (USER_HEADER, claims.username),
            (SCOPES_HEADER, " ".join(claims.scopes)),
            (CLIENT_HEADER, claims.client_id),
            (TYPE_HEADER, "oauth"),
        ]
        if claims.subject:
            identity.append((SUBJECT_HEADER, claims.subject))
        return _with_identity(decision, identity)

    def _render_metadata(self, request: Request, proxy: Proxy) -> bytes:
        """The proxy's RFC 9728 document, from configuration and its record (ATK-8)."""
        if request.method not in (b"GET", b"HEAD"):
            request.setHeader(b"allow", b"GET, HEAD")
            return _render(request, 405, (), {"error": "method_not_allowed"})
        named = proxy.oauth_resource.authorization_servers if proxy.oauth_resource else ()
        if not (self.issuer or named):
            # no authorization server to name: say so rather than list "" (issue 11)
            body = {
                "error": "temporarily_unavailable",
                "error_description": "no authorization server is configured for this resource",
            }
            return _render(request, 503, (("Cache-Control", "no-store"),), body)
        auth = proxy.auth
        # never an empty list: clients build their registration's ``scope`` from it
        scopes = (auth.required_scopes if auth is not None else ()) or self.default_scopes
        doc = proxy_resource_metadata(
            proxy, self.issuer, scopes_supported=scopes, resource=self.resource_of(proxy)
        )
        # browser-based MCP clients read it cross-origin
        headers = (("Access-Control-Allow-Origin", "*"), ("Cache-Control", "max-age=300"))
        return _render(request, 200, headers, doc)

    def _render_auth(self, request: Request) -> Any:
        """Hand the request to the authorization server's resource, its body read first.

        The gateway streams request bodies instead of spooling them (``request.body``, a
        producer); the authorization server reads ``request.content``, so a body is
        collected (bounded) before the server sees the request.
        """
        body = getattr(request, "body", None)
        if body is None:
            return self._render_auth_now(request)
        collector = BodyCollector(body)
        done = body.startProducing(collector)
        done.addCallback(lambda _: self._render_collected(request, collector))
        done.addErrback(lambda _: abort_request(request))
        return NOT_DONE_YET

    def _render_collected(self, request: Request, collector: BodyCollector) -> None:
        if collector.too_large:
            request.write(_render(request, 413, (), {"error": "invalid_request"}))
            request.finish()
            return
        request.content = BytesIO(b"".join(collector.chunks))
        result = self._render_auth_now(request)
        if result is not NOT_DONE_YET:
            request.write(result)
            request.finish()

    def _render_auth_now(self, request: Request) -> Any:
        assert self.auth_resource is not None
        request.prepath = []
        path, _query = split_target(request.uri)
        request.postpath = path.split(b"/")[1:]
        return getChildForRequest(self.auth_resource, request).render(request)


def _oauth_proxy(proxy: Proxy) -> bool:
    """Whether the proxy itself takes OAuth tokens (whatever a route overrides)."""
    return proxy.auth is not None and proxy.auth.auth_type == "oauth"


def _header(request: Request, name: bytes) -> str | None:
    values = request.requestHeaders.getRawHeaders(name)
    if not values or len(values) != 1:
        # RFC 6750 §2: one credential; several Authorization headers are no credential
        return None
    return values[0].decode("latin-1")


def _identity_value(value: str) -> str:
    # header values are set by us: never a control character from a claim (ATK-6)
    return "".join(c for c in value if c.isprintable())[:512]


def _with_identity(decision: Forward, identity: Iterable[tuple[str, str]]) -> Forward:
    """``decision`` with identity headers after the proxy's custom ones.

    The header hygiene strips every inbound ``X-Auth-*`` before it applies the proxy's
    custom request headers, so values set here cannot be spoofed by the client (ATK-6).
    """
    proxy = decision.proxy
    extra = tuple((name, _identity_value(value)) for name, value in identity)
    proxy = evolve(proxy, custom_request_headers=proxy.custom_request_headers + extra)
    return evolve(decision, proxy=proxy)


def _render(
    request: Request, status: int, headers: Iterable[tuple[str, str]], body: dict[str, Any]
) -> bytes:
    request.setResponseCode(status)
    for name, value in headers:
        request.responseHeaders.setRawHeaders(name.encode("ascii"), [value.encode("utf-8")])
    request.setHeader(b"content-type", b"application/json")
    return json.dumps(body).encode() + b"\n"


def _challenge(request: Request, challenge: Challenge) -> bytes:
    return _render(request, challenge.status, challenge.headers, dict(challenge.body))

"""The OAuth 2.1 authorization server as a Klein resource: the browser-facing endpoints.

:class:`OAuthServer` glues the pure modules of :mod:`oauthproxy.oauth` to the store,
the snapshot, GitHub and HTTP.  It has a Klein ``app``, so it mounts on the admin API
listener (``AdminAPI.resource(server)``), and :meth:`OAuthServer.resource` is a plain
``IResource`` for the gateway's auth hostname.  This module holds ``/authorize``, the
consent step (MCP-20), ``/callback`` and discovery; the token, registration,
introspection, revocation, JWKS and ``/verify`` endpoints are in
:mod:`oauthproxy.oauth.resource_tokens`, registered on the same Klein app.

Every URL we hand out comes from :class:`OAuthSettings` (configuration), never from the
request's ``Host`` (ATK-8).  OAuth errors are rendered in one place,
:func:`render_oauth_error` (RFC 6749 §5.2 / RFC 6750 JSON) and :meth:`OAuthServer.answer`
(authorization responses: an error page, or a redirect with ``iss`` to a trusted
client only, O21-5, O21-16, ATK-3, ATK-24).  Every answer to a browser (pages and
redirects) carries ``frame-ancestors 'none'`` and ``X-Frame-Options: DENY`` (O21-13);
the consent and login steps are bound to the browser that started them and the consent
form is accepted from our own origin only (ATK-23, ATK-36, :mod:`.consent`).
"""

from __future__ import annotations

import json
from typing import ClassVar, cast

from attrs import define, evolve, field
from joserfc.jwk import RSAKey
from klein import Klein
from klein.resource import KleinResource
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from twisted.web.server import Request
from werkzeug.exceptions import HTTPException

from oauthproxy.errors import StorageUnavailable
from oauthproxy.interfaces import IOAuthStore, ISnapshotSource
from oauthproxy.model import AuthServerOverrides
from oauthproxy.oauth import consent, proxies
from oauthproxy.oauth.access import allowed_resources, resolve_audience, user_allowed
from oauthproxy.oauth.authorize import (
    REDIRECT_STATUS,
    ErrorPage,
    ErrorRedirect,
    check_authorization_request,
    client_is_trusted,
    error_response,
    success_redirect,
)
from oauthproxy.oauth.cimd import is_metadata_document_client_id
from oauthproxy.oauth.errors import (
    AccessDenied,
    InvalidRequest,
    OAuth2Error,
    RateLimited,
    ServerError,
    TemporarilyUnavailable,
)
from oauthproxy.oauth.github import GitHubClient, GitHubError, authorize_url
from oauthproxy.oauth.grants import issue_code
from oauthproxy.oauth.keys import active_record, private_key_of
from oauthproxy.oauth.limits import SourceLimiter
from oauthproxy.oauth.metadata import (
    AS_WELL_KNOWN,
    OIDC_WELL_KNOWN,
    authorization_server_metadata,
)
from oauthproxy.oauth.pkce import s256_challenge
from oauthproxy.oauth.records import AuthorizationRequest, LoginSession, OAuthClient
from oauthproxy.oauth.resource_cimd import MetadataDocumentFetcher
from oauthproxy.oauth.resource_http import (
    OAuthSettings,
    client_source,
    cookie,
    error_page,
    form_params,
    page_headers,
    query_params,
    render_oauth_error,
    set_header,
    single,
)
from oauthproxy.oauth.resource_registration import RegistrationEndpoints
from oauthproxy.oauth.resource_tokens import TokenEndpoints, oauth_app
from oauthproxy.oauth.resource_verify import VerifyEndpoints
from oauthproxy.oauth.revocation import Revoker
from oauthproxy.oauth.verifier import SnapshotVerifier
from oauthproxy.storage.crypto import SecretBox


@define
class OAuthServer(TokenEndpoints, RegistrationEndpoints, VerifyEndpoints):
    """The authorization server's endpoints; see the module docstring."""

    app: ClassVar[Klein] = oauth_app
    log: ClassVar[Logger] = Logger()

    settings: OAuthSettings
    store: IOAuthStore
    snapshots: ISnapshotSource
    clock: IReactorTime
    github: GitHubClient
    signing_key: RSAKey
    #: fetches client ID metadata documents; None = CIMD clients are not supported
    documents: MetadataDocumentFetcher | None = None
    #: the storage SecretBox: seals what a refresh retry window keeps, opens rotated-in keys
    box: SecretBox | None = None
    verifier: SnapshotVerifier = field(init=False)
    revoker: Revoker = field(init=False)
    #: per-source budgets of registrations and of failed requests (ATK-37)
    registrations: SourceLimiter = field(init=False)
    failures: SourceLimiter = field(init=False)
    #: private keys of rotated-in keys, unsealed once each
    _unsealed: dict[str, RSAKey] = field(init=False, factory=dict)

    def __attrs_post_init__(self) -> None:
        """Build the verifier, the revoker and the rate limits."""
        if self.settings.refresh_retry_window > 0 and self.box is None:
            raise ValueError("a refresh retry window needs the SecretBox to keep answers")
        self.verifier = SnapshotVerifier(self.snapshots, self.clock, self.settings.base)
        self.revoker = Revoker(
            self.store,
            self.clock,
            self.settings.client_lifetime,
            self.settings.unused_client_lifetime,
        )
        self.registrations = SourceLimiter(self.settings.register_rate, self.clock)
        self.failures = SourceLimiter(self.settings.failure_rate, self.clock)

    def resource(self) -> IResource:
        """This server as a plain Twisted resource (the gateway's auth hostname)."""
        return KleinResource(self.app)

    # what the snapshot says

    def current_signing_key(self) -> RSAKey:
        """The key that signs now: the active key of the snapshot (rotation), else ours.

        A key from ``OAUTH_JWT_PRIVATE_KEY_B64`` is published without its private half and
        always signs; otherwise every daemon switches to a rotated-in key when it
        activates (:func:`~oauthproxy.oauth.keys.active_record`).
        """
        records = self.snapshots.current.oauth_signing_keys
        own = records.get(str(self.signing_key.kid))
        if self.box is None or (own is not None and not own.sealed_private_key):
            return self.signing_key
        active = active_record(records.values(), self.clock.seconds())
        if active is None or active.kid == self.signing_key.kid:
            return self.signing_key
        if active.kid not in self._unsealed:
            self._unsealed[active.kid] = private_key_of(active, self.box)
        return self._unsealed[active.kid]

    def protected_resources(self) -> dict[str, tuple[str, ...]]:
        """Each OAuth-protected proxy's resource URI -> its user allowlist."""
        return proxies.protected_resources(
            self.snapshots.current.proxies.values(), self.settings.public_ports
        )

    def scopes_supported(self) -> tuple[str, ...]:
        """The configured scopes plus every scope a proxy requires or advertises."""
        extra = proxies.proxy_scopes(self.snapshots.current.proxies.values())
        return tuple(dict.fromkeys((*self.settings.scopes_supported, *extra)))

    def upstream(self, auth: AuthorizationRequest) -> GitHubClient:
        """The GitHub client for this login: a requested proxy's own app, else the global."""
        app = proxies.github_app_for(
            self.snapshots.current.proxies.values(),
            auth.resources,
            self.settings.github,
            self.settings.public_ports,
        )
        return self.github if app == self.github.app else evolve(self.github, app=app)

    async def client(self, client_id: str | None) -> OAuthClient | None:
        """A pre-registered or stored client, or None."""
        if not client_id:
            return None
        for client in self.settings.static_clients:
            if client.client_id == client_id:
                return client
        if is_metadata_document_client_id(client_id):
            return await self.document_client(client_id)
        found: OAuthClient | None = await self.store.get_client(client_id)
        return found

    async def document_client(self, url: str) -> OAuthClient | None:
        """A CIMD client (MCP-7): cached while its document allows, else fetched."""
        if self.documents is None:
            return None
        now = self.clock.seconds()
        cached: OAuthClient | None = await self.store.get_client(url)
        if cached is not None and cached.source == "cimd" and cached.cache_expires_at > now:
            return cached
        try:
            fetched = await self.documents.fetch(url)
        except OAuth2Error as error:
            self.log.info("client metadata document {url} refused: {error}", url=url, error=error)
            return None
        if fetched.cache_expires_at > now:
            await self.store.put_client(fetched)
        return fetched

    # authorization responses

    def answer(self, request: Request, outcome: ErrorPage | ErrorRedirect | str) -> bytes:
        """Send an authorization response: a redirect (a URL or ErrorRedirect) or a page."""
        if isinstance(outcome, ErrorPage):
            return error_page(request, outcome.error)
        location = outcome.location if isinstance(outcome, ErrorRedirect) else outcome
        request.setResponseCode(REDIRECT_STATUS)
        page_headers(request)
        set_header(request, "Location", location)
        return b""

    def fail(
        self, request: Request, error: OAuth2Error, auth: AuthorizationRequest, trusted: bool
    ) -> bytes:
        """An error after the request was validated: to the client only if trusted."""
        return self.answer(
            request,
            error_response(
                error,
                issuer=self.settings.base,
                redirect_uri=auth.redirect_uri,
                state=auth.state,
                trusted=trusted,
            ),
        )

    @oauth_app.route("/authorize", methods=["GET"])
    async def authorize(self, request: Request) -> bytes:
        """Validate the request, then the consent page or straight to GitHub (MCP-20).

        A source whose failed requests used up its budget gets 429 (ATK-37).
        """
        source = client_source(request)
        wait = self.failures.retry_after(source)
        if wait is not None:
            set_header(request, "Retry-After", str(wait))
            return error_page(request, RateLimited("too many failed requests", wait))
        params = query_params(request)
        client = await self.client(next(iter(params.get("client_id", [])), None))
        now = self.clock.seconds()
        approved = client is not None and consent.is_approved(
            self.settings.secret,
            self.get_cookie(request, consent.CONSENT_COOKIE),
            client.client_id,
            now=now,
        )
        outcome = check_authorization_request(
            params,
            client,
            issuer=self.settings.base,
            scopes_supported=self.scopes_supported(),
            # the issuer itself is a resource too: tokens for this server (admin API rules)
            known_resources={*self.protected_resources(), self.settings.base},
            approved=approved,
        )
        if not isinstance(outcome, AuthorizationRequest):
            self.failures.spend(source)
            return self.answer(request, outcome)
        assert client is not None
        try:
            # resources of proxies with different GitHub apps: refuse before any login
            self.upstream(outcome)
        except OAuth2Error as error:
            self.failures.spend(source)
            return self.fail(request, error, outcome, client_is_trusted(client, approved))
        if approved:
            return await self.to_github(request, outcome)
        pending = consent.new_login_session(outcome, now=now, lifetime=self.settings.login_timeout)
        await self.store.put_session(pending)
        # the form is only good in this browser: its token covers the flow cookie (ATK-36)
        binding = consent.browser_binding(self.get_cookie(request, consent.FLOW_COOKIE))
        self.set_cookie(request, consent.FLOW_COOKIE, binding, int(self.settings.login_timeout))
        # approving leads to GitHub, back here, then to the client (CSP form-action)
        github = self.upstream(outcome).app.base_url
        page_headers(
            request, (consent.form_target(github), consent.form_target(outcome.redirect_uri))
        )
        return consent.render_consent_page(
            consent.consent_view(client, outcome),
            action=f"{self.settings.path}/authorize/consent",
            request_id=pending.state,
            csrf=consent.csrf_token(self.settings.secret, pending.state, client.client_id, binding),
        )

    @oauth_app.route("/authorize/consent", methods=["POST"])
    async def decide(self, request: Request) -> bytes:
        """The consent form: approve (cookie, then GitHub) or deny; same-origin, CSRF-checked."""
        try:
            consent.check_same_origin(
                request.getHeader("origin"),
                request.getHeader("sec-fetch-site"),
                self.settings.base,
            )
            form = form_params(request)
            request_id = single(form, "request_id") or ""
            pending = await self.store.take_session(request_id) if request_id else None
            if pending is None or pending.expires_at <= self.clock.seconds():
                raise AccessDenied("the consent form is invalid or expired", "request_id")
            client_id = pending.request.client_id
            consent.check_csrf(
                self.settings.secret,
                request_id,
                client_id,
                single(form, "csrf_token"),
                self.get_cookie(request, consent.FLOW_COOKIE),
            )
        except OAuth2Error as error:
            return error_page(request, error)
        if single(form, "decision") != "approve":
            # the client is not trusted yet: tell the user here, send nothing to it
            return error_page(request, AccessDenied("you denied the request"))
        approval = consent.approve(
            self.settings.secret,
            self.get_cookie(request, consent.CONSENT_COOKIE),
            client_id,
            now=self.clock.seconds(),
        )
        self.set_cookie(request, consent.CONSENT_COOKIE, approval, int(consent.CONSENT_MAX_AGE))
        return await self.to_github(request, pending.request)

    def get_cookie(self, request: Request, base: str) -> str | None:
        """One of our cookies, by its name without prefix (:class:`consent.CookiePolicy`)."""
        return cookie(request, self.settings.cookies.name(base))

    def set_cookie(self, request: Request, base: str, value: str, max_age: int) -> None:
        """Set one of our cookies with the policy's name and attributes."""
        header = self.settings.cookies.header(base, value, max_age)
        request.responseHeaders.addRawHeader(b"Set-Cookie", header.encode("ascii"))

    async def to_github(self, request: Request, auth: AuthorizationRequest) -> bytes:
        """Start the GitHub leg: a single-use state bound to this browser (ATK-23)."""
        session = consent.new_login_session(
            auth, now=self.clock.seconds(), lifetime=self.settings.login_timeout
        )
        await self.store.put_session(session)
        binding = consent.login_binding(self.settings.secret, session.state)
        self.set_cookie(request, consent.LOGIN_COOKIE, binding, int(self.settings.login_timeout))
        return self.answer(
            request,
            authorize_url(
                self.upstream(auth).app,
                redirect_uri=self.settings.callback_url,
                state=session.state,
                code_challenge=s256_challenge(session.upstream_verifier),
            ),
        )

    @oauth_app.route("/callback", methods=["GET"])
    async def callback(self, request: Request) -> bytes:
        """GitHub sent the user back: check state, identify, apply allowlists, issue a code."""
        params = query_params(request)
        try:
            state = single(params, "state")
            stored = await self.store.take_session(state) if state else None
            session = consent.check_callback_state(
                stored,
                state,
                now=self.clock.seconds(),
                secret=self.settings.secret,
                binding_cookie=self.get_cookie(request, consent.LOGIN_COOKIE),
            )
        except OAuth2Error as error:
            return error_page(request, error)
        self.set_cookie(request, consent.LOGIN_COOKIE, "", 0)
        auth = session.request
        # the user approved this client (consent) before we sent them to GitHub
        client = await self.client(auth.client_id)
        trusted = client is not None and client_is_trusted(client, True)
        try:
            return await self.finish_login(request, session, single(params, "code"))
        except OAuth2Error as error:
            return self.fail(request, error, auth, trusted)

    async def finish_login(
        self, request: Request, session: LoginSession, code: str | None
    ) -> bytes:
        """Exchange GitHub's code, check the allowlists, redirect with our code and ``iss``."""
        auth = session.request
        if not code:
            raise AccessDenied("GitHub did not authorize the login")
        entries = [*self.settings.allowed_users]
        resources = self.protected_resources()
        for allowlist in resources.values():
            entries += allowlist
        memberships = any(e.startswith(("org:", "team:")) for e in entries)
        try:
            github = self.upstream(auth)
            token = await github.exchange_code(
                code,
                redirect_uri=self.settings.callback_url,
                code_verifier=session.upstream_verifier,
            )
            user = await github.identity(token, memberships=memberships)
        except GitHubError as error:
            self.log.warn("GitHub login failed: {error}", error=error)
            raise ServerError("the login with GitHub failed") from None
        if not user_allowed(user, self.settings.allowed_users):
            raise AccessDenied("this GitHub user may not log in here")
        # without RFC 8707 resources the token is for this server only (its issuer)
        allowed = allowed_resources(user, resources, self.settings.allowed_users)
        audience = resolve_audience(
            auth.resources, allowed={*allowed, self.settings.base}, default=(self.settings.base,)
        )
        now = self.clock.seconds()
        value, record = issue_code(auth, user, audience=audience, now=now)
        await self.store.put_code(record)
        await self.store.touch_client(auth.client_id, now)
        return self.answer(request, success_redirect(auth, value, self.settings.base))

    # failures outside the protocol, rendered as OAuth errors in one place

    @oauth_app.handle_errors(HTTPException)
    def unrouted(self, request: IRequest, failure: Failure) -> bytes:
        """No such endpoint or method (404, 405): a plain JSON error, nothing logged."""
        code = getattr(failure.value, "code", None) or 404
        answer = cast(Request, request)
        answer.setResponseCode(code)
        set_header(answer, "Content-Type", "application/json")
        return json.dumps({"error": "not_found" if code == 404 else "invalid_request"}).encode()

    @oauth_app.handle_errors(StorageUnavailable)
    def unavailable(self, request: IRequest, failure: Failure) -> bytes:
        """The store is down: 503 ``temporarily_unavailable``, the client may retry."""
        self.log.warn("OAuth endpoint without storage: {error}", error=failure.value)
        error = TemporarilyUnavailable("try again shortly")
        return render_oauth_error(cast(Request, request), error)

    @oauth_app.handle_errors(Exception)
    def crashed(self, request: IRequest, failure: Failure) -> bytes:
        """A bug: logged with its traceback, answered 500 ``server_error`` without details."""
        self.log.failure("OAuth endpoint failed", failure=failure)
        return render_oauth_error(cast(Request, request), ServerError("internal error"))

    # discovery

    def metadata(self, request: Request, overrides: AuthServerOverrides | None = None) -> bytes:
        """The RFC 8414 document (MCP-4, MCP-5, MCP-12), with a proxy's overrides if given."""
        document = authorization_server_metadata(
            self.settings.base,
            scopes_supported=self.scopes_supported(),
            registration=self.settings.registration != "closed",
            client_id_metadata_documents=self.documents is not None,
            overrides=overrides,
        )
        set_header(request, "Content-Type", "application/json")
        set_header(request, "Cache-Control", "public, max-age=300")
        return json.dumps(document).encode("utf-8")

    def proxy_metadata(self, request: Request, hostname: str) -> bytes:
        """The document served at a proxy's own well-known URLs (its ``oauth_server``)."""
        proxy = self.snapshots.current.proxies.get(hostname.lower())
        if proxy is None:
            request.setResponseCode(404)
            set_header(request, "Content-Type", "application/json")
            return b'{"error":"not_found"}'
        return self.metadata(request, proxy.oauth_server)

    @oauth_app.route(f"/.well-known/{AS_WELL_KNOWN}", methods=["GET"])
    @oauth_app.route(f"/.well-known/{OIDC_WELL_KNOWN}", methods=["GET"])
    def well_known(self, request: Request) -> bytes:
        """Metadata at the root well-known URLs (host-only issuer)."""
        if self.settings.path:
            return render_oauth_error(request, InvalidRequest("no such metadata document"))
        return self.metadata(request)

    @oauth_app.route(f"/.well-known/{AS_WELL_KNOWN}/<path:rest>", methods=["GET"])
    @oauth_app.route(f"/.well-known/{OIDC_WELL_KNOWN}/<path:rest>", methods=["GET"])
    @oauth_app.route(f"/<path:rest>/.well-known/{OIDC_WELL_KNOWN}", methods=["GET"])
    def inserted_well_known(self, request: Request, rest: str) -> bytes:
        """Path-inserted metadata URLs (RFC 8414 §3.1, MCP-4) for an issuer with a path."""
        if "/" + rest.strip("/") != self.settings.path:
            request.setResponseCode(404)
            set_header(request, "Content-Type", "application/json")
            return b'{"error":"not_found"}'
        return self.metadata(request)

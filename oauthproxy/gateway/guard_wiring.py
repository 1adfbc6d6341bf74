"""Wiring the guard and the authorization server into a daemon (for the composition root).

:func:`wire_oauth` is what ``tap.compose`` calls: it builds the :class:`~.guard.Guard`
(verifying with a :class:`~oauthproxy.oauth.verifier.SnapshotVerifier` over the mirror)
and starts building the :class:`~oauthproxy.oauth.server.OAuthServer`, whose signing key
needs one round trip to the store.  Once built, the server is mounted on the admin API's
site and handed to the guard for the auth hostname (the issuer's host) and for the browser
logins of redirect-mode proxies, and its
:class:`~oauthproxy.oauth.revocation.ReaperService` joins the daemon's services.  Without
an issuer (neither ``OAUTHPROXY_OAUTH_ISSUER`` nor ``BASE_DOMAIN``) there is no
authorization server: ``oauth`` proxies then refuse every token.  That, a missing GitHub
app and a server that failed to start are said in the log at start and kept in
:meth:`OAuthWiring.status` (``/health``, and the admin API's refusals).
"""

from __future__ import annotations

from functools import partial
from typing import Any
from urllib.parse import urlsplit

from attrs import define, field
from treq.client import HTTPClient
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool

from oauthproxy.admin.oauth_keys import SigningKeyResource
from oauthproxy.config import Config
from oauthproxy.gateway.guard import Guard
from oauthproxy.gateway.guard_login import BrowserLogin
from oauthproxy.oauth.errors import InvalidToken
from oauthproxy.oauth.proxies import resource_of
from oauthproxy.oauth.records import AccessTokenClaims
from oauthproxy.oauth.resource_http import derive_secret
from oauthproxy.oauth.resource_setup import build_oauth_server, issuer_of, public_ports
from oauthproxy.oauth.revocation import ReaperService
from oauthproxy.oauth.server import OAuthServer
from oauthproxy.oauth.status import SETTINGS_HINT, OAuthState, OAuthStatus
from oauthproxy.oauth.verifier import SnapshotVerifier
from oauthproxy.storage.crypto import SecretBox, key_from_b64, load_or_create_key

_log = Logger()


def _no_server(token: str, audience: str | None) -> AccessTokenClaims:
    """The token check without an authorization server: nothing is valid."""
    raise InvalidToken("no authorization server is configured")


def storage_box(config: Config) -> SecretBox:
    """The storage encryption box, from the same key the storage uses (bootstrap)."""
    if config.secret_key_b64 is not None:
        return SecretBox(key_from_b64(config.secret_key_b64))
    return SecretBox(load_or_create_key(config.data_dir))


@define(eq=False)
class OAuthWiring:
    """The guard, the admin API's access-token verifier and the server once built."""

    guard: Guard
    issuer: str | None
    access_tokens: SnapshotVerifier | None
    server: OAuthServer | None = None
    ready: Deferred[None] | None = None
    #: whether the global GitHub OAuth app is configured
    github_app: bool = False
    #: why the server failed to start, once it did
    failure: str | None = None
    #: ``OAUTH_REGISTRATION``
    registration: str = "open"
    _unsubscribe: Any = None
    _pool: HTTPConnectionPool | None = field(default=None)

    def status(self) -> OAuthStatus:
        """The authorization server's state now."""
        if self.issuer is None:
            state: OAuthState = "off"
        elif self.failure is not None:
            state = "failed"
        else:
            state = "ready" if self.server is not None else "starting"
        return OAuthStatus(
            state, self.issuer, self.github_app, self.failure or "", self.registration
        )

    def close(self) -> Deferred[None] | None:
        """Shutdown: stop following revocations, cancel stream timers, close GitHub's pool."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self.guard.streams.close()
        if self._pool is not None:
            closed: Deferred[None] = self._pool.closeCachedConnections()  # type: ignore[no-untyped-call]
            return closed
        return None


def wire_oauth(config: Config, reactor: Any, snapshots: Any) -> OAuthWiring:
    """The guard (and verifier) for a daemon; :func:`start_oauth_server` builds the server."""
    issuer = issuer_of(config) if (config.oauth_issuer or config.base_domain) else None
    github_app = bool(config.github_client_id and config.github_client_secret)
    resources = partial(resource_of, ports=public_ports(config))
    if issuer is None:
        _log.warn("OAuth authorization server off: {hint}", hint=SETTINGS_HINT)
        guard = Guard(
            snapshots,
            _no_server,
            reactor,
            "",
            config.oauth_allowed_github_users,
            resource_of=resources,
        )
        wiring = OAuthWiring(guard, None, None, github_app=github_app)
    else:
        if not github_app:
            _log.warn(
                "no GitHub OAuth app (GITHUB_CLIENT_ID/GITHUB_CLIENT_SECRET): nobody can log "
                "in at {issuer} except through proxies with an app of their own",
                issuer=issuer,
            )
        verifier = SnapshotVerifier(snapshots, reactor, issuer)
        guard = Guard(
            snapshots,
            verifier.check,
            reactor,
            issuer,
            config.oauth_allowed_github_users,
            resource_of=resources,
            auth_hosts=frozenset({(urlsplit(issuer).hostname or "").lower()}),
        )
        audience_bound = SnapshotVerifier(snapshots, reactor, issuer, audience=issuer)
        wiring = OAuthWiring(guard, issuer, audience_bound, github_app=github_app)
    wiring.registration = config.oauth_registration
    wiring._unsubscribe = guard.start()
    return wiring


def start_oauth_server(
    wiring: OAuthWiring,
    config: Config,
    reactor: Any,
    storage: Any,
    snapshots: Any,
    admin: Any,
    admin_site: Any,
    services: MultiService,
) -> Deferred[None] | None:
    """Build the server; mount it (and ``/oauth/keys``) on ``admin_site`` and the guard."""
    if wiring.issuer is None:
        return None
    pool = HTTPConnectionPool(reactor)  # type: ignore[no-untyped-call]
    wiring._pool = pool
    http = HTTPClient(Agent(reactor, pool=pool))  # type: ignore[no-untyped-call]
    box = storage_box(config)
    built = Deferred.fromCoroutine(
        build_oauth_server(config, storage, snapshots, reactor, box, http)
    )

    def mount(server: OAuthServer) -> None:
        wiring.server = server
        wiring.guard.auth_resource = server.resource()
        wiring.guard.proxy_metadata = server.proxy_metadata
        # redirect-mode proxies log browsers in against our own token endpoint
        wiring.guard.login = BrowserLogin(
            server.settings.base,
            derive_secret(box.key, "oauthproxy-guard-login"),
            reactor,
            http,
            storage.oauth.put_client,
        )
        if admin_site is not None:
            keys = SigningKeyResource(
                admin.context,
                storage.oauth,
                snapshots,
                reactor,
                box,
                float(server.settings.access_token_lifetime),
            )
            admin_site.resource = admin.resource(server, keys)
        ReaperService(server.revoker, reactor).setServiceParent(services)  # type: ignore[no-untyped-call]
        _log.info("OAuth authorization server ready for {issuer}", issuer=wiring.issuer)

    def failed(failure: Failure) -> None:
        wiring.failure = failure.getErrorMessage()
        _log.failure("the OAuth authorization server could not start", failure)

    ready: Deferred[None] = built.addCallback(mount)
    ready.addErrback(failed)
    wiring.ready = ready
    return ready

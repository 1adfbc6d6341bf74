"""Building the authorization server from configuration (for the composition root).

:func:`build_oauth_server` is what ``tap.makeService`` calls once: it derives the
settings from :class:`~oauthproxy.config.Config` (the issuer from configuration only,
ATK-8), ensures the signing key every daemon shares (:mod:`oauthproxy.oauth.keys`) and
returns an :class:`~oauthproxy.oauth.server.OAuthServer` ready to be mounted.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import cast

from treq.client import HTTPClient
from twisted.internet.interfaces import IReactorTime
from twisted.web.client import HTTPConnectionPool

from oauthproxy.config import Config
from oauthproxy.errors import ConfigError
from oauthproxy.interfaces import ISnapshotSource, IStorage
from oauthproxy.oauth import cimd
from oauthproxy.oauth.github import GitHubApp, GitHubClient
from oauthproxy.oauth.keys import ensure_signing_key
from oauthproxy.oauth.limits import Rate
from oauthproxy.oauth.metadata import validate_issuer
from oauthproxy.oauth.proxies import PublicPorts
from oauthproxy.oauth.resource_cimd import (
    MetadataDocumentFetcher,
    SystemAndExtraAuthorities,
    pinned_agent_factory,
    reactor_resolver,
)
from oauthproxy.oauth.resource_http import OAuthSettings, RegistrationMode, derive_secret
from oauthproxy.oauth.server import OAuthServer
from oauthproxy.storage.crypto import SecretBox


def issuer_of(config: Config) -> str:
    """The issuer: ``OAUTHPROXY_OAUTH_ISSUER``, else ``https://auth.<BASE_DOMAIN>`` (ATK-8).

    The derived issuer carries the public HTTPS port when that is not 443.
    """
    if config.oauth_issuer:
        return validate_issuer(config.oauth_issuer)
    if not config.base_domain:
        raise ConfigError(
            "the OAuth server needs OAUTHPROXY_OAUTH_ISSUER or BASE_DOMAIN", field="oauth_issuer"
        )
    port = config.public_port("https")
    return validate_issuer(
        f"https://auth.{config.base_domain}" + ("" if port == 443 else f":{port}")
    )


def settings_from_config(config: Config, box: SecretBox) -> OAuthSettings:
    """The server's settings; cookie and CSRF keys are derived from the storage key."""
    app = GitHubApp(
        client_id=config.github_client_id or "",
        client_secret=config.github_client_secret or "",
        base_url=config.github_base_url,
        api_url=config.github_api_url,
    )
    return OAuthSettings(
        issuer=issuer_of(config),
        github=app,
        secret=derive_secret(box.key),
        access_token_lifetime=config.oauth_access_token_lifetime,
        refresh_token_lifetime=config.oauth_refresh_token_lifetime,
        refresh_retry_window=config.oauth_refresh_retry_window,
        login_timeout=float(config.oauth_session_timeout),
        client_lifetime=float(config.oauth_client_lifetime),
        unused_client_lifetime=float(config.oauth_unused_client_lifetime),
        allowed_users=config.oauth_allowed_github_users,
        max_clients=config.oauth_max_clients,
        registration=cast(RegistrationMode, config.oauth_registration),
        register_rate=_rate(config.oauth_register_rate),
        failure_rate=_rate(config.oauth_failure_rate),
        public_ports=public_ports(config),
    )


def public_ports(config: Config) -> PublicPorts:
    """The ports clients reach protected proxies on (listeners or configured, MCP-3)."""
    return PublicPorts(https=config.public_port("https"), http=config.public_port("http"))


def _rate(setting: tuple[int, float] | None) -> Rate | None:
    """A ``(count, seconds)`` setting as a :class:`Rate` (None: no limit)."""
    return None if setting is None else Rate(*setting)


async def build_oauth_server(
    config: Config,
    storage: IStorage,
    snapshots: ISnapshotSource,
    reactor: IReactorTime,
    box: SecretBox,
    http: HTTPClient,
) -> OAuthServer:
    """The composition root's one call: signing key ensured, server ready to mount.

    ``http`` is a treq client with the daemon's own connection pool, used for GitHub
    only.  Mount the result with ``AdminAPI.site(server)`` and give the gateway
    ``server.resource()``; run a :class:`~oauthproxy.oauth.revocation.ReaperService`
    over ``server.revoker``.
    """
    settings = settings_from_config(config, box)
    key = await ensure_signing_key(
        storage.oauth,
        box,
        configured_pem_b64=config.oauth_jwt_private_key_b64,
        now=reactor.seconds(),
    )
    trust_root = None
    if config.cimd_ca_bundle:
        # read once while starting, before anything is served
        pem = Path(config.cimd_ca_bundle).read_bytes()
        trust_root = SystemAndExtraAuthorities.from_pem(pem)
    documents = MetadataDocumentFetcher(
        reactor,
        reactor_resolver(reactor),
        pinned_agent_factory(
            reactor,
            HTTPConnectionPool(reactor, persistent=False),  # type: ignore[no-untyped-call]
            trust_root,
        ),
        check_addresses=partial(
            cimd.check_addresses, allowed_networks=config.cimd_allowed_networks
        ),
    )
    return OAuthServer(
        settings,
        storage.oauth,
        snapshots,
        reactor,
        GitHubClient(http, settings.github, reactor),
        key,
        documents,
        box,
    )

"""What the authorization server and the guard read from the proxy records (pure functions).

A proxy is protected when its ``auth.auth_type`` is ``oauth``.  Its resource URI (the
``aud`` of tokens for it) is ``Proxy.oauth_resource.resource`` when set, else
``https://<hostname>``, always canonical (:func:`resource_of`).  Its RFC 9728 document
(:func:`proxy_resource_metadata`) and the RFC 8414 document served at its own host
(``OAuthServer.proxy_metadata``) combine the daemon's defaults with
``Proxy.oauth_resource`` and ``Proxy.oauth_server``.  A login whose ``resource`` names
proxies with a GitHub app of their own (``Proxy.github_client_id``/``_secret``) goes to
GitHub with that app (:func:`github_app_for`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from attrs import evolve

from oauthproxy.model import Proxy
from oauthproxy.oauth.errors import InvalidTarget
from oauthproxy.oauth.github import GitHubApp
from oauthproxy.oauth.metadata import canonical_resource, protected_resource_metadata


def is_protected(proxy: Proxy) -> bool:
    """Whether the proxy takes our OAuth access tokens."""
    return proxy.auth is not None and proxy.auth.auth_type == "oauth"


def resource_of(proxy: Proxy) -> str:
    """The canonical resource URI of ``proxy``: what its tokens' ``aud`` holds."""
    configured = proxy.oauth_resource.resource if proxy.oauth_resource is not None else None
    return canonical_resource(configured or f"https://{proxy.hostname}")


def protected_resources(proxies: Iterable[Proxy]) -> dict[str, tuple[str, ...]]:
    """Each protected proxy's resource URI -> its user allowlist (empty: global list only)."""
    return {
        resource_of(proxy): proxy.auth.required_users
        for proxy in proxies
        if proxy.auth is not None and is_protected(proxy)
    }


def proxy_scopes(proxies: Iterable[Proxy]) -> tuple[str, ...]:
    """Every scope a proxy requires or advertises (so that clients may request it)."""
    scopes: list[str] = []
    for proxy in proxies:
        if proxy.auth is not None:
            scopes += proxy.auth.required_scopes
        if proxy.oauth_resource is not None:
            scopes += proxy.oauth_resource.scopes_supported
        if proxy.oauth_server is not None:
            scopes += proxy.oauth_server.scopes_supported or ()
    return tuple(dict.fromkeys(scopes))


def github_app_for(
    proxies: Iterable[Proxy], resources: Sequence[str], default: GitHubApp
) -> GitHubApp:
    """The GitHub app for a login asking for ``resources`` (canonical URIs).

    A requested proxy with an app of its own chooses that app (on the same GitHub as
    ``default``); proxies with different apps cannot share one login
    (``invalid_target``); otherwise the global app.
    """
    wanted = set(resources)
    apps = {
        (proxy.github_client_id, proxy.github_client_secret)
        for proxy in proxies
        if proxy.github_client_id and proxy.github_client_secret and resource_of(proxy) in wanted
    }
    if not apps:
        return default
    if len(apps) > 1:
        raise InvalidTarget("these resources use different GitHub apps: ask for one", "resource")
    [(client_id, secret)] = apps
    assert client_id is not None and secret is not None
    return evolve(default, client_id=client_id, client_secret=secret)


def proxy_resource_metadata(
    proxy: Proxy, issuer: str, *, scopes_supported: Sequence[str] = ()
) -> dict[str, Any]:
    """The RFC 9728 document of a protected proxy (for the guard to serve).

    Scopes default to those the proxy requires; the authorization server is the
    ``oauth_server`` issuer override, else ``issuer`` (the daemon's).
    """
    server = proxy.oauth_server.issuer if proxy.oauth_server is not None else None
    required = proxy.auth.required_scopes if proxy.auth is not None else ()
    return protected_resource_metadata(
        resource_of(proxy),
        authorization_servers=((server or issuer).rstrip("/"),),
        scopes_supported=tuple(scopes_supported) or required,
        settings=proxy.oauth_resource,
    )

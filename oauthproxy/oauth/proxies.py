"""What the authorization server and the guard read from the proxy records (pure functions).

A proxy is protected when its ``auth.auth_type`` is ``oauth``.  Its resource URI (the
``aud`` of tokens for it) is ``Proxy.oauth_resource.resource`` when set, else its public
base URL (:func:`base_url`): ``https://<hostname>`` with the public HTTPS port when that
is not 443, or ``http://<hostname>`` with the public HTTP port for an HTTP-only proxy
(:class:`PublicPorts`, from the listeners or their configured public ports), always
canonical (:func:`resource_of`, MCP-3).  Its RFC 9728 document
(:func:`proxy_resource_metadata`) and the RFC 8414 document served at its own host
(``OAuthServer.proxy_metadata``) combine the daemon's defaults with
``Proxy.oauth_resource`` and ``Proxy.oauth_server``.  A login whose ``resource`` names
proxies with a GitHub app of their own (``Proxy.github_client_id``/``_secret``) goes to
GitHub with that app (:func:`github_app_for`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from attrs import evolve, frozen

from oauthproxy.model import Proxy
from oauthproxy.oauth.errors import InvalidTarget
from oauthproxy.oauth.github import GitHubApp
from oauthproxy.oauth.metadata import canonical_resource, protected_resource_metadata


@frozen
class PublicPorts:
    """The ports clients reach the gateway on (``Config.public_port``)."""

    https: int = 443
    http: int = 80


def base_url(proxy: Proxy, ports: PublicPorts = PublicPorts()) -> str:
    """Where clients reach ``proxy``: over HTTPS unless it is an HTTP-only proxy."""
    scheme, port = ("https", ports.https) if proxy.enable_https else ("http", ports.http)
    default = 443 if scheme == "https" else 80
    return f"{scheme}://{proxy.hostname}" + ("" if port == default else f":{port}")


def is_protected(proxy: Proxy) -> bool:
    """Whether the proxy takes our OAuth access tokens."""
    return proxy.auth is not None and proxy.auth.auth_type == "oauth"


def resource_of(proxy: Proxy, ports: PublicPorts = PublicPorts()) -> str:
    """The canonical resource URI of ``proxy``: what its tokens' ``aud`` holds."""
    configured = proxy.oauth_resource.resource if proxy.oauth_resource is not None else None
    return canonical_resource(configured or base_url(proxy, ports))


def protected_resources(
    proxies: Iterable[Proxy], ports: PublicPorts = PublicPorts()
) -> dict[str, tuple[str, ...]]:
    """Each protected proxy's resource URI -> its user allowlist (empty: global list only)."""
    return {
        resource_of(proxy, ports): proxy.auth.required_users
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
    proxies: Iterable[Proxy],
    resources: Sequence[str],
    default: GitHubApp,
    ports: PublicPorts = PublicPorts(),
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
        if proxy.github_client_id
        and proxy.github_client_secret
        and resource_of(proxy, ports) in wanted
    }
    if not apps:
        return default
    if len(apps) > 1:
        raise InvalidTarget("these resources use different GitHub apps: ask for one", "resource")
    [(client_id, secret)] = apps
    assert client_id is not None and secret is not None
    return evolve(default, client_id=client_id, client_secret=secret)


def proxy_resource_metadata(
    proxy: Proxy,
    issuer: str,
    *,
    scopes_supported: Sequence[str] = (),
    resource: str | None = None,
) -> dict[str, Any]:
    """The RFC 9728 document of a protected proxy (for the guard to serve).

    Scopes default to those the proxy requires; the authorization server is the
    ``oauth_server`` issuer override, else ``issuer`` (the daemon's).  ``resource`` is the
    proxy's resource URI as the caller derives it (:func:`resource_of` with its ports).
    """
    server = proxy.oauth_server.issuer if proxy.oauth_server is not None else None
    required = proxy.auth.required_scopes if proxy.auth is not None else ()
    return protected_resource_metadata(
        resource or resource_of(proxy),
        authorization_servers=((server or issuer).rstrip("/"),),
        scopes_supported=tuple(scopes_supported) or required,
        settings=proxy.oauth_resource,
    )

"""Discovery documents: RFC 8414 server metadata, RFC 9728 resource metadata, URLs.

Everything here is built from configuration and stored records, never from the
request's ``Host`` (ATK-8).  Resource URIs are compared in the canonical form of MCP-3
(:func:`canonical_resource`); well-known URLs are path-inserted as RFC 8414 §3.1 and
RFC 9728 §3.1 describe, and clients try the variants of MCP-2 and MCP-4.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from oauthproxy.errors import ConfigError
from oauthproxy.oauth.errors import InvalidTarget
from oauthproxy.oauth.pkce import SUPPORTED_METHODS
from oauthproxy.oauth.records import AuthServerOverrides, ResourceSettings

GRANT_TYPES = ("authorization_code", "refresh_token")
RESPONSE_TYPES = ("code",)
AUTH_METHODS = ("none", "client_secret_basic", "client_secret_post")
OFFLINE_ACCESS = "offline_access"
DEFAULT_CLAIMS = ("iss", "sub", "aud", "exp", "iat", "jti", "scope", "client_id", "username")

AS_WELL_KNOWN = "oauth-authorization-server"
OIDC_WELL_KNOWN = "openid-configuration"
PRM_WELL_KNOWN = "oauth-protected-resource"


def canonical_resource(uri: str) -> str:
    """The canonical form of a resource URI (MCP-3, RFC 8707 §2).

    Lower-case scheme and host, no default port, no fragment, no trailing slash.  Raises
    :class:`InvalidTarget` for anything that is not an absolute http(s) URI without a
    fragment or userinfo.
    """
    if not isinstance(uri, str) or "#" in uri or any(c.isspace() for c in uri):
        raise InvalidTarget("resource must be an absolute URI without a fragment", "resource")
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError as e:
        raise InvalidTarget("resource is not a valid URI", "resource") from e
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http") or not parts.hostname or "@" in parts.netloc:
        raise InvalidTarget("resource must be an absolute http(s) URI", "resource")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != {"https": 443, "http": 80}[scheme]:
        host = f"{host}:{port}"
    path = parts.path.rstrip("/")
    query = f"?{parts.query}" if parts.query else ""
    return f"{scheme}://{host}{path}{query}"


def validate_issuer(issuer: str) -> str:
    """Check the configured issuer: https (MCP-15), no query or fragment (RFC 8414 §2).

    Plain http is allowed only on loopback hosts, for tests and local development.
    Returns the issuer without a trailing slash, the form every document uses.
    """
    try:
        parts = urlsplit(issuer)
    except ValueError as e:
        raise ConfigError(f"issuer {issuer!r} is not a URL", "oauth_issuer") from e
    loopback = parts.hostname in ("127.0.0.1", "::1", "localhost")
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise ConfigError("the OAuth issuer must be an https URL", "oauth_issuer")
    if not parts.hostname or parts.query or parts.fragment or "@" in parts.netloc:
        raise ConfigError("the OAuth issuer needs a host and no query or fragment", "oauth_issuer")
    return issuer.rstrip("/")


def path_inserted_well_known(url: str, name: str) -> str:
    """``https://host/.well-known/<name><path>`` for ``https://host<path>`` (RFC 8414 §3.1)."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    return f"{parts.scheme}://{parts.netloc}/.well-known/{name}{path}"


def authorization_server_metadata_urls(issuer: str) -> tuple[str, ...]:
    """The URLs clients try for an issuer's metadata, in their order (MCP-4).

    For an issuer with a path ``/t``: the path-inserted RFC 8414 and OIDC URLs, then the
    appended OIDC URL.  For a bare host: the two root documents.
    """
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    oauth = path_inserted_well_known(issuer, AS_WELL_KNOWN)
    oidc = path_inserted_well_known(issuer, OIDC_WELL_KNOWN)
    if not path:
        return (oauth, oidc)
    return (oauth, oidc, f"{parts.scheme}://{parts.netloc}{path}/.well-known/{OIDC_WELL_KNOWN}")


def protected_resource_metadata_urls(resource: str) -> tuple[str, ...]:
    """Where a resource's RFC 9728 document is served: path-inserted, then root (MCP-2)."""
    inserted = path_inserted_well_known(resource, PRM_WELL_KNOWN)
    parts = urlsplit(resource)
    root = f"{parts.scheme}://{parts.netloc}/.well-known/{PRM_WELL_KNOWN}"
    return (inserted,) if inserted == root else (inserted, root)


def _narrowed(chosen: tuple[str, ...] | None, supported: tuple[str, ...]) -> list[str]:
    # overrides may drop features but never advertise ones we do not implement
    # (implicit, password: O21-7)
    if chosen is None:
        return list(supported)
    return [value for value in chosen if value in supported] or list(supported)


def authorization_server_metadata(
    issuer: str,
    *,
    scopes_supported: tuple[str, ...],
    registration: bool = True,
    client_id_metadata_documents: bool = True,
    overrides: AuthServerOverrides | None = None,
) -> dict[str, Any]:
    """The RFC 8414 document for ``issuer`` (and its OIDC discovery twin).

    ``code_challenge_methods_supported`` is always present (MCP-5, BCP-2), as is
    ``authorization_response_iss_parameter_supported`` since every authorization response
    carries ``iss`` (MCP-12, O21-15).  Overrides come from ``/proxy/targets/…/oauth-server``.
    """
    o = overrides or AuthServerOverrides()
    iss = (o.issuer or issuer).rstrip("/")
    scopes = _chosen(o.scopes_supported, scopes_supported, o.override_defaults)
    claims = _chosen(o.claims_supported, DEFAULT_CLAIMS, o.override_defaults)
    doc: dict[str, Any] = {
        "issuer": iss,
        "authorization_endpoint": f"{iss}/authorize",
        "token_endpoint": f"{iss}/token",
        "jwks_uri": f"{iss}/jwks",
        "revocation_endpoint": f"{iss}/revoke",
        "introspection_endpoint": f"{iss}/introspect",
        "scopes_supported": list(scopes),
        "response_types_supported": _narrowed(o.response_types_supported, RESPONSE_TYPES),
        "response_modes_supported": ["query"],
        "grant_types_supported": _narrowed(o.grant_types_supported, GRANT_TYPES),
        "token_endpoint_auth_methods_supported": _narrowed(
            o.token_endpoint_auth_methods_supported, AUTH_METHODS
        ),
        "revocation_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "bearer"],
        "code_challenge_methods_supported": list(SUPPORTED_METHODS),
        "authorization_response_iss_parameter_supported": True,
        "claims_supported": list(claims or DEFAULT_CLAIMS),
    }
    if registration:
        doc["registration_endpoint"] = f"{iss}/register"
    if client_id_metadata_documents:
        doc["client_id_metadata_document_supported"] = True
    for name, value in o.custom_fields.items():
        doc.setdefault(name, value)
    return doc


def _chosen(
    chosen: tuple[str, ...] | None, defaults: tuple[str, ...], replace: bool
) -> tuple[str, ...]:
    # override_defaults false: a proxy's scopes or claims add to the server's
    if chosen is None:
        return defaults
    if replace:
        return chosen
    return tuple(dict.fromkeys((*defaults, *chosen)))


def protected_resource_metadata(
    resource: str,
    *,
    authorization_servers: tuple[str, ...],
    scopes_supported: tuple[str, ...] = (),
    settings: ResourceSettings | None = None,
) -> dict[str, Any]:
    """The RFC 9728 document of a protected proxy (MCP-1, MCP-3, MCP-14).

    ``resource`` is canonical and equals what clients use; at least one authorization
    server is listed; ``offline_access`` is never advertised.  Tokens are accepted only
    in the ``Authorization`` header (MCP-16).
    """
    s = settings or ResourceSettings()
    servers = s.authorization_servers or authorization_servers
    if not servers:
        raise ConfigError("a protected resource needs an authorization server", "auth_proxy")
    scopes = s.scopes_supported or scopes_supported
    doc: dict[str, Any] = {
        "resource": canonical_resource(s.resource or resource),
        "authorization_servers": list(servers),
        "scopes_supported": [scope for scope in scopes if scope != OFFLINE_ACCESS],
        "bearer_methods_supported": ["header"],
    }
    if s.resource_name:
        doc["resource_name"] = s.resource_name
    if s.resource_documentation:
        doc["resource_documentation"] = s.resource_documentation
    for name, value in s.custom_fields.items():
        doc.setdefault(name, value)
    return doc

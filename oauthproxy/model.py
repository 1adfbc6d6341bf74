"""The records of the control plane, as immutable values.

Every record the admin API accepts, the store keeps and the data plane serves
from is an attrs ``@frozen`` class here.  They carry no behaviour beyond
derived properties; validation of user input happens in the admin API's
schemas, the storage codec (:mod:`oauthproxy.storage.codec`) turns them into
JSON and back.

Conventions:

- times are POSIX seconds (``float``) read from an injected clock;
- collections are tuples so that records stay hashable and immutable;
- ``owner`` is the *name* of the API token that created the record
  (``"admin"`` for the admin token); ownership checks compare it;
- secrets never appear in records: tokens are stored as SHA-256 hashes,
  private keys are encrypted by the storage layer before they reach Redis.
"""

from __future__ import annotations

from typing import Literal

from attrs import field, frozen

ADMIN_TOKEN_NAME = "admin"

AuthType = Literal["none", "bearer", "admin", "oauth"]
AuthMode = Literal["redirect", "forward", "passthrough"]
MatchType = Literal["prefix", "regex", "exact"]
TargetType = Literal["url", "service", "port", "proxy"]
RouteScope = Literal["global", "proxy"]
RouteMode = Literal["all", "selective", "none"]
CertStatus = Literal["pending", "ready", "failed"]

#: (name, value) pairs; order kept, names may repeat
Headers = tuple[tuple[str, str], ...]


@frozen
class ProxyAuth:
    """How a proxy authenticates its callers (the seed's "Configure Proxy Authentication")."""

    auth_type: AuthType = "oauth"
    #: the hostname serving the authorization server for this proxy
    auth_proxy: str | None = None
    auth_mode: AuthMode = "forward"
    required_users: tuple[str, ...] = ()
    required_scopes: tuple[str, ...] = ()
    allowed_audiences: tuple[str, ...] = ()
    excluded_paths: tuple[str, ...] = ()


@frozen
class Proxy:
    """A virtual host: requests for ``hostname`` go to ``target_url`` (or a matching route)."""

    hostname: str
    target_url: str
    enable_http: bool = True
    enable_https: bool = True
    preserve_host_header: bool = True
    custom_request_headers: Headers = ()
    custom_response_headers: Headers = ()
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    #: the certificate served for this hostname; None = any ready certificate covering it
    cert_name: str | None = None
    #: order certificates from the ACME staging directory
    staging: bool = False
    verify_upstream_tls: bool = True
    #: PEM bundle of CAs trusted for the upstream, instead of the system store
    upstream_ca_pem: str | None = None
    route_mode: RouteMode = "all"
    enabled_routes: tuple[str, ...] = ()
    disabled_routes: tuple[str, ...] = ()
    auth: ProxyAuth | None = None
    owner: str = ADMIN_TOKEN_NAME
    created_at: float = 0.0
    updated_at: float = 0.0


@frozen
class RouteAuth:
    """Per-route authentication (``PUT /routes/{id}/auth``)."""

    auth_type: AuthType = "bearer"
    override_proxy_auth: bool = False
    oauth_scopes: tuple[str, ...] = ()
    oauth_allowed_users: tuple[str, ...] = ()


@frozen
class Route:
    """A path rule: requests matching it go to its target instead of the proxy's."""

    route_id: str
    path_pattern: str
    target_type: TargetType
    target_value: str
    match_type: MatchType = "prefix"
    #: upper-case HTTP methods; empty = every method
    methods: tuple[str, ...] = ()
    #: higher first; ties broken by route_id
    priority: int = 50
    scope: RouteScope = "global"
    #: with scope "proxy": the hostnames the route applies to
    proxy_hostnames: tuple[str, ...] = ()
    enabled: bool = True
    description: str = ""
    auth: RouteAuth | None = None
    owner: str = ADMIN_TOKEN_NAME
    created_at: float = 0.0
    updated_at: float = 0.0


@frozen
class Certificate:
    """A certificate for one or more names, with its ACME lifecycle state."""

    cert_name: str
    domains: tuple[str, ...]
    email: str = ""
    staging: bool = False
    acme_directory_url: str = ""
    status: CertStatus = "pending"
    fullchain_pem: str | None = None
    #: plaintext only in memory; the storage layer encrypts it at rest
    private_key_pem: str | None = field(default=None, repr=False)
    not_before: float | None = None
    not_after: float | None = None
    fingerprint_sha256: str | None = None
    issuer: str | None = None
    #: the last failure's reason, while status is "failed" or a retry is scheduled
    error: str | None = None
    retry_at: float | None = None
    failures: int = 0
    owner: str = ADMIN_TOKEN_NAME
    created_at: float = 0.0
    updated_at: float = 0.0


@frozen
class ApiToken:
    """An API token: only the SHA-256 hex digest of its value is kept."""

    name: str
    token_hash: str = field(repr=False)
    owner_email: str = ""
    is_admin: bool = False
    created_at: float = 0.0
    last_used_at: float | None = None
    #: name of the token that created this one
    created_by: str = ADMIN_TOKEN_NAME


@frozen
class ExternalService:
    """A named URL that routes can target (``/services/external``)."""

    name: str
    target_url: str
    description: str = ""
    owner: str = ADMIN_TOKEN_NAME
    created_at: float = 0.0
    updated_at: float = 0.0


@frozen
class Event:
    """One entry of the ``events`` stream: a record of ``kind`` under ``key`` changed.

    ``record`` is the record's codec JSON after the change (None for deletions), so that
    applying an event needs no further read and applying it twice is harmless.
    """

    event_id: str
    type: str
    kind: str
    key: str
    record: str | None = None


@frozen
class Snapshot:
    """Everything the data plane serves from, as loaded from the store at one stream id.

    Built by the storage mirror at start and after every applied event; components
    read it without locks because a new Snapshot replaces the old one whole.
    """

    stream_id: str = "0-0"
    proxies: dict[str, Proxy] = field(factory=dict)
    routes: dict[str, Route] = field(factory=dict)
    certificates: dict[str, Certificate] = field(factory=dict)
    tokens: dict[str, ApiToken] = field(factory=dict)
    services: dict[str, ExternalService] = field(factory=dict)

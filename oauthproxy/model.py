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

import json
from collections.abc import Mapping
from typing import Any, Literal

from attrs import field, frozen

ADMIN_TOKEN_NAME = "admin"

AuthType = Literal["none", "bearer", "admin", "oauth"]
AuthMode = Literal["redirect", "forward", "passthrough"]
MatchType = Literal["prefix", "regex", "exact"]
TargetType = Literal["url", "service", "port", "proxy"]
RouteScope = Literal["global", "proxy"]
RouteMode = Literal["all", "selective", "none"]
CertStatus = Literal["pending", "ready", "failed"]
PortProtocol = Literal["tcp", "udp"]
NetworkMode = Literal["bridge", "host", "none"]
RestartPolicy = Literal["no", "always", "unless-stopped", "on-failure"]
DesiredState = Literal["running", "stopped"]
#: where a Docker service's record stands; anything but "ready" is an operation in flight
ServicePhase = Literal["creating", "ready", "updating", "deleting"]

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


#: extra top-level metadata fields: (name, JSON text) pairs, sorted by name
JsonFields = tuple[tuple[str, str], ...]


def json_fields(value: Mapping[str, Any]) -> JsonFields:
    """Extra metadata fields as stored: a JSON object's members become sorted pairs.

    Kept as JSON text so that the records stay hashable and immutable.
    """
    return tuple(sorted((name, json.dumps(item, sort_keys=True)) for name, item in value.items()))


@frozen
class ResourceSettings:
    """A proxy's RFC 9728 protected-resource settings (``/proxy/targets/{hostname}/resource``)."""

    #: the resource URI (on the proxy's own host); None = ``https://<hostname>``
    resource: str | None = None
    #: issuers listed in the document; empty = this daemon's authorization server
    authorization_servers: tuple[str, ...] = ()
    scopes_supported: tuple[str, ...] = ()
    #: only "header": tokens in query strings or bodies are ignored (MCP-16)
    bearer_methods_supported: tuple[str, ...] = ("header",)
    resource_name: str | None = None
    resource_documentation: str | None = None
    #: extra top-level fields (made by :func:`json_fields`); never replace standard ones
    custom_metadata: JsonFields = ()

    @property
    def custom_fields(self) -> dict[str, Any]:
        """``custom_metadata`` as a JSON object."""
        return {name: json.loads(text) for name, text in self.custom_metadata}


@frozen
class AuthServerOverrides:
    """A proxy's authorization-server metadata overrides (``…/{hostname}/oauth-server``)."""

    issuer: str | None = None
    scopes_supported: tuple[str, ...] | None = None
    grant_types_supported: tuple[str, ...] | None = None
    response_types_supported: tuple[str, ...] | None = None
    token_endpoint_auth_methods_supported: tuple[str, ...] | None = None
    claims_supported: tuple[str, ...] | None = None
    #: kept from the seed's settings; PKCE S256 is required regardless (BCP-2)
    pkce_required: bool = True
    #: extra top-level fields (made by :func:`json_fields`); never replace standard ones
    custom_metadata: JsonFields = ()
    #: True: the lists above replace the server's; False: scopes and claims add to them
    override_defaults: bool = True

    @property
    def custom_fields(self) -> dict[str, Any]:
        """``custom_metadata`` as a JSON object."""
        return {name: json.loads(text) for name, text in self.custom_metadata}


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
    #: client request headers never forwarded to this backend, besides the built-in ones
    strip_request_headers: tuple[str, ...] = ()
    #: forward client header names that contain "_" (dropped by default, like nginx)
    keep_underscore_headers: bool = False
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
    #: RFC 9728 settings of this protected resource; None = the defaults
    oauth_resource: ResourceSettings | None = None
    #: authorization-server metadata served for this proxy; None = the server's own
    oauth_server: AuthServerOverrides | None = None
    #: a GitHub OAuth app used instead of the global one for logins to this proxy
    github_client_id: str | None = None
    #: plaintext only in memory; the storage layer encrypts it at rest
    github_client_secret: str | None = field(default=None, repr=False)


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
    #: (identifier, time) of the recent failed authorizations, so that every daemon,
    #: also after a restart, keeps within the CA's limit per identifier and hour
    failed_authorizations: tuple[tuple[str, float], ...] = ()
    owner: str = ADMIN_TOKEN_NAME
    created_at: float = 0.0
    updated_at: float = 0.0
    #: when the current chain was stored (our clock, not the CA's): renewal never
    #: comes sooner than a minimum interval after it, whatever the dates say
    issued_at: float | None = None
    #: the ACME order in flight (its URL and the account URL that placed it), kept
    #: so that the next attempt after a daemon died mid-order resumes that order
    order_url: str | None = None
    order_account_url: str | None = None


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
class ServicePort:
    """A port of a Docker service: ``bind:host`` on the Docker host reaches ``container``.

    A port with ``allowed_networks`` or a token (``token_hash``) is *guarded*: the
    daemon itself listens on ``bind:host``, checks each client, and relays to the
    container (Docker publishes it otherwise).  A token makes it an HTTP port.
    """

    name: str
    host: int
    container: int
    bind: str = "127.0.0.1"
    protocol: PortProtocol = "tcp"
    description: str = ""
    #: client networks (CIDRs) allowed to connect; empty = any
    allowed_networks: tuple[str, ...] = ()
    #: SHA-256 hex of the port's access token (HTTP ports); None = no token
    token_hash: str | None = field(default=None, repr=False)

    @property
    def guarded(self) -> bool:
        """Whether the daemon's own listener serves this port (access control)."""
        return bool(self.allowed_networks) or self.token_hash is not None


@frozen
class VolumeMount:
    """A named volume or (under the configured directories) a host path in a container."""

    source: str
    target: str
    read_only: bool = False

    @property
    def is_bind(self) -> bool:
        """Whether ``source`` is a host path (a bind mount) rather than a named volume."""
        return self.source.startswith("/")


@frozen
class HealthCheck:
    """The container's healthcheck: ``test`` runs in the container (exec form, no shell)."""

    test: tuple[str, ...]
    interval: float = 30.0
    timeout: float = 10.0
    retries: int = 3
    start_period: float = 0.0


@frozen
class ImageBuild:
    """Build the service's image from a Dockerfile under a configured build directory."""

    context: str
    #: the Dockerfile, relative to ``context``
    dockerfile: str = "Dockerfile"
    args: tuple[tuple[str, str], ...] = ()


@frozen
class DockerService:
    """A container the daemon creates and runs (``/services/``, record kind ``docker_service``).

    The record is the desired configuration plus what the daemon learned making it
    (``container_id``, ``address``).  ``phase`` is ``ready`` except while an operation
    is in flight; an operation interrupted (the daemon died) is finished or undone by
    the reconciler, which also uses ``previous`` (the record before an update, codec
    JSON) to roll an interrupted update back.  Ports of ``previous`` stay reserved
    until the update ends, so a rollback always finds them free.
    """

    name: str
    #: the image run; for builds the tag the build produces
    image: str
    build: ImageBuild | None = None
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    environment: tuple[tuple[str, str], ...] = ()
    volumes: tuple[VolumeMount, ...] = ()
    network_mode: NetworkMode = "bridge"
    #: networks joined besides the default one (bridge mode only)
    networks: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    #: bytes
    memory_limit: int = 512 * 1024 * 1024
    #: CPUs (1.0 = one core)
    cpu_limit: float = 1.0
    restart_policy: RestartPolicy = "unless-stopped"
    #: with "on-failure": give up after this many restarts (0 = never give up)
    restart_max_retries: int = 0
    healthcheck: HealthCheck | None = None
    user: str | None = None
    read_only: bool = False
    cap_drop: tuple[str, ...] = ()
    cap_add: tuple[str, ...] = ()
    #: the port proxies, routes and ``address`` reach the service on
    internal_port: int | None = None
    ports: tuple[ServicePort, ...] = ()
    desired_state: DesiredState = "running"
    phase: ServicePhase = "creating"
    #: incremented by every create or update; containers carry it as a label
    generation: int = 1
    container_id: str | None = None
    #: the IP the daemon reaches the container at (127.0.0.1 with host networking);
    #: None while unknown (no container, or not running on a bridge)
    ip: str | None = None
    #: hostnames of the proxies made for this service (their targets follow ``address``)
    proxies: tuple[str, ...] = ()
    #: during an update: the record before it (codec JSON), for the rollback
    previous: str | None = field(default=None, repr=False)
    owner: str = ADMIN_TOKEN_NAME
    created_at: float = 0.0
    updated_at: float = 0.0

    @property
    def address(self) -> str | None:
        """``ip:internal_port``, where proxies and routes reach the service; None if unknown."""
        if self.ip is None or self.internal_port is None:
            return None
        shown = f"[{self.ip}]" if ":" in self.ip else self.ip
        return f"{shown}:{self.internal_port}"

    @property
    def upstream_url(self) -> str | None:
        """``http://<address>``, what proxies and routes forward to; None while unknown."""
        return None if self.address is None else f"http://{self.address}"


@frozen
class AuthRule:
    """An admin API endpoint auth rule (``/auth/endpoints``): who may call matching paths.

    ``path_pattern`` is matched against the request's canonical path (no query);
    ``*`` matches any run of characters, ``/`` included.  The highest ``priority``
    matching rule decides; ties go to the lower ``config_id``.
    """

    config_id: str
    path_pattern: str
    #: upper-case HTTP methods, or ``("*",)`` for every method
    methods: tuple[str, ...] = ("*",)
    auth_type: AuthType = "bearer"
    oauth_scopes: tuple[str, ...] = ()
    oauth_allowed_users: tuple[str, ...] = ()
    priority: int = 50
    description: str = ""
    owner: str = ADMIN_TOKEN_NAME
    created_at: float = 0.0
    updated_at: float = 0.0


@frozen
class Claims:
    """What a verified OAuth access token says (``IAccessTokenVerifier.verify``)."""

    #: the GitHub login of the user the token was issued to
    username: str
    scopes: tuple[str, ...] = ()
    subject: str = ""
    client_id: str = ""
    audience: tuple[str, ...] = ()


@frozen
class OAuthRevocation:
    """A revoked OAuth access token, by ``jti``, kept until the token would have expired.

    A mirrored kind (``oauth_revocation``): the event tail brings it to every daemon's
    snapshot, where :class:`~oauthproxy.interfaces.IAccessTokenVerifier` refuses the token.
    """

    jti: str
    expires_at: float
    revoked_at: float = 0.0
    username: str = ""
    client_id: str = ""
    reason: str = ""


@frozen
class OAuthSigningKey:
    """An RS256 key of the authorization server (mirrored kind ``oauth_signing_key``).

    ``public_jwk`` is the public JWK as JSON text, which every daemon verifies with;
    ``sealed_private_key`` is the PEM sealed with the storage SecretBox (context: the
    kid), empty when the key comes from ``OAUTH_JWT_PRIVATE_KEY_B64``.  A rotation
    publishes the next key before it signs (``activates_at``) and retires the old one
    once its last tokens have expired (``retires_at``): then verifiers drop it.
    """

    kid: str
    public_jwk: str
    sealed_private_key: str = field(default="", repr=False)
    created_at: float = 0.0
    #: when it starts signing (0: since it was created)
    activates_at: float = 0.0
    #: when verifiers stop accepting it (0: never)
    retires_at: float = 0.0


@frozen
class OAuthAccessToken:
    """An access token we issued (not the token itself): what admin lists and revokes."""

    jti: str
    family_id: str
    client_id: str
    username: str
    subject: str = ""
    audience: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    issued_at: float = 0.0
    expires_at: float = 0.0


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
    docker_services: dict[str, DockerService] = field(factory=dict)
    auth_rules: dict[str, AuthRule] = field(factory=dict)
    oauth_revocations: dict[str, OAuthRevocation] = field(factory=dict)
    oauth_signing_keys: dict[str, OAuthSigningKey] = field(factory=dict)

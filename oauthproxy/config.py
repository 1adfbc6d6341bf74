"""The daemon's configuration: one frozen :class:`Config`.

This module is the ONLY reader of ``os.environ``.  Precedence: command-line
options override the environment, which overrides a ``.env`` file in the working
directory, which overrides the defaults below.  An invalid value raises
:class:`~oauthproxy.errors.ConfigError` naming the setting, and ``twistd``
refuses to start with that one-line message.

:data:`SETTINGS` says where each field comes from (option, environment names)
and which parser of :mod:`oauthproxy.config_parsers` checks it; a new field needs
a row there.  ``oauthproxyctl`` reads its own settings through
:func:`load_client_settings`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from typing import Any

from attrs import field, fields, frozen

from oauthproxy import config_parsers as parsers
from oauthproxy.config_parsers import Parser
from oauthproxy.errors import ConfigError
from oauthproxy.storage.address import parse_redis_url

LETSENCRYPT_PRODUCTION = "https://acme-v02.api.letsencrypt.org/directory"
LETSENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"


@frozen
class Config:
    """Every setting of the daemon, validated and typed."""

    # listeners (endpoint strings; None = off)
    http_endpoint: str | None = "tcp:80"
    https_endpoint: str | None = "tcp:443"
    api_endpoint: str | None = "tcp:9000:interface=127.0.0.1"
    proxy_http_endpoint: str | None = None
    proxy_https_endpoint: str | None = None
    #: sources allowed to send PROXY headers (CIDRs)
    proxy_trusted_networks: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    #: seconds a PROXY listener waits for the header
    proxy_header_timeout: float = 5.0
    #: the ports clients use to reach the gateway (a balancer or port forward in front);
    #: None = the ``https``/``http`` listener's own port (see :meth:`public_port`)
    public_https_port: int | None = None
    public_http_port: int | None = None

    # storage
    #: None = start and supervise an embedded redis-server in data_dir
    redis_url: str | None = None
    redis_password: str | None = field(default=None, repr=False)
    #: the Redis Sentinels' own password (``sentinel://`` URLs whose sentinels need one)
    redis_sentinel_password: str | None = field(default=None, repr=False)
    #: PEM of the CAs that sign Redis' TLS certificates (``rediss://``, ``sentinels://``);
    #: None = the system's CAs
    redis_ca_bundle: str | None = None
    #: PEM files of the client certificate and its key, for a Redis that asks for one
    #: (``tls-auth-clients yes``, Redis' default under TLS)
    redis_client_cert: str | None = None
    redis_client_key: str | None = field(default=None, repr=False)
    #: replicas a configuration write must reach before the API confirms it (Redis ``WAIT``);
    #: None = 1 behind Sentinel (a failover then loses no confirmed write), else 0
    redis_wait_replicas: int | None = None
    #: seconds any single Redis call may take
    redis_timeout: float = 5.0
    data_dir: str = "oauthproxy-data"
    #: 32-byte key (urlsafe base64) encrypting private keys at rest; None = data_dir/secret.key
    secret_key_b64: str | None = field(default=None, repr=False)

    # identity of this deployment
    base_domain: str | None = None
    admin_email: str = ""
    #: the OAuth issuer URL; None = https://auth.<base_domain>
    oauth_issuer: str | None = None

    # ACME
    acme_directory_url: str = LETSENCRYPT_PRODUCTION
    acme_staging_url: str = LETSENCRYPT_STAGING
    #: PEM file of CAs trusted for the ACME directory's TLS (tests: Pebble's CA)
    acme_ca_bundle: str | None = None
    renewal_check_interval: float = 86400.0
    renewal_threshold_days: float = 30.0
    cert_gen_max_workers: int = 5
    #: seconds an ACME order's cluster lock outlives a daemon killed mid-order
    acme_lock_ttl: float = 60.0

    # GitHub (upstream identity provider)
    github_client_id: str | None = None
    github_client_secret: str | None = field(default=None, repr=False)
    github_base_url: str = "https://github.com"
    github_api_url: str = "https://api.github.com"

    # OAuth authorization server
    oauth_jwt_algorithm: str = "RS256"
    oauth_jwt_private_key_b64: str | None = field(default=None, repr=False)
    oauth_access_token_lifetime: int = 1800
    oauth_refresh_token_lifetime: int = 31536000
    #: seconds a rotated-out refresh token still gets the pair its rotation issued (0 = off)
    oauth_refresh_retry_window: float = 0.0
    oauth_session_timeout: int = 300
    #: seconds a registered client may go unused once it completed an authorization
    oauth_client_lifetime: int = 7776000
    #: seconds a registered client that never completed an authorization is kept
    oauth_unused_client_lifetime: int = 86400
    #: most stored clients; a full registry evicts the oldest never-used one
    oauth_max_clients: int = 1000
    #: dynamic registration: "open", "token" (initial access token needed) or "closed"
    oauth_registration: str = "open"
    #: registrations per source as (count, seconds); None = no limit
    oauth_register_rate: tuple[int, float] | None = (60, 3600.0)
    #: failed /token and /authorize requests per source as (count, seconds); None = no limit
    oauth_failure_rate: tuple[int, float] | None = (30, 60.0)
    #: GitHub logins allowed to log in; ("*",) = everyone
    oauth_allowed_github_users: tuple[str, ...] = ("*",)
    #: CIDRs CIMD fetches may contact besides public addresses (internal clients; SSRF)
    cimd_allowed_networks: tuple[str, ...] = ()
    #: PEM file of extra CAs trusted for CIMD fetches (besides the system store)
    cimd_ca_bundle: str | None = None

    # gateway limits
    max_request_body: int = 100 * 1024 * 1024
    max_header_bytes: int = 64 * 1024
    max_header_count: int = 100
    #: seconds a client may take to send the request head
    request_header_timeout: float = 30.0
    #: seconds an idle keep-alive connection is kept
    idle_timeout: float = 60.0
    #: connections the kernel queues for each listener before it accepts them (bursts
    #: beyond the queue wait a second for a SYN retransmit); capped by net.core.somaxconn
    listen_backlog: int = 4096

    # logging
    log_level: str = "info"
    #: "text" or "json" (one JSON object per line)
    log_format: str = "text"
    #: record every gateway request in the request log (Redis)
    request_log: bool = True
    #: seconds request-log records are kept (the seed's 24 hours)
    request_log_retention: float = 86400.0
    #: records the request log keeps at most (older ones go first); bounds its memory
    request_log_max_records: int = 100_000
    #: unknown-host and unauthenticated requests kept as records per minute; the rest
    #: are only counted (per host, reason and minute)
    request_log_noise_budget: int = 10

    # Docker services (oauthproxy.containers)
    #: manage Docker services at all (off: the endpoints answer 503, Docker is never contacted)
    docker_enabled: bool = True
    #: the Docker engine (``unix://``, ``tcp://`` or ``ssh://``), as the docker CLI reads it
    docker_host: str = "unix:///var/run/docker.sock"
    #: the engine API version to speak; "auto" = negotiate
    docker_api_version: str = "auto"
    #: directory of ca.pem, cert.pem, key.pem for a ``tcp://`` engine with TLS
    docker_cert_path: str | None = None
    #: seconds one Docker call may stay silent (builds and pulls stream progress)
    docker_timeout: float = 60.0
    #: image patterns allowed (``local/*``, ``nginx:*``); empty = any image already on the host
    docker_images: tuple[str, ...] = ()
    #: host directories bind mounts may come from (none: named volumes only)
    docker_mount_dirs: tuple[str, ...] = ()
    #: host directories Dockerfile builds may use as context (none: no builds)
    docker_build_dirs: tuple[str, ...] = ()
    #: whether services may use the host's network namespace
    docker_host_network: bool = False
    #: capabilities services may add (none by default)
    docker_capabilities: tuple[str, ...] = ()
    #: the user-defined bridge network services join (created when missing)
    docker_network: str = "oauthproxy"
    #: memory limit of a service that sets none (bytes), and the most one may set
    docker_memory: int = 512 * 1024**2
    docker_max_memory: int = 8 * 1024**3
    #: CPU limit of a service that sets none, and the most one may set
    docker_cpus: float = 1.0
    docker_max_cpus: float = 4.0
    #: seconds a started container must keep running to count as started
    docker_start_grace: float = 1.0
    #: seconds between reconciler passes (records vs containers, guarded ports)
    docker_reconcile_interval: float = 30.0
    #: seconds a service's cluster lock outlives a daemon killed mid-operation
    docker_lock_ttl: float = 30.0
    #: host ports handed out automatically (inclusive ranges)
    port_ranges: tuple[tuple[int, int], ...] = ((14000, 65535),)
    #: host ports never given to a service
    restricted_ports: tuple[int, ...] = (22, 25, 53, 80, 443, 3306, 5432, 6379, 27017)

    # lifecycle
    #: processes serving the listeners (1 = this process; more: a supervisor and N workers)
    workers: int = 1
    #: seconds SIGTERM waits for open connections to finish before closing them
    drain_timeout: float = 10.0
    #: the redis-server binary supervised when redis_url is None
    redis_server: str = "redis-server"
    #: the embedded redis-server's maxmemory in bytes (0 = no limit); only keys with
    #: an expiry (the request log) are evicted, so configuration writes go on working
    redis_maxmemory: int = 256 * 1024 * 1024
    #: systemd's notification socket (``$NOTIFY_SOCKET``); None = not under systemd
    notify_socket: str | None = None

    def public_port(self, scheme: str) -> int:
        """The port clients reach the gateway's ``https`` or ``http`` side on.

        The configured public port, else the listener's own TCP port, else the scheme's
        default (443, 80): public URLs (OAuth resources, redirects) are built with it.
        """
        if scheme == "https":
            return self.public_https_port or parsers.listener_port(self.https_endpoint) or 443
        return self.public_http_port or parsers.listener_port(self.http_endpoint) or 80


# --- the settings table ---------------------------------------------------------------

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@frozen
class Setting:
    """How one :class:`Config` field is read: its option, environment names and parser."""

    field: str
    option: str | None
    env: tuple[str, ...]
    parse: Parser


def _s(field: str, option: str | None, env: str | tuple[str, ...], parse: Parser) -> Setting:
    """Shorthand for the table below."""
    return Setting(field, option, (env,) if isinstance(env, str) else env, parse)


#: Every setting.  Environment names are tried in order (OAUTHPROXY_HTTP before HTTP_PORT).
SETTINGS: tuple[Setting, ...] = (
    _s("http_endpoint", "http", ("OAUTHPROXY_HTTP", "HTTP_PORT"), parsers.socket_endpoint),
    _s("https_endpoint", "https", ("OAUTHPROXY_HTTPS", "HTTPS_PORT"), parsers.socket_endpoint),
    _s("api_endpoint", "api", "OAUTHPROXY_API", parsers.endpoint),
    _s("proxy_http_endpoint", "proxy-http", "OAUTHPROXY_PROXY_HTTP", parsers.socket_endpoint),
    _s("proxy_https_endpoint", "proxy-https", "OAUTHPROXY_PROXY_HTTPS", parsers.socket_endpoint),
    _s("proxy_trusted_networks", None, "OAUTHPROXY_PROXY_TRUSTED_NETWORKS", parsers.networks),
    _s("proxy_header_timeout", None, "OAUTHPROXY_PROXY_HEADER_TIMEOUT", parsers.positive_float),
    _s("public_https_port", "public-https-port", "OAUTHPROXY_PUBLIC_HTTPS_PORT", parsers.port),
    _s("public_http_port", "public-http-port", "OAUTHPROXY_PUBLIC_HTTP_PORT", parsers.port),
    _s("redis_url", "redis", "REDIS_URL", parsers.redis_url),
    _s("redis_password", "redis-password", "REDIS_PASSWORD", parsers.optional_text),
    _s("redis_sentinel_password", None, "REDIS_SENTINEL_PASSWORD", parsers.optional_text),
    _s("redis_ca_bundle", None, "OAUTHPROXY_REDIS_CA_BUNDLE", parsers.pem_file),
    _s("redis_client_cert", None, "OAUTHPROXY_REDIS_CLIENT_CERT", parsers.pem_file),
    _s("redis_client_key", None, "OAUTHPROXY_REDIS_CLIENT_KEY", parsers.pem_file),
    _s("redis_wait_replicas", None, "OAUTHPROXY_REDIS_WAIT_REPLICAS", parsers.non_negative_int),
    _s("redis_timeout", None, "OAUTHPROXY_REDIS_TIMEOUT", parsers.positive_float),
    _s("data_dir", "data-dir", "OAUTHPROXY_DATA_DIR", parsers.plain_text),
    _s("secret_key_b64", None, "OAUTHPROXY_SECRET_KEY", parsers.secret_key),
    _s("base_domain", None, "BASE_DOMAIN", parsers.hostname),
    _s("admin_email", None, "ADMIN_EMAIL", parsers.email),
    _s("oauth_issuer", None, "OAUTHPROXY_OAUTH_ISSUER", parsers.optional_url),
    _s("acme_directory_url", None, "ACME_DIRECTORY_URL", parsers.url),
    _s("acme_staging_url", None, "ACME_STAGING_URL", parsers.url),
    _s("acme_ca_bundle", None, "OAUTHPROXY_ACME_CA_BUNDLE", parsers.pem_file),
    _s("renewal_check_interval", None, "RENEWAL_CHECK_INTERVAL", parsers.positive_float),
    _s("renewal_threshold_days", None, "RENEWAL_THRESHOLD_DAYS", parsers.positive_float),
    _s("cert_gen_max_workers", None, "CERT_GEN_MAX_WORKERS", parsers.positive_int),
    _s("acme_lock_ttl", None, "OAUTHPROXY_ACME_LOCK_TTL", parsers.positive_float),
    _s("github_client_id", None, "GITHUB_CLIENT_ID", parsers.optional_text),
    _s("github_client_secret", None, "GITHUB_CLIENT_SECRET", parsers.optional_text),
    _s("github_base_url", None, "OAUTHPROXY_GITHUB_BASE_URL", parsers.url),
    _s("github_api_url", None, "OAUTHPROXY_GITHUB_API_URL", parsers.url),
    _s("oauth_jwt_algorithm", None, "OAUTH_JWT_ALGORITHM", parsers.jwt_algorithm),
    _s("oauth_jwt_private_key_b64", None, "OAUTH_JWT_PRIVATE_KEY_B64", parsers.pem_b64),
    _s("oauth_access_token_lifetime", None, "OAUTH_ACCESS_TOKEN_LIFETIME", parsers.positive_int),
    _s("oauth_refresh_token_lifetime", None, "OAUTH_REFRESH_TOKEN_LIFETIME", parsers.positive_int),
    _s("oauth_refresh_retry_window", None, "OAUTH_REFRESH_RETRY_WINDOW", parsers.retry_window),
    _s("oauth_session_timeout", None, "OAUTH_SESSION_TIMEOUT", parsers.positive_int),
    _s("oauth_client_lifetime", None, "OAUTH_CLIENT_LIFETIME", parsers.positive_int),
    _s("oauth_unused_client_lifetime", None, "OAUTH_UNUSED_CLIENT_LIFETIME", parsers.positive_int),
    _s("oauth_max_clients", None, "OAUTH_MAX_CLIENTS", parsers.positive_int),
    _s("oauth_registration", None, "OAUTH_REGISTRATION", parsers.choice("open", "token", "closed")),
    _s("oauth_register_rate", None, "OAUTH_REGISTER_RATE", parsers.rate),
    _s("oauth_failure_rate", None, "OAUTH_FAILURE_RATE", parsers.rate),
    _s("oauth_allowed_github_users", None, "OAUTH_ALLOWED_GITHUB_USERS", parsers.users),
    _s("cimd_allowed_networks", None, "OAUTHPROXY_CIMD_ALLOWED_NETWORKS", parsers.networks),
    _s("cimd_ca_bundle", None, "OAUTHPROXY_CIMD_CA_BUNDLE", parsers.pem_file),
    _s("max_request_body", None, "OAUTHPROXY_MAX_REQUEST_BODY", parsers.positive_int),
    _s("max_header_bytes", None, "OAUTHPROXY_MAX_HEADER_BYTES", parsers.positive_int),
    _s("max_header_count", None, "OAUTHPROXY_MAX_HEADER_COUNT", parsers.positive_int),
    _s("request_header_timeout", None, "OAUTHPROXY_REQUEST_HEADER_TIMEOUT", parsers.positive_float),
    _s("idle_timeout", None, "OAUTHPROXY_IDLE_TIMEOUT", parsers.positive_float),
    _s("listen_backlog", None, "OAUTHPROXY_LISTEN_BACKLOG", parsers.positive_int),
    _s("log_level", "log-level", "LOG_LEVEL", parsers.log_level),
    _s("log_format", "log-format", "OAUTHPROXY_LOG_FORMAT", parsers.log_format),
    _s("request_log", None, "OAUTHPROXY_REQUEST_LOG", parsers.boolean),
    _s("request_log_retention", None, "OAUTHPROXY_REQUEST_LOG_RETENTION", parsers.positive_float),
    _s("docker_enabled", None, "OAUTHPROXY_DOCKER", parsers.boolean),
    _s("docker_host", None, "DOCKER_HOST", parsers.docker_host),
    _s("docker_api_version", None, "DOCKER_API_VERSION", parsers.docker_api_version),
    _s("docker_cert_path", None, "DOCKER_CERT_PATH", parsers.directory),
    _s("docker_timeout", None, "OAUTHPROXY_DOCKER_TIMEOUT", parsers.positive_float),
    _s("docker_images", None, "OAUTHPROXY_DOCKER_IMAGES", parsers.patterns),
    _s("docker_mount_dirs", None, "OAUTHPROXY_DOCKER_MOUNT_DIRS", parsers.directories),
    _s("docker_build_dirs", None, "OAUTHPROXY_DOCKER_BUILD_DIRS", parsers.directories),
    _s("docker_host_network", None, "OAUTHPROXY_DOCKER_HOST_NETWORK", parsers.boolean),
    _s("docker_capabilities", None, "OAUTHPROXY_DOCKER_CAPABILITIES", parsers.capabilities),
    _s("docker_network", None, "OAUTHPROXY_DOCKER_NETWORK", parsers.docker_name),
    _s("docker_memory", None, "OAUTHPROXY_DOCKER_MEMORY", parsers.size),
    _s("docker_max_memory", None, "OAUTHPROXY_DOCKER_MAX_MEMORY", parsers.size),
    _s("docker_cpus", None, "OAUTHPROXY_DOCKER_CPUS", parsers.positive_float),
    _s("docker_max_cpus", None, "OAUTHPROXY_DOCKER_MAX_CPUS", parsers.positive_float),
    _s(
        "docker_reconcile_interval",
        None,
        "OAUTHPROXY_DOCKER_RECONCILE_INTERVAL",
        parsers.positive_float,
    ),
    _s("docker_lock_ttl", None, "OAUTHPROXY_DOCKER_LOCK_TTL", parsers.positive_float),
    _s("docker_start_grace", None, "OAUTHPROXY_DOCKER_START_GRACE", parsers.positive_float),
    _s("port_ranges", None, "OAUTHPROXY_PORT_RANGES", parsers.port_ranges),
    _s("restricted_ports", None, "OAUTHPROXY_RESTRICTED_PORTS", parsers.port_list),
    _s(
        "request_log_max_records",
        None,
        "OAUTHPROXY_REQUEST_LOG_MAX_RECORDS",
        parsers.positive_int,
    ),
    _s(
        "request_log_noise_budget",
        None,
        "OAUTHPROXY_REQUEST_LOG_NOISE_BUDGET",
        parsers.non_negative_int,
    ),
    _s("workers", "workers", "OAUTHPROXY_WORKERS", parsers.workers),
    _s("drain_timeout", None, "OAUTHPROXY_DRAIN_TIMEOUT", parsers.positive_float),
    _s("redis_server", None, "OAUTHPROXY_REDIS_SERVER", parsers.plain_text),
    _s("redis_maxmemory", None, "OAUTHPROXY_REDIS_MAXMEMORY", parsers.size_or_zero),
    _s("notify_socket", None, "NOTIFY_SOCKET", parsers.optional_text),
)

#: environment names whose value is a bare port (mapped to ``tcp:<port>``)
_PORT_VARIABLES = frozenset({"HTTP_PORT", "HTTPS_PORT"})


def parse_dotenv(text: str) -> dict[str, str]:
    """Parse a ``.env`` file: ``NAME=value`` lines, ``#`` comments, optional quotes.

    ``export NAME=value`` is accepted; double-quoted values understand ``\\n``,
    ``\\"`` and ``\\\\``; single-quoted values are literal; an unquoted value ends
    at `` #``.  A malformed line raises :class:`ConfigError` naming its number.
    """
    result: dict[str, str] = {}
    # Only \n ends a line: str.splitlines() would also split on \x1c, \u2028 ...
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not _ENV_NAME.match(name):
            raise ConfigError(f".env line {number}: expected NAME=value", field=".env")
        result[name] = _dotenv_value(value.strip(), number)
    return result


def _dotenv_value(value: str, number: int) -> str:
    """One ``.env`` value, unquoted."""
    if value[:1] in ("'", '"'):
        quote = value[0]
        end = _closing_quote(value, quote)
        if end < 0 or value[end + 1 :].strip()[:1] not in ("", "#"):
            raise ConfigError(f".env line {number}: unterminated quote", field=".env")
        inner = value[1:end]
        if quote == "'":
            return inner
        return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), inner)
    comment = re.search(r"\s#", value)
    return (value[: comment.start()] if comment else value).strip()


def _closing_quote(value: str, quote: str) -> int:
    """Index of the quote closing ``value[0]``, skipping backslash escapes in ``"``."""
    i = 1
    while i < len(value):
        if quote == '"' and value[i] == "\\":
            i += 2
            continue
        if value[i] == quote:
            return i
        i += 1
    return -1


def _candidates(
    setting: Setting,
    options: Mapping[str, object],
    environ: Mapping[str, str],
    dotenv: Mapping[str, str],
) -> Iterator[tuple[str, str]]:
    """``(source name, raw text)`` for a setting, most important source first."""
    if setting.option is not None:
        value = options.get(setting.option)
        if value is not None:
            yield f"--{setting.option}", str(value)
    for layer in (environ, dotenv):
        for name in setting.env:
            if name in layer:
                yield name, layer[name]


def load_config(
    options: Mapping[str, object],
    environ: Mapping[str, str],
    dotenv_text: str | None,
) -> Config:
    """Build the :class:`Config`: options > environment > ``.env`` > defaults.

    ``options`` maps option names (``"http"``, ``"data-dir"`` …) to values, None
    meaning "not given".  Every value is validated; the first invalid one raises
    :class:`ConfigError` whose ``field`` is the option or variable it came from.
    """
    dotenv = parse_dotenv(dotenv_text) if dotenv_text else {}
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for setting in SETTINGS:
        for source, raw in _candidates(setting, options, environ, dotenv):
            parse = parsers.port_endpoint if source in _PORT_VARIABLES else setting.parse
            values[setting.field] = parse(raw, source)
            sources[setting.field] = source
            break
    known = {f.name for f in fields(Config)}
    config = Config(**{k: v for k, v in values.items() if k in known})
    _check_redis(config, sources)
    _check_data_dir(config, sources.get("data_dir", "OAUTHPROXY_DATA_DIR"))
    _check_docker_limits(config, sources)
    _check_workers(config, sources)
    return config


#: endpoint types that add TLS or PROXY in the process that listens
_LAYERED = frozenset({"ssl", "tls", "haproxy", "le", "lets"})


def _check_workers(config: Config, sources: Mapping[str, str]) -> None:
    """Workers share plain sockets: an admin endpoint that adds TLS itself cannot be shared."""
    if config.workers <= 1 or config.api_endpoint is None:
        return
    if config.api_endpoint.split(":", 1)[0].strip().lower() in _LAYERED:
        name = sources.get("api_endpoint", "OAUTHPROXY_API")
        raise ConfigError(
            f"{name}: {config.api_endpoint!r} cannot be shared by several workers "
            "(--workers); give a plain socket (tcp:, unix:, systemd:) and put TLS in front",
            field=name,
        )


def _check_docker_limits(config: Config, sources: Mapping[str, str]) -> None:
    """A service's default limits must be within the maximums."""
    if config.docker_memory > config.docker_max_memory:
        name = sources.get("docker_memory", "OAUTHPROXY_DOCKER_MEMORY")
        raise ConfigError(
            f"{name}: the default memory limit is above OAUTHPROXY_DOCKER_MAX_MEMORY", field=name
        )
    if config.docker_cpus > config.docker_max_cpus:
        name = sources.get("docker_cpus", "OAUTHPROXY_DOCKER_CPUS")
        raise ConfigError(
            f"{name}: the default CPU limit is above OAUTHPROXY_DOCKER_MAX_CPUS", field=name
        )


#: sun_path is 108 bytes on Linux, including the terminating NUL
_MAX_UNIX_PATH = 107


def _check_data_dir(config: Config, source: str) -> None:
    """The embedded Redis' socket (``<data_dir>/redis.sock``) must fit in a unix address."""
    if config.redis_url is not None:
        return
    path = os.path.join(os.path.abspath(config.data_dir), "redis.sock")
    if len(path.encode("utf-8")) > _MAX_UNIX_PATH:
        raise ConfigError(
            f"{source}: {os.path.abspath(config.data_dir)!r} is too long for the embedded "
            f"Redis socket (at most {_MAX_UNIX_PATH - len('/redis.sock')} bytes)",
            field=source,
        )


def _check_redis(config: Config, sources: dict[str, str]) -> None:
    """Refuse a non-loopback Redis without a password (ATK-29), TLS settings for a Redis
    reached without TLS (they would be silently unused), and half a client certificate."""
    source = sources.get("redis_url", "REDIS_URL")
    address = None
    if config.redis_url is not None:
        address = parse_redis_url(
            config.redis_url, config.redis_password, config.redis_sentinel_password
        )
    for name in ("redis_ca_bundle", "redis_client_cert", "redis_client_key"):
        if getattr(config, name) is not None and (address is None or not address.tls):
            raise ConfigError(
                f"{sources[name]}: Redis is not reached over TLS "
                "(use a rediss:// or sentinels:// REDIS_URL, or unset it)",
                field=sources[name],
            )
    if (config.redis_client_cert is None) != (config.redis_client_key is None):
        given, missing = (
            ("redis_client_cert", "OAUTHPROXY_REDIS_CLIENT_KEY")
            if config.redis_client_key is None
            else ("redis_client_key", "OAUTHPROXY_REDIS_CLIENT_CERT")
        )
        raise ConfigError(
            f"{sources[given]}: a client certificate needs its key and the key its "
            f"certificate: set {missing} too",
            field=sources[given],
        )
    if address is None:
        return
    if not address.is_loopback and not address.password:
        where = "behind Sentinels that are" if address.sentinels else f"at {address.host} is"
        raise ConfigError(
            f"{source}: Redis {where} not on loopback and has no password (set REDIS_PASSWORD)",
            field=source,
        )


@frozen
class ClientSettings:
    """What ``oauthproxyctl`` needs to reach the admin API."""

    api_url: str = "http://127.0.0.1:9000"
    token: str | None = None


def load_client_settings(
    options: Mapping[str, object],
    environ: Mapping[str, str],
    dotenv_text: str | None,
) -> ClientSettings:
    """``--api-url``/``--token`` > ``OAUTHPROXY_URL``/``OAUTHPROXY_TOKEN`` > ``.env``.

    The seed's ``API_URL`` and ``ADMIN_TOKEN`` are read as fallbacks.
    """
    dotenv = parse_dotenv(dotenv_text) if dotenv_text else {}
    url_setting = Setting("api_url", "api-url", ("OAUTHPROXY_URL", "API_URL"), parsers.url)
    token_setting = Setting(
        "token", "token", ("OAUTHPROXY_TOKEN", "ADMIN_TOKEN"), parsers.optional_text
    )
    values: dict[str, Any] = {}
    for setting in (url_setting, token_setting):
        for source, raw in _candidates(setting, options, environ, dotenv):
            values[setting.field] = setting.parse(raw, source)
            break
    return ClientSettings(**values)


def process_environment() -> dict[str, str]:
    """A copy of this process' environment (the only read of ``os.environ``)."""
    return dict(os.environ)


def read_dotenv(directory: str = ".") -> str | None:
    """The text of ``.env`` in ``directory``, or None when there is none."""
    try:
        with open(os.path.join(directory, ".env"), encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ConfigError(f".env: cannot read ({e.strerror})", field=".env") from None

"""The daemon's configuration: one frozen :class:`Config`.

This module is the ONLY reader of ``os.environ``.  Precedence: command-line
options override the environment, which overrides a ``.env`` file in the working
directory, which overrides the defaults below.  An invalid value raises
:class:`~oauthproxy.errors.ConfigError` naming the setting, and ``twistd``
refuses to start with that one-line message.
"""

from __future__ import annotations

from attrs import frozen

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

    # storage
    #: None = start and supervise an embedded redis-server in data_dir
    redis_url: str | None = None
    redis_password: str | None = None
    #: seconds any single Redis call may take
    redis_timeout: float = 5.0
    data_dir: str = "oauthproxy-data"
    #: 32-byte key (urlsafe base64) encrypting private keys at rest; None = data_dir/secret.key
    secret_key_b64: str | None = None

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

    # GitHub (upstream identity provider)
    github_client_id: str | None = None
    github_client_secret: str | None = None
    github_base_url: str = "https://github.com"
    github_api_url: str = "https://api.github.com"

    # OAuth authorization server
    oauth_jwt_algorithm: str = "RS256"
    oauth_jwt_private_key_b64: str | None = None
    oauth_access_token_lifetime: int = 1800
    oauth_refresh_token_lifetime: int = 31536000
    oauth_session_timeout: int = 300
    oauth_client_lifetime: int = 7776000
    #: GitHub logins allowed to log in; ("*",) = everyone
    oauth_allowed_github_users: tuple[str, ...] = ("*",)

    # gateway limits
    max_request_body: int = 100 * 1024 * 1024
    max_header_bytes: int = 64 * 1024
    max_header_count: int = 100
    #: seconds a client may take to send the request head
    request_header_timeout: float = 30.0
    #: seconds an idle keep-alive connection is kept
    idle_timeout: float = 60.0

    # logging
    log_level: str = "info"
    #: "text" or "json" (one JSON object per line)
    log_format: str = "text"

"""Every Redis key oauthproxy uses, in one place.

All keys share a prefix (``op:`` in production) so that a Redis database can be
shared with other software and so that tests can isolate themselves.  The
scheme::

    <p>records:<kind>        hash   key -> record JSON (codec), one per record kind
    <p>token_hashes          hash   SHA-256 hex of an API token -> token name
    <p>token_used            hash   token name -> last use (POSIX seconds); no events
    <p>events                stream every configuration change (type, kind, key, record)
    <p>challenge:<token>     string ACME HTTP-01 key authorization, with an expiry
    <p>lock:<name>           string the fencing token of the current holder, with an expiry
    <p>fence:<name>          string counter handing out fencing tokens (never expires)
    <p>acme_accounts         hash   ACME directory URL -> encrypted account key PEM
    <p>ports                 hash   ``tcp/14000/127.0.0.1`` -> ``service/port name``: the host
                                    ports Docker services hold (written with their records)
    <p>deployment            string this deployment's id (labels its Docker containers)
    <p>health:probe          string written by every health probe, with a 60 s expiry
    <p>key_check             string sealed with the secret key by the first daemon
    <p>oauth:...             OAuth server state (see :mod:`oauthproxy.storage.oauth`)
"""

from __future__ import annotations

from attrs import frozen

from oauthproxy.errors import ConfigError

#: the record kinds kept in ``records:<kind>`` hashes (also the ``kind`` of events)
RECORD_KINDS = (
    "proxy",
    "route",
    "certificate",
    "token",
    "service",
    "docker_service",
    "auth_rule",
    "oauth_revocation",
    "oauth_signing_key",
)

DEFAULT_PREFIX = "op:"


@frozen
class Keys:
    """The key names under one ``prefix``."""

    prefix: str = DEFAULT_PREFIX

    def __attrs_post_init__(self) -> None:
        """Refuse prefixes that could collide with another prefix's keys."""
        if (
            not self.prefix
            or not self.prefix.endswith(":")
            or any(c.isspace() for c in self.prefix)
        ):
            raise ConfigError(
                f"key prefix {self.prefix!r} must be non-empty, end with ':' and contain no spaces",
                field="key_prefix",
            )

    def records(self, kind: str) -> str:
        """The hash holding every record of ``kind``."""
        if kind not in RECORD_KINDS:
            raise ValueError(f"unknown record kind {kind!r}")
        return f"{self.prefix}records:{kind}"

    @property
    def token_hashes(self) -> str:
        """The hash from token digest to token name."""
        return f"{self.prefix}token_hashes"

    @property
    def token_used(self) -> str:
        """The hash from token name to the time it was last used."""
        return f"{self.prefix}token_used"

    @property
    def events(self) -> str:
        """The stream of configuration changes."""
        return f"{self.prefix}events"

    def challenge(self, token: str) -> str:
        """The key holding the HTTP-01 answer for ``token``."""
        return f"{self.prefix}challenge:{token}"

    def lock(self, name: str) -> str:
        """The key whose existence means lock ``name`` is held."""
        return f"{self.prefix}lock:{name}"

    def fence(self, name: str) -> str:
        """The counter of fencing tokens for lock ``name``."""
        return f"{self.prefix}fence:{name}"

    @property
    def ports(self) -> str:
        """The hash of host ports reserved by Docker services."""
        return f"{self.prefix}ports"

    @property
    def deployment(self) -> str:
        """The id of this deployment (shared by every daemon on this Redis)."""
        return f"{self.prefix}deployment"

    @property
    def key_check(self) -> str:
        """The value every daemon's secret key must open."""
        return f"{self.prefix}key_check"

    @property
    def probe(self) -> str:
        """The key the health probe writes (expires by itself)."""
        return f"{self.prefix}health:probe"

    @property
    def acme_accounts(self) -> str:
        """The hash of encrypted ACME account keys by directory URL."""
        return f"{self.prefix}acme_accounts"

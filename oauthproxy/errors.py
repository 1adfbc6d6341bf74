"""The root of oauthproxy's error hierarchy.

Each subpackage subclasses these; each HTTP surface maps them to responses in
exactly one place (the admin API to JSON ``{"error", "detail", "field"}``, the
OAuth server to RFC 6749 error objects).  Low-level errors (Redis, OpenSSL,
Docker) are converted at the boundary of the package that talks to them.
"""

from __future__ import annotations


class OAuthProxyError(Exception):
    """Base class of every error oauthproxy raises on purpose."""

    #: short machine-readable code, used as ``error`` in JSON bodies
    code = "error"

    def __init__(self, detail: str = "", field: str | None = None) -> None:
        super().__init__(detail or self.__doc__ or self.code)
        self.detail = detail or (self.__doc__ or self.code).strip().splitlines()[0]
        self.field = field


class InvalidInput(OAuthProxyError):
    """The input is not valid."""

    code = "invalid_input"


class NotFound(OAuthProxyError):
    """No such record."""

    code = "not_found"


class Conflict(OAuthProxyError):
    """A record with that key already exists, or the change conflicts with another."""

    code = "conflict"


class Forbidden(OAuthProxyError):
    """The caller may not do this."""

    code = "forbidden"


class Unauthorized(OAuthProxyError):
    """No valid credentials were presented."""

    code = "unauthorized"


class StorageUnavailable(OAuthProxyError):
    """The store (Redis) could not be reached in time."""

    code = "storage_unavailable"


class ConfigError(OAuthProxyError):
    """A setting is invalid; ``field`` names the setting."""

    code = "config_error"


class Unavailable(OAuthProxyError):
    """A system the daemon depends on for this request (Docker) could not be reached."""

    code = "unavailable"

"""OAuth 2.0 error responses (RFC 6749 §5.2, RFC 6750 §3.1, RFC 7591 §3.2.2, RFC 8707 §2).

Every protocol failure of the authorization server is raised as an :class:`OAuth2Error`
subclass; the Klein resource turns it into a response in one place with :meth:`json`,
:attr:`status` and :meth:`headers`.  ``error_description`` is restricted to the character
set RFC 6749 allows (O21-8), so descriptions never carry quotes, backslashes or
non-ASCII text into JSON bodies or ``WWW-Authenticate`` headers.
"""

from __future__ import annotations

import re

from oauthproxy.errors import OAuthProxyError

# RFC 6749 §5.2: error_description = 1*( %x20-21 / %x23-5B / %x5D-7E )
_UNSAFE_DESCRIPTION = re.compile(r"[^\x20-\x21\x23-\x5b\x5d-\x7e]")


def safe_description(text: str) -> str:
    """``text`` with every character RFC 6749 forbids in ``error_description`` replaced by ``?``."""
    return _UNSAFE_DESCRIPTION.sub("?", text)


class OAuth2Error(OAuthProxyError):
    """An OAuth protocol error; ``code`` is the RFC ``error`` value."""

    code = "invalid_request"
    #: the HTTP status of the error response
    status = 400

    def __init__(
        self,
        description: str = "",
        field: str | None = None,
        *,
        revoke_family: str | None = None,
    ) -> None:
        super().__init__(description, field)
        #: set when the failure proves a token family is compromised and must be revoked
        #: (authorization-code replay, refresh-token reuse): the caller revokes it
        self.revoke_family = revoke_family

    @property
    def error(self) -> str:
        """The RFC ``error`` code."""
        return self.code

    @property
    def description(self) -> str:
        """The ``error_description``, reduced to the RFC 6749 character set."""
        return safe_description(self.detail)

    def json(self) -> dict[str, str]:
        """The JSON error object (RFC 6749 §5.2)."""
        return {"error": self.code, "error_description": self.description}

    def headers(self) -> list[tuple[str, str]]:
        """Response headers: error responses of the token endpoint are never cached (O21-8)."""
        return [
            ("Content-Type", "application/json"),
            ("Cache-Control", "no-store"),
            ("Pragma", "no-cache"),
        ]


class InvalidRequest(OAuth2Error):
    """The request is missing a parameter, repeats one, or is otherwise malformed."""

    code = "invalid_request"


class InvalidClient(OAuth2Error):
    """Client authentication failed (unknown client, wrong secret, wrong method)."""

    code = "invalid_client"
    status = 401

    def headers(self) -> list[tuple[str, str]]:
        """RFC 6749 §5.2: a 401 ``invalid_client`` carries a ``WWW-Authenticate`` challenge."""
        return [*super().headers(), ("WWW-Authenticate", 'Basic realm="oauth"')]


class InvalidGrant(OAuth2Error):
    """The code or refresh token is invalid, expired, revoked, or bound to someone else."""

    code = "invalid_grant"


class UnauthorizedClient(OAuth2Error):
    """The client may not use this grant or response type."""

    code = "unauthorized_client"


class UnsupportedGrantType(OAuth2Error):
    """The grant type is not supported."""

    code = "unsupported_grant_type"


class UnsupportedResponseType(OAuth2Error):
    """The response type is not supported (only ``code``)."""

    code = "unsupported_response_type"


class InvalidScope(OAuth2Error):
    """The requested scope is unknown, malformed, or wider than allowed."""

    code = "invalid_scope"


class InvalidTarget(OAuth2Error):
    """The requested resource is invalid, unknown, or not allowed (RFC 8707)."""

    code = "invalid_target"


class AccessDenied(OAuth2Error):
    """The user or the allowlist denied the request."""

    code = "access_denied"
    status = 403


class ServerError(OAuth2Error):
    """The server failed to handle the request."""

    code = "server_error"
    status = 500


class TemporarilyUnavailable(OAuth2Error):
    """The server (or the upstream identity provider) is temporarily unavailable."""

    code = "temporarily_unavailable"
    status = 503


class InvalidToken(OAuth2Error):
    """The access token is missing, malformed, expired, revoked or for another audience."""

    code = "invalid_token"
    status = 401


class InitialTokenRequired(InvalidToken):
    """Closed registration without a valid initial access token (RFC 7591 §3, RFC 6750)."""

    def headers(self) -> list[tuple[str, str]]:
        """RFC 6750 §3: the bearer challenge."""
        return [*super().headers(), ("WWW-Authenticate", 'Bearer error="invalid_token"')]


class InsufficientScope(OAuth2Error):
    """The access token lacks a scope the request needs."""

    code = "insufficient_scope"
    status = 403


class InvalidRedirectUri(OAuth2Error):
    """A redirect URI in client metadata is invalid (RFC 7591 §3.2.2)."""

    code = "invalid_redirect_uri"


class InvalidClientMetadata(OAuth2Error):
    """A client metadata field is invalid (RFC 7591 §3.2.2)."""

    code = "invalid_client_metadata"


class RateLimited(OAuth2Error):
    """A source sent more than its share (ATK-37): 429 with ``Retry-After``.

    RFC 6749 has no code for it; ``temporarily_unavailable`` tells a client to retry.
    """

    code = "temporarily_unavailable"
    status = 429

    def __init__(self, description: str, retry_after: int) -> None:
        super().__init__(description)
        #: seconds until the source may send again
        self.retry_after = retry_after

    def headers(self) -> list[tuple[str, str]]:
        """RFC 6585 §4: say when to come back."""
        return [*super().headers(), ("Retry-After", str(self.retry_after))]

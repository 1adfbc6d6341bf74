"""The admin API's errors and their one mapping to JSON responses.

Every failure of every admin endpoint passes through :func:`render_error`, which
turns an :class:`~oauthproxy.errors.OAuthProxyError` (or a werkzeug routing error)
into ``{"error": code, "detail": ..., "field": ...}`` with the right status, and
anything else into a logged 500 whose body says nothing about the cause.
"""

from __future__ import annotations

import json

from twisted.logger import Logger
from twisted.web.server import Request

from oauthproxy import errors

_log = Logger()


class MalformedRequest(errors.InvalidInput):
    """The request could not be parsed (e.g. its body is not JSON)."""

    code = "malformed_request"


class UnsupportedMediaType(errors.InvalidInput):
    """The request body must be ``application/json``."""

    code = "unsupported_media_type"


class PayloadTooLarge(errors.InvalidInput):
    """The request body is larger than the admin API accepts."""

    code = "payload_too_large"


class InvalidToken(errors.Unauthorized):
    """The bearer token is unknown, revoked or malformed."""

    code = "invalid_token"


class MethodNotAllowed(errors.OAuthProxyError):
    """The path exists but not with this method."""

    code = "method_not_allowed"

    def __init__(self, allowed: tuple[str, ...]) -> None:
        super().__init__(f"allowed methods: {', '.join(allowed)}")
        self.allowed = allowed


class InternalError(errors.OAuthProxyError):
    """An unexpected error; the details are in the server log."""

    code = "internal_error"


#: most specific first: the first class the error is an instance of decides the status
STATUS: tuple[tuple[type[errors.OAuthProxyError], int], ...] = (
    (MalformedRequest, 400),
    (UnsupportedMediaType, 415),
    (PayloadTooLarge, 413),
    (errors.InvalidInput, 422),
    (errors.Unauthorized, 401),
    (errors.Forbidden, 403),
    (errors.NotFound, 404),
    (MethodNotAllowed, 405),
    (errors.Conflict, 409),
    (errors.StorageUnavailable, 503),
    (errors.Unavailable, 503),
    (InternalError, 500),
    (errors.ConfigError, 500),
    (errors.OAuthProxyError, 400),
)

#: the body of every error response, for the OpenAPI document
ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "detail"],
    "properties": {
        "error": {"type": "string", "description": "machine-readable code"},
        "detail": {"type": "string", "description": "what went wrong, for people"},
        "field": {
            "type": ["string", "null"],
            "description": "the offending field: a JSON pointer into the body, "
            "or the name of a query or path parameter",
        },
    },
}


def status_of(error: errors.OAuthProxyError) -> int:
    """The HTTP status for ``error``."""
    for kind, status in STATUS:
        if isinstance(error, kind):
            return status
    return 500


def error_body(error: errors.OAuthProxyError) -> dict[str, str | None]:
    """The JSON body for ``error``."""
    return {"error": error.code, "detail": error.detail, "field": error.field}


def render_error(request: Request, error: BaseException) -> bytes:
    """Set the status and headers for ``error`` on ``request``; return the JSON body.

    Unexpected exceptions are logged with their traceback (call this inside the
    ``except`` block that caught them) and answered with a generic 500: their text
    may contain anything, so it is never echoed.
    """
    if not isinstance(error, errors.OAuthProxyError):
        _log.failure(
            "admin API: unexpected error on {method} {path}",
            method=request.method.decode("ascii", "replace"),
            path=request.path.decode("utf-8", "replace"),
        )
        error = InternalError()
    status = status_of(error)
    if status >= 500 and not isinstance(error, InternalError):
        _log.error(
            "admin API: {code} on {path}: {detail}",
            code=error.code,
            path=request.path.decode("utf-8", "replace"),
            detail=error.detail,
        )
    request.setResponseCode(status)
    if isinstance(error, errors.Unauthorized):
        challenge = 'Bearer realm="oauthproxy"'
        if isinstance(error, InvalidToken):
            challenge += ', error="invalid_token"'
        _set_header(request, b"www-authenticate", challenge.encode("ascii"))
    if isinstance(error, MethodNotAllowed):
        _set_header(request, b"allow", ", ".join(error.allowed).encode("ascii"))
    return json_bytes(request, error_body(error))


def json_bytes(request: Request, value: object) -> bytes:
    """Serialize ``value`` as the JSON response body, with headers that keep it out of caches."""
    _set_header(request, b"content-type", b"application/json")
    # responses may carry a token value; never let a cache keep one
    _set_header(request, b"cache-control", b"no-store")
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode("utf-8") + b"\n"


def _set_header(request: Request, name: bytes, value: bytes) -> None:
    """Set a response header (``Request.setHeader`` is not annotated)."""
    request.responseHeaders.setRawHeaders(name, [value])

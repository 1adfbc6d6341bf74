"""Resource-server answers for OAuth-protected proxies (RFC 6750 §3, RFC 9728 §5.1).

A request without a valid token gets 401 with ``WWW-Authenticate: Bearer
resource_metadata="…"`` and the scopes the resource needs (MCP-2, MCP-18); a token
lacking scopes gets 403 ``insufficient_scope`` naming every scope the operation needs in
one challenge (MCP-18).  ``offline_access`` never appears in challenges (MCP-14).
Each parameter appears at most once; values are quoted and reduced to the RFC 6749
character set, so nothing from a request can break the header.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from attrs import frozen

from oauthproxy.oauth.errors import safe_description
from oauthproxy.oauth.metadata import OFFLINE_ACCESS


@frozen
class Challenge:
    """An error answer of the resource server: status, headers, JSON body."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: dict[str, str]


# RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer`` header, or None (MCP-16, O21-10).

    This is the only place a token is read from: query strings, form bodies and
    cookies are never consulted.  The scheme is case-insensitive; the token must be
    a single b64token.
    """
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or _B64TOKEN.fullmatch(token) is None:
        return None
    return token


def _quoted(value: str) -> str:
    return '"' + safe_description(value) + '"'


def _scopes(scopes: Iterable[str]) -> str:
    return " ".join(dict.fromkeys(s for s in scopes if s != OFFLINE_ACCESS))


def bearer_challenge(
    resource_metadata: str,
    *,
    scopes: Iterable[str] = (),
    error: str | None = None,
    description: str | None = None,
) -> str:
    """The ``WWW-Authenticate`` value for a Bearer challenge."""
    params = [f"resource_metadata={_quoted(resource_metadata)}"]
    scope = _scopes(scopes)
    if scope:
        params.append(f"scope={_quoted(scope)}")
    if error:
        params.append(f"error={_quoted(error)}")
    if description:
        params.append(f"error_description={_quoted(description)}")
    return "Bearer " + ", ".join(params)


def _headers(value: str) -> tuple[tuple[str, str], ...]:
    return (
        ("WWW-Authenticate", value),
        ("Content-Type", "application/json"),
        ("Cache-Control", "no-store"),
    )


def unauthorized(
    resource_metadata: str,
    *,
    scopes: Iterable[str] = (),
    token_presented: bool = False,
    description: str = "",
) -> Challenge:
    """401: no token (no error code, RFC 6750 §3.1) or an invalid one (``invalid_token``)."""
    error = "invalid_token" if token_presented else None
    header = bearer_challenge(
        resource_metadata,
        scopes=scopes,
        error=error,
        description=description if token_presented and description else None,
    )
    body = {
        "error": error or "unauthorized",
        "error_description": safe_description(description or "a bearer token is required"),
    }
    return Challenge(401, _headers(header), body)


def missing_scopes(granted: Iterable[str], required: Iterable[str]) -> tuple[str, ...]:
    """The required scopes the token does not carry, in order."""
    have = set(granted)
    return tuple(dict.fromkeys(s for s in required if s not in have))


def insufficient_scope(
    resource_metadata: str, *, required: Iterable[str], description: str = ""
) -> Challenge:
    """403 ``insufficient_scope`` listing *all* scopes the operation needs (MCP-18)."""
    text = description or "the token lacks a required scope"
    header = bearer_challenge(
        resource_metadata, scopes=required, error="insufficient_scope", description=text
    )
    body = {"error": "insufficient_scope", "error_description": safe_description(text)}
    return Challenge(403, _headers(header), body)

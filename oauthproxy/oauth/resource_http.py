"""Settings and HTTP plumbing shared by the authorization server's endpoints.

:class:`OAuthSettings` is what the server takes from configuration (issuer, GitHub app,
lifetimes, allowlist, limits).  The helpers read query strings and form bodies (a
repeated parameter is ``invalid_request``, RFC 6749 §3.1) and render the two kinds of
failure: :func:`render_oauth_error` is the one place OAuth JSON errors are written
(RFC 6749 §5.2, RFC 6750 §3), :func:`error_page` the page a user sees when an
authorization error must not be redirected (O21-5).  Pages never frame (O21-13).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from html import escape
from typing import Literal
from urllib.parse import parse_qs, urlsplit

from attrs import field, frozen
from twisted.web.server import Request

from oauthproxy.oauth import consent
from oauthproxy.oauth.errors import InvalidRequest, OAuth2Error
from oauthproxy.oauth.github import GitHubApp
from oauthproxy.oauth.limits import Rate, source_key
from oauthproxy.oauth.proxies import PublicPorts
from oauthproxy.oauth.records import OAuthClient

DEFAULT_SCOPES = ("read", "write", "offline_access")
RegistrationMode = Literal["open", "token", "closed"]
DEFAULT_REGISTER_RATE = Rate(60, 3600.0)
DEFAULT_FAILURE_RATE = Rate(30, 60.0)
#: largest form or JSON body the endpoints read
MAX_BODY = 64 * 1024


@frozen
class OAuthSettings:
    """What the authorization server needs from configuration."""

    issuer: str
    github: GitHubApp
    #: key for cookies and CSRF tokens (derived from the storage secret key)
    secret: bytes = field(repr=False)
    scopes_supported: tuple[str, ...] = DEFAULT_SCOPES
    access_token_lifetime: int = 1800
    refresh_token_lifetime: int = 31536000
    #: seconds a rotated-out refresh token may be retried for the same pair (0 = never)
    refresh_retry_window: float = 0.0
    login_timeout: float = consent.STATE_LIFETIME
    #: seconds a client that completed an authorization may go unused
    client_lifetime: float = 7776000.0
    #: seconds a registered client that never completed an authorization is kept
    unused_client_lifetime: float = 86400.0
    allowed_users: tuple[str, ...] = ("*",)
    #: most clients registration may create; then the oldest unused go (ATK-28, ATK-37)
    max_clients: int = 1000
    #: "open", "token" (an initial access token is needed, RFC 7591 §3) or "closed"
    registration: RegistrationMode = "open"
    #: registrations per source; None = no limit (ATK-37)
    register_rate: Rate | None = DEFAULT_REGISTER_RATE
    #: failed /token and /authorize requests per source; None = no limit (ATK-37)
    failure_rate: Rate | None = DEFAULT_FAILURE_RATE
    #: pre-registered clients (source "static")
    static_clients: tuple[OAuthClient, ...] = ()
    #: the ports clients reach protected proxies on (their resource URIs, MCP-3)
    public_ports: PublicPorts = field(factory=PublicPorts)

    @property
    def base(self) -> str:
        """The issuer without a trailing slash: the base of every endpoint URL."""
        return self.issuer.rstrip("/")

    @property
    def cookies(self) -> consent.CookiePolicy:
        """``__Host-`` cookies, or plain ones for a plain-HTTP loopback issuer (ATK-36)."""
        return consent.cookie_policy(self.base)

    @property
    def callback_url(self) -> str:
        """Where GitHub sends the user back."""
        return f"{self.base}/callback"

    @property
    def path(self) -> str:
        """The issuer's path (``""`` for a host-only issuer)."""
        return urlsplit(self.base).path


def derive_secret(key: bytes, purpose: str = "oauth-consent") -> bytes:
    """A key for one purpose derived from the storage secret key."""
    return hmac.new(key, purpose.encode(), hashlib.sha256).digest()


def set_header(request: Request, name: str, value: str) -> None:
    """Set (replace) a response header."""
    request.responseHeaders.setRawHeaders(name.encode("ascii"), [value.encode("utf-8")])


def json_answer(request: Request, body: object, status: int = 200) -> bytes:
    """A JSON answer that no cache keeps."""
    request.setResponseCode(status)
    set_header(request, "Content-Type", "application/json")
    set_header(request, "Cache-Control", "no-store")
    return json.dumps(body).encode("utf-8")


def render_oauth_error(request: Request, error: OAuth2Error) -> bytes:
    """The one place OAuth JSON errors are rendered (RFC 6749 §5.2, RFC 6750 §3)."""
    request.setResponseCode(error.status)
    for name, value in error.headers():
        set_header(request, name, value)
    return json.dumps(error.json()).encode("utf-8")


def page_headers(request: Request, form_targets: Sequence[str] = ()) -> None:
    """Headers of every answer to a browser: no framing, caching or referrer (O21-13).

    ``form_targets`` are the places a form on the page may lead to besides this origin
    (:func:`consent.content_security_policy`).
    """
    for name, value in consent.PAGE_HEADERS:
        set_header(request, name, value)
    set_header(request, "Content-Security-Policy", consent.content_security_policy(form_targets))


def error_page(request: Request, error: OAuth2Error) -> bytes:
    """An error shown to the user instead of redirecting to an untrusted URI (O21-5)."""
    request.setResponseCode(error.status)
    page_headers(request)
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Authorization failed"
        f"</title></head><body><h1>Authorization failed</h1><p>{escape(error.error)}: "
        f"{escape(error.description)}</p></body></html>\n"
    ).encode()


def client_source(request: Request) -> str:
    """Whose rate limits a request uses: its connection's address, never a header."""
    address = request.getClientAddress()  # type: ignore[no-untyped-call]
    return source_key(getattr(address, "host", None))


def query_params(request: Request) -> dict[str, list[str]]:
    """The query string as str -> values (repeats kept, so they can be refused)."""
    query = urlsplit(request.uri.decode("ascii", "replace")).query
    return parse_qs(query, keep_blank_values=True)


def form_params(request: Request) -> dict[str, list[str]]:
    """A ``application/x-www-form-urlencoded`` body; anything else is invalid_request."""
    kind = (request.getHeader("content-type") or "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise InvalidRequest("the body must be application/x-www-form-urlencoded")
    body = request.content.read(MAX_BODY + 1) if request.content is not None else b""
    if len(body) > MAX_BODY:
        raise InvalidRequest("the body is too large")
    try:
        return parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise InvalidRequest("the body is not UTF-8") from None


def single(params: Mapping[str, Sequence[str]], name: str) -> str | None:
    """One parameter; repeating it is invalid_request (RFC 6749 §3.1)."""
    values = params.get(name, ())
    if len(values) > 1:
        raise InvalidRequest(f"{name} must not be repeated", name)
    return values[0] if values else None


def cookie(request: Request, name: str) -> str | None:
    """A request cookie's value."""
    for line in request.requestHeaders.getRawHeaders(b"cookie", []):
        for pair in line.decode("latin-1").split(";"):
            key, sep, value = pair.strip().partition("=")
            if sep and key == name:
                return value
    return None

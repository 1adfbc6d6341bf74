"""The consent step before the GitHub login (MCP-20): cookies, CSRF, state, the page.

We use one static GitHub OAuth app for every client, so a client must be approved by
the user *before* the user is sent to GitHub (confused deputy, MCP-20).  Approvals live
in a signed cookie that lists the approved ``client_id`` values with their time; it
cannot be replayed for another client (ATK-23).  The GitHub ``state`` is random, stored
server-side only after consent, single-use, expires in ten minutes and must match
exactly at the callback (ATK-23).  The page can never be framed (O21-13) and sends no
referrer to other origins (BCP-1).

Both steps are bound to the browser that started them (ATK-36): the consent page sets
a random per-browser *flow* cookie and its form's CSRF token is a MAC over the pending
request, the client and that cookie, so the form (request id and token) is worthless in
any other browser; the GitHub leg sets a login cookie that the callback checks.  The
form is only accepted as a same-origin post (``Origin`` ours, ``Sec-Fetch-Site``
``same-origin``): a cross-site auto-submitted form is refused before anything happens.

Cookies are ``__Host-`` cookies, ``Secure``, ``HttpOnly``, ``SameSite=Lax`` (ATK-32),
except for a plain-HTTP loopback issuer (local trials): browsers drop ``Secure``
cookies there, so :class:`CookiePolicy` then uses the same names without the prefix and
without ``Secure``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Iterable
from html import escape
from urllib.parse import urlsplit

from attrs import frozen

from oauthproxy.oauth.cimd import client_id_host, is_metadata_document_client_id, localhost_only
from oauthproxy.oauth.errors import AccessDenied, InvalidRequest
from oauthproxy.oauth.pkce import new_verifier
from oauthproxy.oauth.records import AuthorizationRequest, LoginSession, OAuthClient
from oauthproxy.oauth.redirects import url_origin

#: cookie names without their prefix (:class:`CookiePolicy` adds ``__Host-``)
CONSENT_COOKIE = "oauthproxy-consent"
LOGIN_COOKIE = "oauthproxy-login"
FLOW_COOKIE = "oauthproxy-flow"
STATE_LIFETIME = 600.0
#: approvals older than this are forgotten
CONSENT_MAX_AGE = 30 * 86400.0
MAX_APPROVALS = 20
#: what browser_binding hands out: 32 random bytes, URL-safe base64
_BINDING = re.compile(r"^[A-Za-z0-9_-]{43}$")

#: response headers of the consent and error pages (O21-13, O21-14, BCP-1); the
#: Content-Security-Policy is :func:`content_security_policy`
PAGE_HEADERS = (
    ("Content-Type", "text/html; charset=utf-8"),
    ("X-Frame-Options", "DENY"),
    # no referrer leaves our origin (BCP-1); same-origin rather than no-referrer, which
    # would make the browser send "Origin: null" with our own consent form (ATK-36)
    ("Referrer-Policy", "same-origin"),
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
)


def content_security_policy(form_targets: Iterable[str] = ()) -> str:
    """The pages' policy: nothing loaded, never framed (O21-13), forms to known places only.

    Browsers hold a form submission's redirects to ``form-action`` too, so the consent
    form lists where approving leads: GitHub, back here, then the client's redirect URI
    (``form_targets``, made by :func:`form_target`).
    """
    sources = " ".join(["'self'", *form_targets])
    return (
        f"default-src 'none'; style-src 'unsafe-inline'; form-action {sources}; "
        "frame-ancestors 'none'; base-uri 'none'"
    )


def form_target(url: str) -> str:
    """The CSP source allowing ``url``: its origin, or ``scheme:`` for an app's own scheme."""
    origin = url_origin(url)
    if origin is not None:
        return origin
    scheme = url.partition(":")[0].lower()
    if not re.fullmatch(r"[a-z][a-z0-9+.-]*", scheme):
        raise ValueError(f"no CSP source for {url!r}")
    return f"{scheme}:"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, purpose: str, message: bytes) -> bytes:
    # the purpose prefix keeps a MAC made for one use from validating another
    return hmac.new(secret, purpose.encode() + b"\0" + message, hashlib.sha256).digest()


def host_cookie(name: str, value: str, max_age: int) -> str:
    """A ``Set-Cookie`` value with the ``__Host-`` attributes (MCP-20, ATK-32)."""
    if not name.startswith("__Host-"):
        raise ValueError(f"cookie {name} must carry the __Host- prefix")
    return f"{name}={value}; Path=/; Max-Age={max_age}; Secure; HttpOnly; SameSite=Lax"


@frozen
class CookiePolicy:
    """How the authorization server names and flags its cookies (ATK-32, ATK-36)."""

    #: ``__Host-`` prefix and ``Secure``; False only for a plain-HTTP loopback issuer
    secure: bool = True

    def name(self, base: str) -> str:
        """The cookie's name: ``__Host-<base>`` when secure, else ``<base>``."""
        return f"__Host-{base}" if self.secure else base

    def header(self, base: str, value: str, max_age: int) -> str:
        """A ``Set-Cookie`` value: host-only, whole site, script-proof, not cross-site."""
        if self.secure:
            return host_cookie(self.name(base), value, max_age)
        return f"{base}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax"


def cookie_policy(issuer: str) -> CookiePolicy:
    """Secure cookies, unless the issuer is plain HTTP on loopback (a local trial)."""
    parts = urlsplit(issuer)
    local = parts.scheme == "http" and parts.hostname in ("127.0.0.1", "::1", "localhost")
    return CookiePolicy(secure=not local)


def approvals(secret: bytes, cookie: str | None, *, now: float) -> dict[str, float]:
    """The client approvals a consent cookie carries (empty if absent, forged or stale)."""
    if not cookie or cookie.count(".") != 1 or len(cookie) > 4096:
        return {}
    payload_b64, mac_b64 = cookie.split(".")
    try:
        payload = _unb64(payload_b64)
        valid = hmac.compare_digest(_unb64(mac_b64), _mac(secret, "consent", payload))
        data = json.loads(payload) if valid else None
    except (binascii.Error, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        client_id: float(when)
        for client_id, when in data.items()
        if isinstance(client_id, str)
        and isinstance(when, int | float)
        and 0 <= now - when < CONSENT_MAX_AGE
    }


def is_approved(secret: bytes, cookie: str | None, client_id: str, *, now: float) -> bool:
    """Whether the browser's consent cookie approves exactly this ``client_id``."""
    return client_id in approvals(secret, cookie, now=now)


def approve(secret: bytes, cookie: str | None, client_id: str, *, now: float) -> str:
    """The new signed cookie value after the user approves ``client_id``."""
    current = approvals(secret, cookie, now=now)
    current.pop(client_id, None)
    current[client_id] = now
    kept = dict(sorted(current.items(), key=lambda item: item[1])[-MAX_APPROVALS:])
    payload = json.dumps(kept, separators=(",", ":"), sort_keys=True).encode()
    return f"{_b64(payload)}.{_b64(_mac(secret, 'consent', payload))}"


def browser_binding(cookie: str | None) -> str:
    """The browser's flow-cookie value: the one it has, or a new random one.

    A browser keeps its value across consent pages, so two tabs' forms both stay valid.
    """
    if cookie and _BINDING.fullmatch(cookie):
        return cookie
    return secrets.token_urlsafe(32)


def csrf_token(secret: bytes, request_id: str, client_id: str, binding: str) -> str:
    """The consent form's CSRF token: the pending request, the client, the browser."""
    return _b64(_mac(secret, "csrf", f"{request_id}\0{client_id}\0{binding}".encode()))


def check_csrf(
    secret: bytes, request_id: str, client_id: str, token: str | None, binding: str | None
) -> None:
    """Raise :class:`AccessDenied` unless ``token`` is this browser's form token (ATK-36).

    ``binding`` is the flow cookie the submitting browser sent: a form opened in another
    browser (or forged) does not match it.
    """
    if not binding or not _BINDING.fullmatch(binding):
        raise AccessDenied(
            "this consent form was opened in another browser (or cookies are blocked)",
            "csrf_token",
        )
    expected = csrf_token(secret, request_id, client_id, binding)
    if not token or not hmac.compare_digest(token, expected):
        raise AccessDenied("the consent form is invalid or expired", "csrf_token")


def check_same_origin(origin: str | None, fetch_site: str | None, issuer: str) -> None:
    """Refuse a form post another site made the browser send (ATK-36, MCP-20).

    Browsers say where a post comes from: ``Sec-Fetch-Site`` must be ``same-origin`` (or
    ``none``, typed by the user) and ``Origin``, when sent, must be the issuer's origin
    (``null``, from sandboxed frames and some redirects, is not).  Clients that send
    neither header are not browsers; the flow cookie still binds their form.
    """
    if fetch_site is not None and fetch_site.strip().lower() not in ("same-origin", "none"):
        raise AccessDenied("cross-site form posts are refused", "origin")
    if origin is not None and _origin_or_none(origin.strip()) != url_origin(issuer):
        raise AccessDenied("form posts from another origin are refused", "origin")


def _origin_or_none(value: str) -> str | None:
    """An ``Origin`` header in canonical form; None for ``null`` or anything unparsable."""
    try:
        return url_origin(value) if value.count("/") == 2 else None
    except ValueError:
        return None


def new_login_session(
    request: AuthorizationRequest, *, now: float, lifetime: float = STATE_LIFETIME
) -> LoginSession:
    """A pending GitHub login, created after consent: random state, PKCE verifier."""
    return LoginSession(
        state=secrets.token_urlsafe(32),
        request=request,
        upstream_verifier=new_verifier(),
        created_at=now,
        expires_at=now + min(lifetime, STATE_LIFETIME),
    )


def login_binding(secret: bytes, state: str) -> str:
    """The value of the ``__Host-`` login cookie that ties ``state`` to this browser.

    Set when the browser is sent to GitHub, checked at the callback: a callback URL
    carrying someone else's code and state fails in the victim's browser (login CSRF,
    ATK-23).
    """
    return _b64(_mac(secret, "login", state.encode()))


def check_callback_state(
    session: LoginSession | None,
    state: str | None,
    *,
    now: float,
    secret: bytes,
    binding_cookie: str | None,
) -> LoginSession:
    """The login session a GitHub callback belongs to, or an error (ATK-23).

    ``session`` is what the store returned for ``state`` (and removed: single use).  A
    missing or foreign state, an expired session, or a browser that did not start this
    login (no matching :func:`login_binding` cookie) is refused.
    """
    if not state:
        raise InvalidRequest("the callback carries no state", "state")
    if session is None or not hmac.compare_digest(session.state, state):
        raise AccessDenied("unknown or already used state", "state")
    if now >= session.expires_at:
        raise AccessDenied("the login took too long; start again", "state")
    if not binding_cookie or not hmac.compare_digest(binding_cookie, login_binding(secret, state)):
        raise AccessDenied("this login was started in another browser", "state")
    return session


@frozen
class ConsentView:
    """What the consent page shows (MCP-20, MCP-7)."""

    client_name: str
    client_id: str
    #: the client_id's host for CIMD clients, else None
    client_host: str | None
    redirect_uri: str
    scopes: tuple[str, ...]
    resources: tuple[str, ...]
    #: every redirect URI is loopback: warn that only a local app can receive the code
    localhost_warning: bool


def consent_view(client: OAuthClient, request: AuthorizationRequest) -> ConsentView:
    """The facts a user needs to approve ``client`` for ``request``."""
    cimd = is_metadata_document_client_id(client.client_id)
    return ConsentView(
        client_name=client.client_name or client.client_id,
        client_id=client.client_id,
        client_host=client_id_host(client.client_id) if cimd else None,
        redirect_uri=request.redirect_uri,
        scopes=request.scopes,
        resources=request.resources,
        localhost_warning=cimd and localhost_only(client.redirect_uris),
    )


def _items(values: Iterable[str]) -> str:
    return "".join(f"<li>{escape(v)}</li>" for v in values) or "<li>(none)</li>"


def render_consent_page(view: ConsentView, *, action: str, request_id: str, csrf: str) -> bytes:
    """The consent page HTML (every value escaped; no third-party resources, BCP-1)."""
    host = (
        f"<p>Client published by <strong>{escape(view.client_host)}</strong></p>"
        if view.client_host
        else ""
    )
    warning = (
        "<p><strong>Warning:</strong> this client only accepts codes on this computer "
        "(localhost).</p>"
        if view.localhost_warning
        else ""
    )
    html = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Authorize {escape(view.client_name)}</title></head>
<body><h1>Authorize {escape(view.client_name)}?</h1>
{host}<p>Client ID: <code>{escape(view.client_id)}</code></p>
<p>You will be sent back to: <code>{escape(view.redirect_uri)}</code></p>{warning}
<p>Scopes:</p><ul>{_items(view.scopes)}</ul>
<p>Resources:</p><ul>{_items(view.resources)}</ul>
<form method="post" action="{escape(action)}">
<input type="hidden" name="request_id" value="{escape(request_id)}">
<input type="hidden" name="csrf_token" value="{escape(csrf)}">
<button type="submit" name="decision" value="approve">Approve</button>
<button type="submit" name="decision" value="deny">Deny</button>
</form></body></html>
"""
    return html.encode("utf-8")

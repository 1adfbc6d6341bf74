# treq and twisted.web are untyped; mypy strict would flag every call into them
# mypy: disable-error-code="no-untyped-call"
"""Browser login for ``auth_mode: redirect`` proxies: the guard as an OAuth client.

A browser (``Accept: text/html``, GET/HEAD) without a session on a redirect-mode proxy is
sent to our authorization server's ``/authorize`` as the public client
``oauthproxy-gateway:<hostname>`` (registered in the store on first use, source
``static``), with PKCE S256, a ``state`` and the proxy's ``resource``.  The state, the PKCE
verifier and the page to return to ride in a signed, short-lived ``__Host-`` cookie of the
proxy's host (:data:`LOGIN_COOKIE`).  The server redirects back to
``/.oauthproxy/callback`` on the proxy's host, where the code is redeemed at the issuer's
token endpoint and the access token becomes the host-bound session cookie
:data:`SESSION_COOKIE` (``__Host-``: Secure, HttpOnly, SameSite=Lax, no Domain; ATK-32).

Cookies are named and flagged by the request's scheme (:func:`login_cookies`): browsers
drop ``Secure`` cookies that plain HTTP sets, so an HTTP-only proxy (a local trial; an
HTTPS proxy redirects plain HTTP before the guard runs) gets the same cookies without the
``__Host-`` prefix and ``Secure``.  An HTTPS request reads only the prefixed names, so a
cookie tossed in over plain HTTP never counts there.
The guard then checks that cookie like a bearer token (same audience, expiry, revocation)
and removes it before forwarding.  Only a same-origin path is ever a return target (no open
redirect).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from attrs import define, field
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.server import NOT_DONE_YET, Request

from oauthproxy.oauth.consent import CookiePolicy
from oauthproxy.oauth.pkce import s256_challenge
from oauthproxy.oauth.records import OAuthClient

#: the cookies' names without their prefix (:func:`login_cookies` adds ``__Host-``)
SESSION_COOKIE = "oauthproxy-session"
LOGIN_COOKIE = "oauthproxy-guard"
#: every name our cookies may have: stripped from every request (the backend sees none)
COOKIE_NAMES = tuple(
    name for base in (SESSION_COOKIE, LOGIN_COOKIE) for name in (base, f"__Host-{base}")
)
CALLBACK_PATH = "/.oauthproxy/callback"
#: seconds a browser has to come back from the login
LOGIN_LIFETIME = 600
_log = Logger()


def wants_login(request: Request) -> bool:
    """Whether this looks like a browser navigation (sent to a login, not given a 401)."""
    accept = request.getHeader(b"accept") or b""
    return request.method in (b"GET", b"HEAD") and b"text/html" in accept


def login_cookies(request: Request) -> CookiePolicy:
    """``__Host-`` and ``Secure`` over HTTPS; plain cookies on plain HTTP (module docstring)."""
    return CookiePolicy(secure=bool(request.isSecure()))


def request_cookie(request: Request, name: str) -> str | None:
    """One cookie of the request."""
    for line in request.requestHeaders.getRawHeaders(b"cookie", []):
        for pair in line.decode("latin-1").split(";"):
            key, sep, value = pair.strip().partition("=")
            if sep and key == name:
                return value
    return None


def strip_cookies(request: Request, *names: str) -> None:
    """Remove our cookies from the request: the backend never sees a session token."""
    lines = request.requestHeaders.getRawHeaders(b"cookie")
    if not lines:
        return
    kept = []
    for line in lines:
        for pair in line.decode("latin-1").split(";"):
            if pair.strip() and pair.strip().partition("=")[0] not in names:
                kept.append(pair.strip())
    if kept:
        request.requestHeaders.setRawHeaders(b"cookie", ["; ".join(kept).encode("latin-1")])
    else:
        request.requestHeaders.removeHeader(b"cookie")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def safe_return_path(value: str | None) -> str:
    """A same-origin path to return to, else ``/`` (never ``//host`` or a URL)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


@define(eq=False)
class BrowserLogin:
    """Runs the browser login of redirect-mode proxies; see the module docstring."""

    issuer: str
    #: HMAC key of the login cookie (derived from the storage key)
    secret: bytes = field(repr=False)
    clock: IReactorTime
    #: ``treq.client.HTTPClient`` for the token endpoint
    http: Any
    #: stores a client (``IOAuthStore.put_client``)
    register: Callable[[OAuthClient], Deferred[None]]
    _registered: set[str] = field(factory=set)

    def client_id(self, hostname: str) -> str:
        """The gateway's client for one proxy host."""
        return f"oauthproxy-gateway:{hostname}"

    def _sign(self, payload: dict[str, Any]) -> str:
        body = _b64(json.dumps(payload, sort_keys=True).encode())
        mac = hmac.new(self.secret, b"guard-login\0" + body.encode(), hashlib.sha256).digest()
        return f"{body}.{_b64(mac)}"

    def _open(self, value: str | None) -> dict[str, Any] | None:
        if not value or value.count(".") != 1 or len(value) > 4096:
            return None
        body, mac = value.split(".")
        good = hmac.new(self.secret, b"guard-login\0" + body.encode(), hashlib.sha256).digest()
        try:
            if not hmac.compare_digest(_unb64(mac), good):
                return None
            payload: dict[str, Any] = json.loads(_unb64(body))
        except ValueError:
            return None
        if payload.get("exp", 0) <= self.clock.seconds():
            return None
        return payload

    async def _ensure_client(self, hostname: str, redirect_uri: str) -> str:
        client_id = self.client_id(hostname)
        if client_id not in self._registered:
            client = OAuthClient(
                client_id=client_id,
                redirect_uris=(redirect_uri,),
                client_name=f"oauthproxy login for {hostname}",
                source="static",
                client_id_issued_at=self.clock.seconds(),
            )
            await self.register(client)
            self._registered.add(client_id)
        return client_id

    def start(self, request: Request, hostname: str, origin: str, resource: str) -> Any:
        """Answer with a redirect to ``/authorize`` (NOT_DONE_YET: registration is async)."""
        d = Deferred.fromCoroutine(self._start(request, hostname, origin, resource))
        d.addErrback(self._failed, request)
        return NOT_DONE_YET

    async def _start(self, request: Request, hostname: str, origin: str, resource: str) -> None:
        redirect_uri = origin + CALLBACK_PATH
        client_id = await self._ensure_client(hostname, redirect_uri)
        state = secrets.token_urlsafe(24)
        verifier = secrets.token_urlsafe(48)
        back = safe_return_path(request.uri.decode("latin-1"))
        cookie = self._sign(
            {"s": state, "v": verifier, "n": back, "exp": self.clock.seconds() + LOGIN_LIFETIME}
        )
        query = urlencode(
            {
                "response_type": "code",
                "client_id": client_id,
                "redirect_uri": redirect_uri,
                "state": state,
                "code_challenge": s256_challenge(verifier),
                "code_challenge_method": "S256",
                "resource": resource,
            }
        )
        request.setResponseCode(302)
        request.setHeader(b"location", f"{self.issuer}/authorize?{query}".encode())
        request.setHeader(b"cache-control", b"no-store")
        request.responseHeaders.addRawHeader(
            b"set-cookie",
            login_cookies(request).header(LOGIN_COOKIE, cookie, LOGIN_LIFETIME).encode(),
        )
        request.finish()

    def finish(
        self, request: Request, hostname: str, origin: str, resource: str, cookie: str | None
    ) -> Any:
        """The callback: redeem the code, set the session cookie, go back.

        ``cookie`` is the login cookie the request carried (the guard strips our cookies
        from the request before anything else sees it).
        """
        d = Deferred.fromCoroutine(self._finish(request, hostname, origin, resource, cookie))
        d.addErrback(self._failed, request)
        return NOT_DONE_YET

    async def _finish(
        self, request: Request, hostname: str, origin: str, resource: str, cookie: str | None
    ) -> None:
        params = parse_qs(urlsplit(request.uri.decode("latin-1")).query)
        pending = self._open(cookie)
        state = params.get("state", [""])[0]
        code = params.get("code", [""])[0]
        if pending is None or not code or not hmac.compare_digest(str(pending["s"]), state):
            # login CSRF (ATK-23): a callback this browser did not start
            return _deny(request, "this login was not started in this browser")
        if params.get("iss", [self.issuer])[0] != self.issuer:
            return _deny(request, "the authorization response came from another issuer")
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": origin + CALLBACK_PATH,
            "client_id": self.client_id(hostname),
            "code_verifier": pending["v"],
            "resource": resource,
        }
        response = await self.http.post(
            f"{self.issuer}/token",
            data=urlencode(form).encode(),
            headers={b"Content-Type": [b"application/x-www-form-urlencoded"]},
        )
        body = json.loads(await response.content())
        if response.code != 200 or "access_token" not in body:
            return _deny(request, "the login could not be completed")
        lifetime = int(body.get("expires_in", 300))
        request.setResponseCode(302)
        request.setHeader(b"location", safe_return_path(pending["n"]).encode())
        request.setHeader(b"cache-control", b"no-store")
        policy, headers = login_cookies(request), request.responseHeaders
        session = policy.header(SESSION_COOKIE, body["access_token"], lifetime)
        headers.addRawHeader(b"set-cookie", session.encode())
        headers.addRawHeader(b"set-cookie", policy.header(LOGIN_COOKIE, "", 0).encode())
        request.finish()

    def _failed(self, failure: Any, request: Request) -> None:
        _log.failure("browser login failed", failure)
        if not request.finished and not request.startedWriting:
            _deny(request, "the login failed", status=502)


def _deny(request: Request, text: str, status: int = 403) -> None:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    request.setHeader(b"cache-control", b"no-store")
    request.write(text.encode() + b"\n")
    request.finish()

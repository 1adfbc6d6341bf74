"""Redirect-URI rules: registration validation, exact matching, safe login return URLs.

Registered redirect URIs must be absolute, fragment-free and either HTTPS or loopback
HTTP (native apps may also use private-use schemes); the rules depend on
``application_type`` (MCP-8, MCP-13, O21-4).  An authorization request's URI must equal a
registered one by simple string comparison; the only exception is the port of a loopback
URI (O21-4).  Nothing is normalised before comparing, so case changes, trailing
slashes, dot segments and extra query parameters all fail (ATK-2, BCP-1).  Since
matching is exact, registration refuses what no request could match: wildcards
(``https://*.example.com/cb``) and https hosts that are not a DNS name or an IP literal.

:func:`safe_return_url` guards the login return parameter (``rd``/``next``) against
open redirects (ATK-1).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection, Iterable
from urllib.parse import unquote, urlsplit

from oauthproxy.oauth.errors import InvalidRedirectUri

LOOPBACK_HOSTS = ("127.0.0.1", "[::1]", "localhost")
MAX_REDIRECT_URI_LENGTH = 2000

# Loopback redirect URIs, taken apart on the raw string: no normalisation happens, so
# everything except the port must still be equal character for character.
_LOOPBACK = re.compile(r"^http://(127\.0\.0\.1|\[::1\]|localhost)(?::([0-9]{1,5}))?([/?][^#]*)?$")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.\-]*$")
# printable ASCII without the space
_PRINTABLE = re.compile(r"^[\x21-\x7e]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# one label of a DNS host name (RFC 1123): letters, digits, inner hyphens
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# schemes a browser would execute or read locally instead of handing to an app
_FORBIDDEN_SCHEMES = frozenset(
    {
        "javascript",
        "data",
        "file",
        "vbscript",
        "about",
        "blob",
        "filesystem",
        "view-source",
        "ws",
        "wss",
        "ftp",
        "chrome",
        "resource",
        "jar",
    }
)


def is_loopback_redirect(uri: str) -> bool:
    """Whether ``uri`` is an ``http`` URI on a loopback host (the port-exception case)."""
    return _LOOPBACK.fullmatch(uri) is not None


def _port_ok(port: str | None) -> bool:
    return port is None or 0 < int(port) < 65536


def redirect_uri_matches(requested: str, registered: str) -> bool:
    """Whether ``requested`` matches one registered URI (O21-4).

    Simple string equality, except that for loopback ``http`` URIs any port is allowed
    (RFC 8252 §7.3).  The loopback host itself must be identical: ``localhost`` does not
    match ``127.0.0.1`` (ATK-2).
    """
    if requested == registered:
        return True
    want = _LOOPBACK.fullmatch(registered)
    got = _LOOPBACK.fullmatch(requested)
    if want is None or got is None or not _port_ok(got[2]):
        return False
    return want[1] == got[1] and (want[3] or "") == (got[3] or "")


def find_redirect_uri(requested: str | None, registered: Iterable[str]) -> str | None:
    """The redirect URI to use for an authorization request, or None if it is not allowed.

    Without ``redirect_uri`` the request may omit it only when exactly one URI is
    registered (RFC 6749 §3.1.2.3), which is then returned.
    """
    candidates = tuple(registered)
    if requested is None:
        return candidates[0] if len(candidates) == 1 else None
    if any(redirect_uri_matches(requested, uri) for uri in candidates):
        return requested
    return None


def infer_application_type(uris: Iterable[str]) -> str:
    """``native`` when a URI is loopback or uses a private scheme, else ``web``.

    Clients that register without ``application_type`` (most MCP clients) get the type
    their redirect URIs imply, so that ``http://localhost`` callbacks keep working.
    """
    for uri in uris:
        if is_loopback_redirect(uri) or not uri.startswith("https:"):
            return "native"
    return "web"


def _is_host(host: str) -> bool:
    """Whether ``host`` (lower-case, brackets removed) is an IP literal or a DNS name."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    labels = host.split(".")
    return len(host) <= 253 and all(_LABEL.fullmatch(label) for label in labels)


def validate_registered_redirect_uri(uri: object, application_type: str) -> str:
    """Check one redirect URI a client wants to register; return it unchanged.

    ``web`` clients may only use HTTPS; ``native`` clients may also use loopback HTTP
    and private-use schemes.  Every URI is absolute, has no fragment and no userinfo.
    """
    if not isinstance(uri, str) or not uri:
        raise InvalidRedirectUri("redirect URIs must be non-empty strings", "redirect_uris")
    if len(uri) > MAX_REDIRECT_URI_LENGTH or _PRINTABLE.fullmatch(uri) is None:
        raise InvalidRedirectUri(
            "redirect URI is too long or has spaces or non-ASCII characters", "redirect_uris"
        )
    if "#" in uri:
        raise InvalidRedirectUri("redirect URI must not contain a fragment", "redirect_uris")
    if "*" in uri:
        raise InvalidRedirectUri(
            "redirect URIs are matched exactly: wildcards (*) are not supported", "redirect_uris"
        )
    scheme, _, rest = uri.partition(":")
    if not rest or _SCHEME.fullmatch(scheme) is None:
        raise InvalidRedirectUri(
            "redirect URI must be absolute with a lower-case scheme", "redirect_uris"
        )
    if scheme == "https":
        try:
            parts = urlsplit(uri)
            parts.port  # noqa: B018 - parsing the port validates it
        except ValueError as e:
            raise InvalidRedirectUri("redirect URI is not a valid URL", "redirect_uris") from e
        if not rest.startswith("//") or not parts.hostname or "@" in parts.netloc:
            raise InvalidRedirectUri(
                "https redirect URI needs a host and no userinfo", "redirect_uris"
            )
        if not _is_host(parts.hostname):
            raise InvalidRedirectUri(
                "https redirect URI host must be a DNS name or an IP address", "redirect_uris"
            )
        return uri
    if scheme == "http":
        match = _LOOPBACK.fullmatch(uri)
        if match is None or not _port_ok(match[2]):
            raise InvalidRedirectUri(
                "http redirect URIs are only allowed on loopback hosts", "redirect_uris"
            )
        if application_type != "native":
            raise InvalidRedirectUri("web clients must use https redirect URIs", "redirect_uris")
        return uri
    if scheme in _FORBIDDEN_SCHEMES:
        raise InvalidRedirectUri(f"redirect URI scheme {scheme} is forbidden", "redirect_uris")
    if application_type != "native":
        raise InvalidRedirectUri(
            "private-use URI schemes are only allowed for native clients", "redirect_uris"
        )
    return uri


def url_origin(url: str) -> str | None:
    """``scheme://host[:port]`` of an http(s) URL, lower-case, default port left out."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname or "@" in parts.netloc:
        return None
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    default = {"https": 443, "http": 80}[parts.scheme]
    port = "" if parts.port in (None, default) else f":{parts.port}"
    return f"{parts.scheme}://{host}{port}"


def safe_return_url(
    value: str | None, *, allowed_origins: Collection[str] = (), default: str = "/"
) -> str:
    """``value`` if it is safe to redirect a browser to after login, else ``default`` (ATK-1).

    Safe means a path on this host (starting with exactly one ``/``) or an absolute URL
    whose origin is in ``allowed_origins``.  The raw value must be printable ASCII (no
    IDN lookalikes, no tabs or newlines that browsers strip); neither it nor its
    percent-decoded forms may start with ``//`` or ``/\\``, contain a backslash or a
    control character, because browsers and servers repair such input into an
    off-site URL.  Userinfo and schemes without ``//`` are refused.
    """
    if not value or len(value) > MAX_REDIRECT_URI_LENGTH or _PRINTABLE.fullmatch(value) is None:
        return default
    decoded = value
    for _ in range(4):
        if decoded.startswith("//") or "\\" in decoded or _CONTROL.search(decoded):
            return default
        decoded = unquote(decoded)
    if value.startswith("/"):
        return value
    try:
        origin = url_origin(value)
    except ValueError:
        return default
    if origin is None or not value.lower().startswith(origin.split("://")[0] + "://"):
        return default
    allowed = {o.lower().rstrip("/") for o in allowed_origins}
    return value if origin.lower() in allowed else default

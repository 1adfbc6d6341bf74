"""Validators for the values proxies, routes and services are made of (pure functions).

The JSON schemas of :mod:`oauthproxy.admin.proxies`, :mod:`~oauthproxy.admin.routes`
and :mod:`~oauthproxy.admin.services` check shapes and sizes (and document them);
what a schema cannot say — a URL that parses, a PEM bundle that holds certificates,
a regex that compiles, a path the gateway can ever see — is checked here.  Every
function raises :class:`~oauthproxy.errors.InvalidInput` with ``field`` set to the
JSON pointer of the offending value, and returns the value in its stored form.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509

from oauthproxy.admin.messages import pointer_name
from oauthproxy.admin.schema import string
from oauthproxy.errors import InvalidInput
from oauthproxy.gateway.paths import BadPath, canonical_path
from oauthproxy.model import Headers

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
#: what a refused hostname must be, in words
HOSTNAME_WORDS = "a DNS name such as app.example.com"
#: a DNS name: LDH labels of 1-63 characters, no wildcard, no trailing dot
HOSTNAME_PATTERN = rf"^{_LABEL}(?:\.{_LABEL})*$"
HOSTNAME = string(
    min_length=1,
    max_length=253,
    pattern=HOSTNAME_PATTERN,
    description="a DNS name (no wildcard); stored lower-case",
    example="api.example.com",
    error=HOSTNAME_WORDS,
)
#: names of records addressed by URL: routes, external services
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
#: what such a name must be, in words
NAME_WORDS = (
    "a name of letters, digits, '.', '_' and '-' that starts with a letter or digit, "
    "such as backend-api"
)
URL = string(
    min_length=1,
    max_length=2048,
    description="an absolute http:// or https:// URL",
    example="http://127.0.0.1:8080",
)
#: RFC 9110 field-name: a token
HEADER_NAME_PATTERN = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$"
MAX_HEADER_VALUE = 4096
MAX_REGEX = 512

_HEADER_NAME = re.compile(HEADER_NAME_PATTERN)
_HOSTNAME = re.compile(HOSTNAME_PATTERN)
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")
#: headers the gateway sets or strips itself: a custom value would be ignored or harmful
_RESERVED_REQUEST_HEADERS = frozenset(
    {
        "connection",
        "content-length",
        "host",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "http2-settings",
        "forwarded",
        "x-real-ip",
    }
)
_RESERVED_RESPONSE_HEADERS = frozenset(
    {
        "connection",
        "content-length",
        "keep-alive",
        "proxy-connection",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_RESERVED_PREFIXES = ("x-forwarded-", "x-auth-", "x-user-")
#: a raw path character the gateway accepts (percent escapes are checked by canonical_path)
_PATH_TEXT = re.compile(r"^[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*$")
#: the stdlib's regex parser (no type stubs): finds nested repetition before it is stored
_SRE: Any = importlib.import_module("re._parser")


def hostname(value: str, field: str = "/hostname") -> str:
    """``value`` lower-cased, if it is a DNS name (no wildcard, no port, no trailing dot)."""
    if len(value) > 253 or _HOSTNAME.fullmatch(value) is None:
        shown = f" (not {value!r})" if len(value) <= 40 else ""
        raise InvalidInput(f"{pointer_name(field)} must be {HOSTNAME_WORDS}{shown}", field=field)
    return value.lower()


def http_url(value: str, field: str) -> str:
    """``value`` if it is an absolute ``http``/``https`` URL with a host and a valid port.

    User info (``user:pass@``) and fragments are refused: credentials do not belong
    in a stored target, and a fragment is never sent.
    """
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise InvalidInput("not a valid URL (bad host or port)", field=field) from None
    if parts.scheme not in ("http", "https"):
        raise InvalidInput("the URL must start with http:// or https://", field=field)
    if not parts.hostname:
        raise InvalidInput("the URL has no host", field=field)
    if parts.username is not None or parts.password is not None:
        raise InvalidInput("credentials in the URL are not allowed", field=field)
    if parts.fragment or "#" in value:
        raise InvalidInput("the URL must not have a fragment", field=field)
    if port == 0:
        raise InvalidInput("the URL's port must be 1-65535", field=field)
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in value):
        raise InvalidInput("the URL must not contain spaces or control characters", field=field)
    return value


def header_pairs(headers: Mapping[str, str], field: str, *, request: bool) -> Headers:
    """A JSON object of custom headers as the model's (name, value) pairs.

    Names must be RFC 9110 tokens, unique regardless of case, and not one of the
    headers the gateway manages itself (hop-by-hop, ``Host``, ``X-Forwarded-*`` ...);
    values are printable ASCII: no CR, LF or NUL (no header injection).
    """
    reserved = _RESERVED_REQUEST_HEADERS if request else _RESERVED_RESPONSE_HEADERS
    seen: set[str] = set()
    pairs: list[tuple[str, str]] = []
    for name, value in headers.items():
        where = f"{field}/{_escape(name)}"
        lower = name.lower()
        if _HEADER_NAME.fullmatch(name) is None:
            raise InvalidInput(f"{name[:80]!r} is not a valid header name", field=where)
        if lower in reserved or (request and lower.startswith(_RESERVED_PREFIXES)):
            raise InvalidInput(f"{name} is managed by the gateway and cannot be set", field=where)
        if lower in seen:
            raise InvalidInput(f"header {name} is given twice", field=where)
        if _HEADER_VALUE.fullmatch(value) is None:
            # CR/LF/NUL would split the message; non-ASCII has no agreed encoding in HTTP/1.1
            raise InvalidInput("header values are printable ASCII (no CR, LF or NUL)", field=where)
        if len(value) > MAX_HEADER_VALUE:
            raise InvalidInput(f"header values are at most {MAX_HEADER_VALUE} long", field=where)
        seen.add(lower)
        pairs.append((name, value))
    return tuple(pairs)


def header_object(pairs: Headers) -> dict[str, str]:
    """The model's header pairs as the API's JSON object (the last of a repeated name wins)."""
    return dict(pairs)


def pem_certificates(value: str, field: str) -> str:
    """``value`` if it is a PEM bundle of one or more X.509 certificates (and nothing else)."""
    if "-----BEGIN CERTIFICATE-----" not in value or "PRIVATE KEY" in value:
        raise InvalidInput("expected PEM certificates (and no private key)", field=field)
    try:
        certificates = x509.load_pem_x509_certificates(value.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise InvalidInput("the PEM bundle does not parse as certificates", field=field) from None
    if not certificates:
        raise InvalidInput("the PEM bundle holds no certificate", field=field)
    return value


def path_prefix(value: str, field: str) -> str:
    """``value`` if it is a path the gateway can see: starts with '/', already canonical.

    The gateway matches routes on the canonical path (dot segments resolved, empty
    segments collapsed, escapes normalized); a pattern that is not canonical could
    never match, so it is refused with the form to use instead.
    """
    if not value.startswith("/"):
        raise InvalidInput("the path must start with '/'", field=field)
    if _PATH_TEXT.fullmatch(value) is None:
        raise InvalidInput("the path has characters that must be percent-encoded", field=field)
    try:
        canonical = canonical_path(value.encode("ascii"))
    except BadPath as e:
        raise InvalidInput(e.detail, field=field) from None
    if canonical != value:
        raise InvalidInput(f"the path is not canonical; use {canonical!r}", field=field)
    return value


def regex(value: str, field: str) -> str:
    """``value`` if it compiles as a Python regular expression of at most MAX_REGEX chars."""
    if len(value) > MAX_REGEX:
        raise InvalidInput(f"a regex pattern is at most {MAX_REGEX} characters", field=field)
    try:
        re.compile(value)
        nested = _nested_repeat(_SRE.parse(value), inside=False)
    except (re.error, OverflowError, RecursionError) as e:
        raise InvalidInput(f"the regex does not compile: {e}", field=field) from None
    if nested:
        # (a+)+ style patterns backtrack exponentially: one request could stall the daemon
        raise InvalidInput(
            "nested repetition (like '(a+)+') can take exponential time; simplify the regex",
            field=field,
        )
    return value


def _nested_repeat(pattern: Any, inside: bool) -> bool:
    """Whether a repetition occurs inside an unbounded one (star height above 1).

    ``pattern`` is a parsed ``re`` SubPattern; ``inside`` says whether an enclosing
    unbounded repetition was seen.  Possessive repetitions never backtrack and pass.
    """
    for op, av in pattern:
        children: list[tuple[Any, bool]] = []
        if op in (_SRE.MAX_REPEAT, _SRE.MIN_REPEAT):
            _, high, body = av
            if inside and high > 1:
                return True
            children = [(body, inside or high == _SRE.MAXREPEAT)]
        elif op == _SRE.SUBPATTERN:
            children = [(av[3], inside)]
        elif op == _SRE.BRANCH:
            children = [(branch, inside) for branch in av[1]]
        elif op in (_SRE.ASSERT, _SRE.ASSERT_NOT):
            children = [(av[1], inside)]
        elif op == _SRE.ATOMIC_GROUP:
            children = [(av, inside)]
        elif op == _SRE.GROUPREF_EXISTS:
            children = [(sub, inside) for sub in av[1:] if sub is not None]
        if any(_nested_repeat(sub, deeper) for sub, deeper in children):
            return True
    return False


def port_number(value: str, field: str) -> str:
    """``value`` if it is a decimal TCP port 1-65535 (as the route stores it)."""
    if not value.isascii() or not value.isdigit() or not 0 < int(value) < 65536:
        raise InvalidInput("a port target is a number 1-65535", field=field)
    return str(int(value))


def unique(values: Iterable[str], field: str) -> tuple[str, ...]:
    """``values`` as a tuple, refusing duplicates (named by their index)."""
    seen: list[str] = []
    for index, value in enumerate(values):
        if value in seen:
            raise InvalidInput(f"{value!r} is listed twice", field=f"{field}/{index}")
        seen.append(value)
    return tuple(seen)


def _escape(name: str) -> str:
    """``name`` as one JSON pointer segment."""
    return name.replace("~", "~0").replace("/", "~1")

"""Request-target canonicalization: the one path the router, the guard and the upstream see.

Decision (ATK-10): **canonicalize what is unambiguous, reject what is not.**

Canonicalized (the canonical form is what routing matches *and* what goes upstream):

- percent-encoded unreserved characters are decoded (``%2e`` -> ``.``, ``%41`` -> ``A``),
  every other escape is kept with upper-case hex (``%3b`` -> ``%3B``);
- dot segments are resolved (``/public/../admin`` -> ``/admin``, ``/./a`` -> ``/a``);
  ``..`` above the root stays at the root (RFC 3986 §5.2.4);
- empty segments are collapsed (``//admin`` -> ``/admin``);
- a trailing slash is kept (``/admin`` and ``/admin/`` stay different paths).

Rejected (400): an encoded ``/`` (``%2F``) or ``\\`` (``%5C``), a raw ``\\``, NUL or any other
control character raw or encoded, a malformed escape, an escaped ``%`` followed by two hex digits
(double encoding, ``%252e``), a percent-decoded path that is not valid UTF-8 (overlong forms such
as ``%C0%AE``), raw non-ASCII bytes, and a target that is not origin-form.

The query string is never used for routing (ATK-11) and passes through unchanged; ``;`` is an
ordinary path character.  Absolute-form targets (``http://host/path``) are reduced to their path
by :func:`split_target` and the caller must check the authority against ``Host`` (ATK-12).

Because the upstream receives exactly the canonical path, and that path contains no dot
segments, no empty segments and no encoded separators even after one round of decoding, a
prefix or regex decision made on it holds for what the upstream interprets.
"""

from __future__ import annotations

import re

from oauthproxy.errors import InvalidInput

_HEX = frozenset(b"0123456789abcdefABCDEF")
#: RFC 3986 unreserved characters: decoding them never changes the meaning of a path
_UNRESERVED = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~")
#: characters allowed raw in a path (pchar plus "/"), percent handled separately
_RAW_OK = _UNRESERVED | frozenset(b"!$&'()*+,;=:@/%")
#: decoded bytes that must stay escaped: anything that is not unreserved
_FORBIDDEN_DECODED = frozenset(range(0x20)) | {0x7F, ord("/"), ord("\\")}

_DOUBLE = re.compile(rb"%25[0-9A-Fa-f]{2}")
_SIMPLE = re.compile(rb"[A-Za-z0-9\-._~!$&'()*+,;=:@/]*")


class BadPath(InvalidInput):
    """The request target is ambiguous or malformed and is refused."""

    code = "bad_path"


def split_target(target: bytes) -> tuple[bytes, bytes]:
    """Split a request target into (path, query-with-"?"), reducing absolute-form to its path.

    The authority of an absolute-form target is dropped here on purpose: the virtual host is
    chosen from ``Host`` (and SNI) only; see :func:`authority_of` for the caller's check.
    """
    if not target.startswith(b"/"):
        lower = target[:8].lower()
        if lower.startswith(b"http://") or lower.startswith(b"https://"):
            rest = target.split(b"://", 1)[1]
            slash = rest.find(b"/")
            query = rest.find(b"?")
            if slash == -1 or (query != -1 and query < slash):
                target = b"/" + (rest[query:] if query != -1 else b"")
            else:
                target = rest[slash:]
        else:
            raise BadPath(f"request target must be origin-form, got {target[:64]!r}")
    q = target.find(b"?")
    if q == -1:
        return target, b""
    return target[:q], target[q:]


def authority_of(target: bytes) -> bytes | None:
    """The authority of an absolute-form target (``b"host:port"``), None for origin-form."""
    if target.startswith(b"/"):
        return None
    rest = target.split(b"://", 1)[-1]
    end = len(rest)
    for sep in (b"/", b"?"):
        i = rest.find(sep)
        if i != -1:
            end = min(end, i)
    return rest[:end]


def canonical_path(path: bytes) -> str:
    """The canonical form of a raw path (no query), as ASCII text; raises :class:`BadPath`."""
    if not path.startswith(b"/"):
        raise BadPath("path must start with '/'", field="path")
    if _SIMPLE.fullmatch(path) and b"/." not in path and b"//" not in path:
        # hot path: nothing to decode, resolve or reject
        return path.decode("ascii")
    decoded_check = bytearray()
    out = bytearray()
    i = 0
    n = len(path)
    while i < n:
        c = path[i]
        if c == 0x25:  # "%"
            if i + 2 >= n:
                raise BadPath("truncated percent escape", field="path")
            h1, h2 = path[i + 1], path[i + 2]
            if h1 not in _HEX or h2 not in _HEX:
                raise BadPath("malformed percent escape", field="path")
            value = int(path[i + 1 : i + 3], 16)
            if value in _FORBIDDEN_DECODED:
                raise BadPath(f"encoded byte %{value:02X} is not allowed in a path", field="path")
            decoded_check.append(value)
            if value in _UNRESERVED:
                out.append(value)
            else:
                out += b"%%%02X" % value
            i += 3
            continue
        if c not in _RAW_OK:
            raise BadPath(f"byte {c:#04x} is not allowed raw in a path", field="path")
        decoded_check.append(c)
        out.append(c)
        i += 1
    if _DOUBLE.search(out):
        # checked on the result, where decoded unreserved bytes may complete "%25XX"
        raise BadPath("double percent-encoding is not allowed", field="path")
    try:
        bytes(decoded_check).decode("utf-8")
    except UnicodeDecodeError:
        raise BadPath("percent-decoded path is not valid UTF-8", field="path") from None
    return _remove_dot_segments(out.decode("ascii"))


def _remove_dot_segments(path: str) -> str:
    """Resolve ``.``/``..`` and collapse empty segments; keeps a trailing slash."""
    segments = path.split("/")
    trailing = segments[-1] in ("", ".", "..") and len(segments) > 1
    stack: list[str] = []
    for seg in segments:
        if seg == "" or seg == ".":
            continue
        if seg == "..":
            if stack:
                stack.pop()
            continue
        stack.append(seg)
    result = "/" + "/".join(stack)
    if trailing and stack:
        result += "/"
    return result

"""The rules of HTTP/1.1 message framing every listener enforces (pure, RFC 9110/9112).

An inbound request is checked against these rules before anything of it is acted on
or forwarded, so an upstream never sees a message it could read differently from the
gateway (request smuggling, host confusion, ATK-14/15).  The parser calls them; they
know nothing about Twisted, so a replacement parser can call them too.  Each refusal
is a :class:`FramingError` carrying the status to answer with:

- **400**: a method that is not a token, a request line that is not
  ``method SP target SP HTTP/1.x``, a bare LF where CRLF ends a line, a ``Host`` that
  is not ``host[:port]`` (no userinfo), an absolute-form target with userinfo, a
  malformed chunk size (not 1-16 hex digits, or past the body limit);
- **414**: a request line longer than the head limit;
- **431**: a head whose headers pass the head limit, or more headers than allowed;
- **501**: a method longer than :data:`MAX_METHOD` (no server implements those).
"""

from __future__ import annotations

import re

from attrs import frozen

from oauthproxy.errors import InvalidInput

#: longest method accepted (WebDAV's longest is 17 characters)
MAX_METHOD = 32
#: hex digits of a chunk size at most (64 bits)
MAX_CHUNK_SIZE_DIGITS = 16

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: a request target: visible ASCII only
_TARGET = re.compile(rb"[\x21-\x7e]+")
_HEX = re.compile(rb"[0-9A-Fa-f]+")
#: a registered name or IPv4 address: letters, digits, '-', '.', '_' (reg-name subset)
_NAME = re.compile(rb"[0-9A-Za-z._-]+")
_IPV6 = re.compile(rb"\[[0-9A-Fa-f:.]+\]")
_VERSIONS = frozenset({b"HTTP/1.1", b"HTTP/1.0"})


class FramingError(InvalidInput):
    """The request breaks a framing rule; answer ``status`` and close the connection."""

    code = "bad_request"

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


@frozen
class RequestLine:
    """A request line that passed :func:`check_request_line`."""

    method: bytes
    target: bytes
    version: bytes


def check_line_ending(previous: bytes, data: bytes) -> None:
    """Refuse a LF not preceded by CR in a request head (``previous``: the bytes before)."""
    bare = data.count(b"\n") - data.count(b"\r\n")
    if bare and data.startswith(b"\n") and previous.endswith(b"\r"):
        bare -= 1  # a CRLF split between two packets
    if bare:
        raise FramingError(400, "a line of the request head ends in LF without CR")


def check_method(method: bytes) -> None:
    """A method is a token (RFC 9110 §9.1) of at most :data:`MAX_METHOD` characters."""
    if not _TOKEN.fullmatch(method):
        raise FramingError(400, "the method is not a token")
    if len(method) > MAX_METHOD:
        raise FramingError(501, f"no method is longer than {MAX_METHOD} characters")


def check_request_line(line: bytes, limit: int) -> RequestLine:
    """``method SP request-target SP HTTP-version`` within ``limit`` bytes (RFC 9112 §3)."""
    if len(line) > limit:
        raise FramingError(414, f"the request line is longer than {limit} bytes")
    parts = line.split(b" ")
    if len(parts) != 3:
        if len(parts) > 1:
            check_method(parts[0])
        raise FramingError(400, "the request line is not 'method target version'")
    method, target, version = parts
    check_request(method, target, version)
    return RequestLine(method, target, version)


def check_request(method: bytes, target: bytes, version: bytes) -> None:
    """The three parts of a request line (a parser that split it already calls this)."""
    check_method(method)
    if not _TARGET.fullmatch(target):
        raise FramingError(400, "the request target is empty or not printable ASCII")
    if version not in _VERSIONS:
        raise FramingError(400, "the HTTP version is not HTTP/1.0 or HTTP/1.1")
    if target[:1] != b"/":
        scheme, separator, rest = target.partition(b"://")
        if separator and _TOKEN.fullmatch(scheme):
            authority = rest.split(b"/", 1)[0].split(b"?", 1)[0]
            if b"@" in authority:
                raise FramingError(400, "the request target carries userinfo")


def check_host(value: bytes) -> None:
    """``Host`` is ``uri-host [":" port]`` (RFC 9110 §7.2): no userinfo, a numeric port."""
    if value.startswith(b"["):
        end = value.find(b"]")
        host, rest = value[: end + 1], value[end + 1 :]
        valid_host = end != -1 and _IPV6.fullmatch(host) is not None
    else:
        host, colon, port = value.partition(b":")
        rest = colon + port
        valid_host = _NAME.fullmatch(host) is not None
    if not valid_host:
        raise FramingError(400, "Host is not a valid host[:port]")
    if rest:
        port = rest[1:]
        if not rest.startswith(b":") or not port.isdigit() or len(port) > 5 or int(port) > 65535:
            raise FramingError(400, "Host has an invalid port")


def chunk_size(line: bytes, limit: int) -> int:
    """The size of a chunk-size line (extensions allowed), at most ``limit`` (RFC 9112 §7.1)."""
    size = line.split(b";", 1)[0]
    if not _HEX.fullmatch(size) or len(size) > MAX_CHUNK_SIZE_DIGITS:
        raise FramingError(400, "malformed chunk size")
    value = int(size, 16)
    if value > limit:
        raise FramingError(400, "chunk size past the body limit")
    return value

"""The pure parts of a WebSocket upgrade through the gateway (no I/O; used by ``tunnel``).

- :func:`request_head`: the request head replayed to the upstream;
- :func:`parse_response_head`: the upstream's status line and headers, strictly;
- :func:`relayed_headers` and :func:`body_framing`: how a *non*-101 answer is
  passed on as an ordinary response (hop-by-hop headers dropped, body framing
  decided as RFC 9112 section 6.3 says).
"""

from __future__ import annotations

from typing import Literal

from attrs import frozen
from twisted.web.http_headers import Headers

#: the longest upstream response head accepted
MAX_RESPONSE_HEAD = 64 * 1024
#: headers that describe one hop and are never relayed in a non-101 answer
HOP_BY_HOP = frozenset(
    b"connection keep-alive proxy-connection transfer-encoding upgrade te trailer".split()
)
#: request headers :func:`request_head` sets itself (framing and the upgrade request)
_REPLACED = HOP_BY_HOP | {b"content-length"}
_UNSAFE_IN_VALUES = (b"\r", b"\n", b"\x00")


class BadUpstreamResponse(Exception):
    """The upstream's answer is not a well-formed HTTP/1.x response."""


@frozen
class ResponseHead:
    """A parsed HTTP/1.x response head."""

    code: int
    reason: bytes
    headers: tuple[tuple[bytes, bytes], ...]

    def values(self, name: bytes) -> list[bytes]:
        """Every value of header ``name`` (give it lower-case)."""
        return [value for key, value in self.headers if key.lower() == name]


def parse_response_head(head: bytes) -> ResponseHead:
    """Parse a response head (status line and header lines, without the blank line)."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or parts[0] not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise BadUpstreamResponse(f"bad status line {lines[0][:80]!r}")
    if len(parts[1]) != 3 or not parts[1].isdigit():
        raise BadUpstreamResponse(f"bad status code {parts[1][:10]!r}")
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip() or any(c in line for c in b"\n\x00"):
            raise BadUpstreamResponse(f"bad header line {line[:80]!r}")
        headers.append((name, value.strip(b" \t")))
    return ResponseHead(int(parts[1]), parts[2] if len(parts) > 2 else b"", tuple(headers))


def request_head(method: bytes, target: bytes, authority: bytes, headers: Headers) -> bytes:
    """The head replayed upstream: the caller's headers plus our own upgrade request.

    ``Host`` comes from ``headers`` (``authority`` if they have none); framing and
    connection headers are replaced by ``Connection: Upgrade`` and ``Upgrade:
    websocket`` only, so no other protocol (``h2c``) is ever requested (ATK-16).
    """
    lines = [method + b" " + target + b" HTTP/1.1"]
    if not headers.hasHeader(b"host"):
        lines.append(b"Host: " + authority)
    for name, values in headers.getAllRawHeaders():
        if name.lower() in _REPLACED:
            continue
        for value in values:
            if not any(c in value for c in _UNSAFE_IN_VALUES):  # never start a new line
                lines.append(name + b": " + value)
    lines += [b"Connection: Upgrade", b"Upgrade: websocket"]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def relayed_headers(head: ResponseHead) -> dict[bytes, list[bytes]]:
    """The end-to-end headers of a non-101 answer, by lower-case name, order kept."""
    dropped = set(HOP_BY_HOP)
    for value in head.values(b"connection"):
        dropped.update(token.strip().lower() for token in value.split(b","))
    relayed: dict[bytes, list[bytes]] = {}
    for name, value in head.headers:
        if name.lower() not in dropped:
            relayed.setdefault(name.lower(), []).append(value)
    return relayed


Framing = tuple[Literal["none", "chunked", "close"], None] | tuple[Literal["length"], int]


def body_framing(head: ResponseHead, method: bytes) -> Framing:
    """How the answer's body ends: not at all, chunked, after N bytes, or at close.

    Raises :class:`BadUpstreamResponse` for conflicting or malformed lengths.
    """
    if method == b"HEAD" or head.code in (204, 304):
        return ("none", None)
    encodings = b",".join(head.values(b"transfer-encoding")).lower()
    if encodings:  # the body's own framing wins over any Content-Length
        last = encodings.rsplit(b",", 1)[-1].strip()
        return ("chunked", None) if last == b"chunked" else ("close", None)
    lengths = set(head.values(b"content-length"))
    if not lengths:
        return ("close", None)
    length = lengths.pop()
    if lengths or not length.isdigit():
        raise BadUpstreamResponse(f"bad content-length {length[:20]!r}")
    return ("length", int(length))

"""Parsers of the values Docker services are configured with (pure; ValueError on bad input).

Both the settings (:mod:`oauthproxy.config_parsers`, which turn the ValueError into a
ConfigError naming the setting) and the admin API (an InvalidInput naming the field)
read memory sizes, port ranges, port lists, capability names and image references
through these, so a value means the same wherever it is given.
"""

from __future__ import annotations

import re
from fnmatch import fnmatchcase

#: ``512m``, ``1g``, ``1024k``, ``1073741824``, ``1.5g`` (binary units, as Docker reads them)
_SIZE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*([bkmgt]?)i?b?$")
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
#: Linux capability names (``NET_ADMIN``; ``CAP_`` prefix accepted and dropped)
_CAPABILITY = re.compile(r"^[A-Z][A-Z0-9_]{1,31}$")
#: a Docker image reference: [registry[:port]/]path[:tag][@digest], lower-case path
_IMAGE = re.compile(
    r"^(?:(?P<registry>[A-Za-z0-9.-]+(?::[0-9]{1,5})?)/)?"
    r"(?P<path>[a-z0-9]+(?:[._-]{1,2}[a-z0-9]+)*(?:/[a-z0-9]+(?:[._-]{1,2}[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)
MAX_PORT = 65535


def parse_size(text: str) -> int:
    """A size in bytes from ``512m``-style text (k, m, g, t are powers of 1024)."""
    match = _SIZE.match(text.strip().lower())
    if match is None:
        raise ValueError(f"{text.strip()!r} is not a size (use e.g. 512m, 1g)")
    value = int(float(match.group(1)) * _UNITS[match.group(2)])
    if value <= 0:
        raise ValueError(f"{text.strip()!r} is not a positive size")
    return value


def format_size(value: int) -> str:
    """``value`` bytes in the largest unit that divides it (``536870912`` → ``512m``)."""
    for unit in ("t", "g", "m", "k"):
        if value % _UNITS[unit] == 0:
            return f"{value // _UNITS[unit]}{unit}"
    return str(value)


def parse_port(text: str) -> int:
    """A TCP/UDP port number, 1-65535."""
    text = text.strip()
    if not text.isdigit() or not 1 <= int(text) <= MAX_PORT:
        raise ValueError(f"{text!r} is not a port (1-{MAX_PORT})")
    return int(text)


def parse_port_ranges(text: str) -> tuple[tuple[int, int], ...]:
    """``14000-65535,8000-8099,9100``: sorted, merged inclusive ranges (at least one)."""
    ranges: list[tuple[int, int]] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        low, dash, high = item.partition("-")
        first = parse_port(low)
        last = parse_port(high) if dash else first
        if last < first:
            raise ValueError(f"range {item!r} ends before it starts")
        ranges.append((first, last))
    if not ranges:
        raise ValueError("no port range given")
    return merge_ranges(ranges)


def merge_ranges(ranges: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Inclusive ranges sorted, with overlapping and adjacent ones merged."""
    merged: list[tuple[int, int]] = []
    for first, last in sorted(ranges):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return tuple(merged)


def parse_port_list(text: str) -> tuple[int, ...]:
    """``22,25,80``: sorted distinct ports (empty text = none)."""
    return tuple(sorted({parse_port(item) for item in text.split(",") if item.strip()}))


def capability(text: str) -> str:
    """A capability name, upper-case without ``CAP_`` (``cap_net_admin`` → ``NET_ADMIN``)."""
    name = text.strip().upper()
    name = name.removeprefix("CAP_")
    if name != "ALL" and not _CAPABILITY.match(name):
        raise ValueError(f"{text.strip()!r} is not a capability name")
    return name


def image_reference(text: str) -> str:
    """``text`` if it is a Docker image reference; a missing tag becomes ``:latest``."""
    text = text.strip()
    match = _IMAGE.match(text) if len(text) <= 255 else None
    if match is None:
        raise ValueError(f"{text[:80]!r} is not an image reference (e.g. nginx:alpine)")
    if match.group("tag") is None and match.group("digest") is None:
        return text + ":latest"
    return text


def image_allowed(reference: str, patterns: tuple[str, ...]) -> bool:
    """Whether ``reference`` (as :func:`image_reference` returns it) matches a pattern.

    Patterns are shell-style (``local/*``, ``nginx:*``, ``ghcr.io/acme/*``), matched
    case-sensitively against the whole reference.  No patterns: every image.
    """
    return not patterns or any(fnmatchcase(reference, pattern) for pattern in patterns)

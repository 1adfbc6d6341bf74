"""Parsers of setting values: each takes ``(text, name)`` and returns the typed value.

Used by the settings table in :mod:`oauthproxy.config`; each raises
:class:`~oauthproxy.errors.ConfigError` with ``field=name`` (the option or
environment variable the text came from) and a one-line detail naming it.
Pure apart from :func:`ca_bundle`, which checks that the file exists.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from twisted.internet import endpoints
from twisted.internet.testing import MemoryReactor

from oauthproxy.containers import values
from oauthproxy.errors import ConfigError
from oauthproxy.storage.address import parse_redis_url

#: LOG_LEVEL spellings accepted, mapped to twisted.logger level names
_LOG_LEVELS = {
    "debug": "debug",
    "info": "info",
    "warn": "warn",
    "warning": "warn",
    "error": "error",
    "critical": "critical",
}
_JWT_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA")
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)
_OFF = ("", "off", "none", "no", "false", "disabled")

Parser = Callable[[str, str], Any]


def endpoint(text: str, name: str) -> str | None:
    """A server endpoint description, or None for "off"; refuses what Twisted cannot parse."""
    text = text.strip()
    if text.lower() in _OFF:
        return None
    try:
        parsed: object = endpoints.serverFromString(  # type: ignore[no-untyped-call]
            MemoryReactor(),  # type: ignore[no-untyped-call]
            text,
        )
    except Exception as e:
        # Endpoint parsers (plugins included) raise anything from ValueError to
        # OpenSSL errors; every one of them means "this setting is wrong".
        reason = str(e) or e.__class__.__name__
        raise ConfigError(
            f"{name}: {text!r} is not a valid endpoint ({reason})", field=name
        ) from None
    # Ports are only range-checked when listening; check them now (wrapped ones too).
    while parsed is not None:
        port = getattr(parsed, "_port", None)
        if isinstance(port, int) and not 0 <= port <= 65535:
            raise ConfigError(f"{name}: port {port} is out of range 0-65535", field=name)
        interface = getattr(parsed, "_interface", "")
        if isinstance(interface, str) and interface:
            try:
                ipaddress.ip_address(interface)
            except ValueError:
                raise ConfigError(
                    f"{name}: interface {interface!r} is not an IP address", field=name
                ) from None
        parsed = getattr(parsed, "_wrappedEndpoint", None)
    return text


#: endpoint types adding their own TLS or PROXY layer (the gateway adds those, in order)
_LAYERED = frozenset({"ssl", "tls", "haproxy", "le", "lets"})


def socket_endpoint(text: str, name: str) -> str | None:
    """A gateway listener: a plain socket endpoint (``tcp:``, ``unix:``, ``systemd:``)."""
    if text.split(":", 1)[0].strip().lower() in _LAYERED:
        raise ConfigError(
            f"{name}: {text.strip()!r}: give the plain socket (tcp:, unix:, systemd:); "
            "TLS and PROXY are added by the gateway",
            field=name,
        )
    return endpoint(text, name)


def port_endpoint(text: str, name: str) -> str | None:
    """``HTTP_PORT``-style settings: a bare port number becomes ``tcp:<port>``."""
    port = integer(text, name)
    if not 0 <= port <= 65535:
        raise ConfigError(f"{name}: port {port} is out of range 0-65535", field=name)
    return f"tcp:{port}"


def listener_port(description: str | None) -> int | None:
    """The port of a ``tcp:``/``tcp6:`` listener description, for public URLs.

    None when it cannot be known from the description (``systemd:``, ``unix:``,
    port 0) or the listener is off.
    """
    if not description:
        return None
    kind, _, rest = description.partition(":")
    if kind.strip().lower() not in ("tcp", "tcp6"):
        return None
    for part in rest.split(":"):
        key, equals, value = part.rpartition("=")
        if (not equals or key.strip() == "port") and value.strip().isdigit():
            port = int(value)
            return port or None
    return None


def port(text: str, name: str) -> int:
    """A TCP port number, 1-65535."""
    value = integer(text, name)
    if not 0 < value <= 65535:
        raise ConfigError(f"{name}: port {value} is out of range 1-65535", field=name)
    return value


def integer(text: str, name: str) -> int:
    """An integer."""
    try:
        return int(text.strip())
    except ValueError:
        raise ConfigError(f"{name}: {text!r} is not an integer", field=name) from None


def positive_int(text: str, name: str) -> int:
    """An integer greater than zero."""
    value = integer(text, name)
    if value <= 0:
        raise ConfigError(f"{name}: must be a positive integer, not {value}", field=name)
    return value


def non_negative_int(text: str, name: str) -> int:
    """An integer of zero or more."""
    value = integer(text, name)
    if value < 0:
        raise ConfigError(f"{name}: must be zero or more, not {value}", field=name)
    return value


#: the most worker processes ``--workers`` starts
MAX_WORKERS = 64


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def workers(text: str, name: str) -> int:
    """How many worker processes: ``auto`` (one per usable core) or 1 to :data:`MAX_WORKERS`."""
    if text.strip().lower() == "auto":
        return min(MAX_WORKERS, usable_cores())
    value = integer(text, name) if text.strip().lstrip("-").isdigit() else None
    if value is None:
        raise ConfigError(f"{name}: {text.strip()!r} is neither a number nor 'auto'", field=name)
    if not 1 <= value <= MAX_WORKERS:
        raise ConfigError(
            f"{name}: {value} workers is out of range 1-{MAX_WORKERS} (or 'auto')", field=name
        )
    return value


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def boolean(text: str, name: str) -> bool:
    """``on``/``off`` (also true/false, yes/no, 1/0)."""
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name}: {text.strip()!r} is not on or off", field=name)


def positive_float(text: str, name: str) -> float:
    """A finite number of seconds (or days) greater than zero."""
    try:
        value = float(text.strip())
    except ValueError:
        raise ConfigError(f"{name}: {text!r} is not a number", field=name) from None
    if not (value > 0 and value != float("inf")):
        raise ConfigError(f"{name}: must be a positive number, not {text.strip()}", field=name)
    return value


def non_negative_float(text: str, name: str) -> float:
    """A finite number of seconds, zero included (zero usually means "off")."""
    try:
        value = float(text.strip())
    except ValueError:
        raise ConfigError(f"{name}: {text!r} is not a number", field=name) from None
    if not (0 <= value < float("inf")):
        raise ConfigError(
            f"{name}: must be zero or a positive number, not {text.strip()}", field=name
        )
    return value


def retry_window(text: str, name: str) -> float:
    """Seconds a rotated-out refresh token may be retried: 0 (off) to 300."""
    value = non_negative_float(text, name)
    if value > 300:
        raise ConfigError(
            f"{name}: at most 300 seconds (a longer window lets a stolen refresh token "
            "be replayed unnoticed), not {text.strip()}",
            field=name,
        )
    return value


_PERIODS = {
    "s": 1.0, "sec": 1.0, "second": 1.0,
    "m": 60.0, "min": 60.0, "minute": 60.0,
    "h": 3600.0, "hour": 3600.0,
    "d": 86400.0, "day": 86400.0,
}  # fmt: skip


def rate(text: str, name: str) -> tuple[int, float] | None:
    """``N/period`` (``20/hour``, ``5/min``) as (count, seconds); ``off`` = no limit."""
    value = text.strip().lower()
    if value in _OFF:
        return None
    count, slash, period = value.partition("/")
    seconds = _PERIODS.get(period.strip().removesuffix("s") or period.strip())
    if not slash or not count.strip().isdigit() or int(count) <= 0 or seconds is None:
        raise ConfigError(
            f"{name}: {text.strip()!r} is not a rate like 20/hour, 30/minute or off", field=name
        )
    return int(count), seconds


def choice(*allowed: str) -> Parser:
    """A parser accepting one of ``allowed`` (case-insensitive)."""

    def parse(text: str, name: str) -> str:
        value = text.strip().lower()
        if value not in allowed:
            raise ConfigError(
                f"{name}: must be one of {', '.join(allowed)}, not {text.strip()!r}", field=name
            )
        return value

    return parse


def plain_text(text: str, name: str) -> str:
    """Any text, surrounding whitespace removed."""
    return text.strip()


def optional_text(text: str, name: str) -> str | None:
    """Text, or None when empty."""
    return text.strip() or None


def url(text: str, name: str) -> str:
    """An absolute http(s) URL."""
    text = text.strip()
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as e:
        raise ConfigError(f"{name}: {text!r} is not a valid URL ({e})", field=name) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name}: {text!r} is not an absolute http(s) URL", field=name)
    return text.rstrip("/") if parts.path in ("", "/") else text


def optional_url(text: str, name: str) -> str | None:
    """An absolute http(s) URL, or None when empty."""
    return url(text, name) if text.strip() else None


def hostname(text: str, name: str) -> str | None:
    """A DNS name (lower-cased), or None when empty."""
    text = text.strip().lower().rstrip(".")
    if not text:
        return None
    if not _HOSTNAME.match(text):
        raise ConfigError(f"{name}: {text!r} is not a valid domain name", field=name)
    return text


def email(text: str, name: str) -> str:
    """An e-mail address (or empty)."""
    text = text.strip()
    if text and not re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", text):
        raise ConfigError(f"{name}: {text!r} is not an e-mail address", field=name)
    return text


def redis_url(text: str, name: str) -> str | None:
    """A Redis URL (checked by the storage layer's parser), or None = embedded."""
    text = text.strip()
    if not text:
        return None
    try:
        parse_redis_url(text)
    except ConfigError as e:
        raise ConfigError(f"{name}: {e.detail}", field=name) from None
    return text


def secret_key(text: str, name: str) -> str | None:
    """32 bytes as url-safe base64, or None = generated into the data directory."""
    text = text.strip()
    if not text:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ConfigError(f"{name}: not valid url-safe base64", field=name) from None
    if len(raw) != 32:
        raise ConfigError(f"{name}: must decode to 32 bytes, not {len(raw)}", field=name)
    return text


def pem_b64(text: str, name: str) -> str | None:
    """A base64-encoded PEM private key (``openssl genrsa | base64 -w0``), or None."""
    text = "".join(text.split())
    if not text:
        return None
    try:
        pem = base64.b64decode(text, validate=True).decode("ascii")
    except (binascii.Error, ValueError):
        raise ConfigError(f"{name}: not valid base64", field=name) from None
    if "-----BEGIN" not in pem or "PRIVATE KEY-----" not in pem:
        raise ConfigError(f"{name}: does not contain a PEM private key", field=name)
    return text


def jwt_algorithm(text: str, name: str) -> str:
    """One of the JWS algorithms we can sign with."""
    text = text.strip()
    if text not in _JWT_ALGORITHMS:
        allowed = ", ".join(_JWT_ALGORITHMS)
        raise ConfigError(f"{name}: {text!r} is not one of {allowed}", field=name)
    return text


def users(text: str, name: str) -> tuple[str, ...]:
    """A comma-separated list of GitHub logins, or ``*`` for everyone."""
    users = tuple(u.strip() for u in text.split(",") if u.strip())
    if not users:
        raise ConfigError(f"{name}: empty list (use * to allow everyone)", field=name)
    for user in users:
        if user != "*" and not re.match(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$", user):
            raise ConfigError(f"{name}: {user!r} is not a GitHub login", field=name)
    return ("*",) if "*" in users else users


def networks(text: str, name: str) -> tuple[str, ...]:
    """A comma-separated list of CIDRs (normalised)."""
    out = []
    for item in (i.strip() for i in text.split(",")):
        if not item:
            continue
        try:
            out.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ConfigError(f"{name}: {item!r} is not a network", field=name) from None
    return tuple(out)


def log_level(text: str, name: str) -> str:
    """A log level name, case-insensitive (``INFO``, ``warning`` …)."""
    level = _LOG_LEVELS.get(text.strip().lower())
    if level is None:
        raise ConfigError(
            f"{name}: {text.strip()!r} is not one of debug, info, warn, error, critical",
            field=name,
        )
    return level


def log_format(text: str, name: str) -> str:
    """``text`` or ``json``."""
    value = text.strip().lower()
    if value not in ("text", "json"):
        raise ConfigError(f"{name}: {text.strip()!r} is not text or json", field=name)
    return value


def pem_file(text: str, name: str) -> str | None:
    """A readable PEM file, or None."""
    text = text.strip()
    if text and not os.path.isfile(text):
        raise ConfigError(f"{name}: {text!r} is not a file", field=name)
    return os.path.abspath(text) if text else None


def _value(parse: Callable[[str], Any], text: str, name: str) -> Any:
    """``parse(text)``, its ValueError as a ConfigError naming the setting."""
    try:
        return parse(text)
    except ValueError as e:
        raise ConfigError(f"{name}: {e}", field=name) from None


def docker_host(text: str, name: str) -> str:
    """A Docker engine address: ``unix:///path``, ``tcp://host:port`` or ``ssh://user@host``."""
    text = text.strip()
    scheme, sep, rest = text.partition("://")
    if not sep or scheme not in ("unix", "tcp", "ssh", "http", "https") or not rest:
        raise ConfigError(
            f"{name}: {text!r} is not a Docker address (unix:///var/run/docker.sock, "
            "tcp://host:2376, ssh://user@host)",
            field=name,
        )
    return text


def docker_api_version(text: str, name: str) -> str:
    """``auto`` or an engine API version such as ``1.41``."""
    text = text.strip().lower()
    if text != "auto" and not re.match(r"^1\.[0-9]{1,2}$", text):
        raise ConfigError(f"{name}: {text!r} is not an API version (1.41) or auto", field=name)
    return text


def directory(text: str, name: str) -> str | None:
    """An existing directory (absolute), or None when empty."""
    text = text.strip()
    if not text:
        return None
    if not os.path.isdir(text):
        raise ConfigError(f"{name}: {text!r} is not a directory", field=name)
    return os.path.abspath(text)


def directories(text: str, name: str) -> tuple[str, ...]:
    """Comma-separated absolute directories, normalised (they need not exist yet)."""
    out = []
    for item in (i.strip() for i in text.split(",")):
        if not item:
            continue
        if not item.startswith("/"):
            raise ConfigError(f"{name}: {item!r} is not an absolute path", field=name)
        out.append(os.path.normpath(item))
    return tuple(out)


def patterns(text: str, name: str) -> tuple[str, ...]:
    """Comma-separated shell-style patterns (image allowlist)."""
    out = tuple(item.strip() for item in text.split(",") if item.strip())
    for item in out:
        if any(c.isspace() for c in item) or len(item) > 255:
            raise ConfigError(f"{name}: {item[:80]!r} is not an image pattern", field=name)
    return out


def capabilities(text: str, name: str) -> tuple[str, ...]:
    """Comma-separated Linux capability names (``NET_ADMIN``)."""
    return tuple(
        sorted({_value(values.capability, item, name) for item in text.split(",") if item.strip()})
    )


def docker_name(text: str, name: str) -> str:
    """A Docker object name (network): letters, digits, ``_.-``."""
    text = text.strip()
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$", text):
        raise ConfigError(f"{name}: {text!r} is not a Docker network name", field=name)
    return text


def size(text: str, name: str) -> int:
    """A size in bytes, written ``512m``, ``2g`` ..."""
    result: int = _value(values.parse_size, text, name)
    return result


def size_or_zero(text: str, name: str) -> int:
    """A size as for :func:`size` (``256m``, ``1g``), or ``0`` for no limit."""
    if text.strip() == "0":
        return 0
    return size(text, name)


def port_ranges(text: str, name: str) -> tuple[tuple[int, int], ...]:
    """Inclusive port ranges, ``14000-65535,8000-8099``."""
    result: tuple[tuple[int, int], ...] = _value(values.parse_port_ranges, text, name)
    return result


def port_list(text: str, name: str) -> tuple[int, ...]:
    """Comma-separated ports (empty = none)."""
    result: tuple[int, ...] = _value(values.parse_port_list, text, name)
    return result

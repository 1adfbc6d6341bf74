"""Where Redis lives: parsing ``REDIS_URL`` into a :class:`RedisAddress`.

Pure code with no I/O, used by :mod:`oauthproxy.config` to validate the setting
early and by :func:`oauthproxy.storage.redis.connect_storage` to connect.
Accepted forms::

    redis://[[user]:password@]host[:port][/db]
    rediss://...                      (the same, over TLS)
    unix:///path/to/redis.sock[?db=N][&password=pw][&user=name]

A ``user`` selects a Redis 6+ ACL user (``AUTH user password``).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import parse_qs, unquote, urlsplit

from attrs import evolve, frozen

from oauthproxy.errors import ConfigError

#: the setting every error names
FIELD = "REDIS_URL"

DEFAULT_PORT = 6379


@frozen
class RedisAddress:
    """A parsed Redis location: TCP ``host``/``port`` or a ``unix_path``.

    Exactly one of ``host`` and ``unix_path`` is set.  ``password`` is never
    shown in ``repr`` so that logging an address leaks nothing.
    """

    host: str | None = None
    port: int = DEFAULT_PORT
    unix_path: str | None = None
    db: int = 0
    password: str | None = None
    tls: bool = False
    #: ACL user name (Redis 6+); None = the default user
    username: str | None = None

    def __repr__(self) -> str:
        """Show the address without the password."""
        where = self.unix_path if self.unix_path is not None else f"{self.host}:{self.port}"
        user = f", user={self.username}" if self.username is not None else ""
        secret = ", password=***" if self.password is not None else ""
        return f"RedisAddress({where}, db={self.db}, tls={self.tls}{user}{secret})"

    @property
    def is_loopback(self) -> bool:
        """Whether traffic to this address never leaves the machine.

        Unix sockets, ``localhost`` and loopback IP literals count; any other
        host name is assumed remote (we do not resolve names here).
        """
        if self.unix_path is not None:
            return True
        assert self.host is not None
        if self.host.lower() in ("localhost", "localhost.", "ip6-localhost"):
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def _parse_db(text: str) -> int:
    """Parse a database number, naming the problem when it is not one."""
    if not text.isdigit():
        raise ConfigError(f"database number {text!r} is not a non-negative integer", field=FIELD)
    db = int(text)
    # Redis' default build has 16 databases but the limit is configurable.
    if db > 1_000_000:
        raise ConfigError(f"database number {db} is too large", field=FIELD)
    return db


def _parse_unix(rest: str, query: str) -> RedisAddress:
    """Parse the part of a ``unix://`` URL after the scheme."""
    if not rest.startswith("/"):
        raise ConfigError(
            "unix socket path must be absolute (unix:///path/to/redis.sock)", field=FIELD
        )
    path = unquote(rest)
    if path.endswith("/") or path == "/":
        raise ConfigError(f"unix socket path {path!r} names a directory", field=FIELD)
    db = 0
    password: str | None = None
    username: str | None = None
    for name, values in parse_qs(query, keep_blank_values=True, strict_parsing=False).items():
        if name == "db":
            db = _parse_db(values[-1])
        elif name == "password":
            password = values[-1] or None
        elif name == "user":
            username = values[-1] or None
        else:
            raise ConfigError(f"unknown query parameter {name!r} in unix URL", field=FIELD)
    return RedisAddress(unix_path=path, db=db, password=password, username=username)


def _parse_tcp(url: str, tls: bool) -> RedisAddress:
    """Parse a ``redis://`` or ``rediss://`` URL."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise ConfigError(f"invalid port in {_redact(url)!r}: {e}", field=FIELD) from None
    host = parts.hostname
    if not host:
        raise ConfigError(f"no host in {_redact(url)!r}", field=FIELD)
    if parts.query or parts.fragment:
        raise ConfigError(
            "query strings and fragments are not supported in redis URLs", field=FIELD
        )
    if port == 0:
        raise ConfigError("port 0 is not a valid Redis port", field=FIELD)
    path = parts.path.strip("/")
    db = _parse_db(path) if path else 0
    password = unquote(parts.password) if parts.password else None
    username = unquote(parts.username) if parts.username else None
    return RedisAddress(
        host=host,
        port=port if port is not None else DEFAULT_PORT,
        db=db,
        password=password,
        tls=tls,
        username=username,
    )


def _redact(url: str) -> str:
    """Return ``url`` with any password replaced, for error messages."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return url
    userinfo, _, after = rest.partition("@")
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{after}"


def parse_redis_url(url: str, password: str | None = None) -> RedisAddress:
    """Parse ``url`` into a :class:`RedisAddress`.

    :param password: when given (e.g. from ``REDIS_PASSWORD``) it overrides
        any password in the URL.
    :raises ConfigError: with ``field="REDIS_URL"`` and a detail naming what
        is wrong.
    """
    url = url.strip()
    if not url:
        raise ConfigError("empty Redis URL", field=FIELD)
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigError(
            f"{_redact(url)!r} is not a URL; expected redis://host:port/db, rediss://... "
            "or unix:///path",
            field=FIELD,
        )
    scheme = scheme.lower()
    if scheme == "unix":
        path, _, query = rest.partition("?")
        address = _parse_unix(path, query)
    elif scheme in ("redis", "rediss"):
        address = _parse_tcp(url, tls=scheme == "rediss")
    else:
        raise ConfigError(
            f"unsupported scheme {scheme!r}; use redis://, rediss:// or unix://", field=FIELD
        )
    if password is not None:
        address = evolve(address, password=password or None)
    return address

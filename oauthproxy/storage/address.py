"""Where Redis lives: parsing ``REDIS_URL`` into a :class:`RedisAddress`.

Pure code with no I/O, used by :mod:`oauthproxy.config` to validate the setting
early and by :func:`oauthproxy.storage.redis.connect_storage` to connect.
Accepted forms::

    redis://[[user]:password@]host[:port][/db]
    rediss://...                      (the same, over TLS)
    unix:///path/to/redis.sock[?db=N][&password=pw][&user=name]
    sentinel://[[user]:password@]host:port[,host:port...]/master-name[/db]
    sentinels://...                   (the same, over TLS to the sentinels and Redis)

A ``user`` selects a Redis 6+ ACL user (``AUTH user password``).  With ``sentinel://``
the hosts are Redis Sentinels (port 26379 by default) asked for the current master
of ``master-name``; the user and password are the master's (sentinels that need a
password of their own get it from ``REDIS_SENTINEL_PASSWORD``).
"""

from __future__ import annotations

import ipaddress
from functools import cache
from urllib.parse import parse_qs, unquote, urlsplit

from attrs import evolve, frozen
from twisted.internet._sslverify import IOpenSSLTrustRoot
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.ssl import PrivateCertificate, optionsForClientTLS

from oauthproxy.errors import ConfigError
from oauthproxy.tls_trust import only_authorities

#: the setting every error names
FIELD = "REDIS_URL"

DEFAULT_PORT = 6379
DEFAULT_SENTINEL_PORT = 26379


@frozen
class RedisAddress:
    """A parsed Redis location: TCP ``host``/``port`` or a ``unix_path``.

    Exactly one of ``host``, ``unix_path`` and ``sentinels`` (with ``master_name``) is
    set.  Passwords are never shown in ``repr`` so that logging an address leaks nothing.
    """

    host: str | None = None
    port: int = DEFAULT_PORT
    unix_path: str | None = None
    db: int = 0
    password: str | None = None
    tls: bool = False
    #: ACL user name (Redis 6+); None = the default user
    username: str | None = None
    #: Redis Sentinels asked for the master of ``master_name`` (``sentinel://``)
    sentinels: tuple[tuple[str, int], ...] = ()
    master_name: str | None = None
    #: the sentinels' own password, if they need one (``REDIS_SENTINEL_PASSWORD``)
    sentinel_password: str | None = None
    #: PEM of the only CAs trusted for TLS (``OAUTHPROXY_REDIS_CA_BUNDLE``); None = the system's
    ca_bundle: str | None = None
    #: PEM files of the client certificate and its key shown under TLS, if any
    client_cert: str | None = None
    client_key: str | None = None

    def __repr__(self) -> str:
        """Show the address without the password."""
        if self.sentinels:
            hosts = ",".join(f"{host}:{port}" for host, port in self.sentinels)
            where = f"sentinel {hosts} master {self.master_name}"
        elif self.unix_path is not None:
            where = self.unix_path
        else:
            where = f"{self.host}:{self.port}"
        user = f", user={self.username}" if self.username is not None else ""
        secret = ", password=***" if self.password is not None else ""
        return f"RedisAddress({where}, db={self.db}, tls={self.tls}{user}{secret})"

    @property
    def is_loopback(self) -> bool:
        """Whether traffic to this address never leaves the machine.

        Unix sockets, ``localhost`` and loopback IP literals count; any other
        host name is assumed remote (we do not resolve names here).  Behind
        Sentinel, every sentinel must be on loopback.
        """
        if self.unix_path is not None:
            return True
        if self.sentinels:
            return all(_loopback_host(host) for host, _ in self.sentinels)
        assert self.host is not None
        return _loopback_host(self.host)


def _loopback_host(host: str) -> bool:
    """Whether ``host`` names this machine (``localhost`` or a loopback IP literal)."""
    if host.lower() in ("localhost", "localhost.", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
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


def _parse_host_port(text: str, default: int) -> tuple[str, int]:
    """``host[:port]`` or ``[v6]:port`` as a pair, naming what is wrong."""
    text = text.strip()
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ConfigError(f"sentinel address {text!r} is not [host]:port", field=FIELD)
        port_text = rest[1:]
    else:
        host, _, port_text = text.partition(":")
    if not host:
        raise ConfigError(f"sentinel address {text!r} has no host", field=FIELD)
    if not port_text:
        return host, default
    if not port_text.isdigit() or not 0 < int(port_text) <= 65535:
        raise ConfigError(f"sentinel address {text!r}: invalid port {port_text!r}", field=FIELD)
    return host, int(port_text)


def _parse_sentinel(url: str, rest: str, tls: bool) -> RedisAddress:
    """Parse a ``sentinel://`` or ``sentinels://`` URL (``rest`` follows the scheme)."""
    if "?" in rest or "#" in rest:
        raise ConfigError(
            "query strings and fragments are not supported in sentinel URLs", field=FIELD
        )
    authority, _, path = rest.partition("/")
    userinfo, at, hosts = authority.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon and secret else None
    if not hosts:
        raise ConfigError(f"no sentinel host in {_redact(url)!r}", field=FIELD)
    sentinels = tuple(
        _parse_host_port(each, DEFAULT_SENTINEL_PORT) for each in hosts.split(",") if each
    )
    name, _, db_text = path.strip("/").partition("/")
    name = unquote(name)
    if not name:
        raise ConfigError(
            f"no master name in {_redact(url)!r}; expected sentinel://host:port/master-name",
            field=FIELD,
        )
    return RedisAddress(
        sentinels=sentinels,
        master_name=name,
        db=_parse_db(db_text) if db_text else 0,
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


def parse_redis_url(
    url: str, password: str | None = None, sentinel_password: str | None = None
) -> RedisAddress:
    """Parse ``url`` into a :class:`RedisAddress`.

    :param password: when given (e.g. from ``REDIS_PASSWORD``) it overrides
        any password in the URL.
    :param sentinel_password: the sentinels' own password (``sentinel://`` only).
    :raises ConfigError: with ``field="REDIS_URL"`` and a detail naming what
        is wrong.
    """
    url = url.strip()
    if not url:
        raise ConfigError("empty Redis URL", field=FIELD)
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigError(
            f"{_redact(url)!r} is not a URL; expected redis://host:port/db, rediss://..., "
            "unix:///path or sentinel://host:port,host:port/master-name",
            field=FIELD,
        )
    scheme = scheme.lower()
    if scheme == "unix":
        path, _, query = rest.partition("?")
        address = _parse_unix(path, query)
    elif scheme in ("redis", "rediss"):
        address = _parse_tcp(url, tls=scheme == "rediss")
    elif scheme in ("sentinel", "sentinels"):
        address = _parse_sentinel(url, rest, tls=scheme == "sentinels")
    else:
        raise ConfigError(
            f"unsupported scheme {scheme!r}; use redis://, rediss://, unix:// or sentinel://",
            field=FIELD,
        )
    if password is not None:
        address = evolve(address, password=password or None)
    if sentinel_password is not None and address.sentinels:
        address = evolve(address, sentinel_password=sentinel_password or None)
    return address


def client_tls(address: RedisAddress, host: str) -> IOpenSSLClientConnectionCreator | None:
    """TLS for a connection to ``host`` (Redis or a sentinel), or None without TLS.

    The certificate must name ``host`` and chain to the system's CAs, or to those of
    ``address.ca_bundle`` only when it is set (as ``redis-cli --cacert`` does); the
    client certificate of the address, if any, is shown when asked for.
    """
    if not address.tls:
        return None
    trust = None if address.ca_bundle is None else _authorities(address.ca_bundle)
    client = None
    if address.client_cert is not None and address.client_key is not None:
        client = _client_certificate(address.client_cert, address.client_key)
    return optionsForClientTLS(host, trustRoot=trust, clientCertificate=client)


@cache
def _client_certificate(certificate: str, key: str) -> PrivateCertificate:
    """The client certificate and its key, from their PEM files (read once)."""
    with open(certificate, "rb") as f, open(key, "rb") as g:
        pem = f.read() + b"\n" + g.read()
    loaded: PrivateCertificate = PrivateCertificate.loadPEM(pem)  # type: ignore[no-untyped-call]
    return loaded


@cache
def _authorities(path: str) -> IOpenSSLTrustRoot:
    """The CAs of the PEM bundle at ``path`` (read once: the daemon checked it at start)."""
    with open(path, "rb") as f:
        return only_authorities(f.read())

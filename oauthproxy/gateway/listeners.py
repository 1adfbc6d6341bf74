"""Build the gateway's listening services from endpoint strings.

Every listener is a plain socket endpoint string (``tcp:80``,
``systemd:domain=INET6:index=0``, ``unix:/run/x.sock``...) so socket activation
and unprivileged ports need no code.  TLS and the PROXY protocol are layered on
in code, never through ``ssl:``/``tls:``/``haproxy:`` strings: Twisted's
``haproxy:ssl:`` nests TLS *outside* PROXY, which breaks every real balancer.
The stacks, outermost (first to see the bytes) first:

- http:        socket -> HTTP
- https:       socket -> TLS (SNI + ALPN from the CertificateMap) -> HTTP
- proxy-http:  socket -> PROXY -> HTTP
- proxy-https: socket -> PROXY -> TLS -> HTTP (the header precedes the ClientHello)

``*_endpoint`` builders return the endpoint stack (listen with the Site, or
any factory wrapping it); ``*_listener`` builders wrap it in a
``StreamServerEndpointService``; :func:`gateway_endpoints` and
:func:`gateway_listeners` build everything ``Config`` enables.  A TLS endpoint
binds only once the certificate map has its fallback certificate, so no early
handshake fails.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attrs import frozen
from twisted.application.internet import StreamServerEndpointService
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString, wrapServerTLS
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from zope.interface import implementer

from oauthproxy.config import Config
from oauthproxy.errors import ConfigError
from oauthproxy.gateway.proxyproto import TrustedNetworks, TrustedProxyEndpoint
from oauthproxy.gateway.sni import CertificateMap
from oauthproxy.serving.tcp import tuned_reactor

#: endpoint types that would add their own TLS or PROXY layer (in the wrong order)
_LAYERED_PREFIXES = frozenset({"ssl", "tls", "haproxy", "le", "lets"})


#: endpoint types whose listen backlog the description can set
_BACKLOG_PREFIXES = frozenset({"tcp", "tcp6", "unix"})


def with_backlog(description: str, backlog: int | None) -> str:
    """``description`` with ``backlog=`` added for TCP and unix sockets that name none.

    Twisted's default is 50: a burst of connections overflows it and the dropped
    SYNs come back a second later.  systemd sockets get theirs from the unit.
    """
    prefix = description.split(":", 1)[0].strip().lower()
    if backlog is None or prefix not in _BACKLOG_PREFIXES:
        return description
    if any(part.strip().startswith("backlog=") for part in description.split(":")[1:]):
        return description
    return f"{description}:backlog={backlog}"


def socket_endpoint(reactor: Any, description: str, setting: str) -> IStreamServerEndpoint:
    """The plain socket endpoint for ``description``; :class:`ConfigError` naming ``setting``."""
    prefix = description.split(":", 1)[0].strip().lower()
    if prefix in _LAYERED_PREFIXES:
        raise ConfigError(
            f"{description!r}: give the plain socket (tcp:, unix:, systemd:);"
            " TLS and PROXY are added by the gateway",
            field=setting,
        )
    try:
        # TCP connections of the gateway write at the end of the reactor's turn
        endpoint: IStreamServerEndpoint = serverFromString(tuned_reactor(reactor), description)  # type: ignore[no-untyped-call]
    except (ValueError, KeyError, TypeError, IndexError) as error:
        raise ConfigError(f"invalid endpoint {description!r}: {error}", field=setting) from error
    return endpoint


def _service(
    endpoint: IStreamServerEndpoint, factory: IProtocolFactory
) -> StreamServerEndpointService:
    return StreamServerEndpointService(endpoint, factory)  # type: ignore[no-untyped-call]


@implementer(IStreamServerEndpoint)
@frozen
class _AfterReady:
    """An endpoint that starts listening only once ``ready()`` fires."""

    wrapped: IStreamServerEndpoint
    ready: Callable[[], Deferred[None]]

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        """Wait for readiness, then listen on the wrapped endpoint."""
        waiting = self.ready()
        return waiting.addCallback(lambda _: self.wrapped.listen(protocolFactory))


def _tls(reactor: Any, certificates: CertificateMap, inner: IStreamServerEndpoint) -> _AfterReady:
    return _AfterReady(wrapServerTLS(certificates, inner, reactor), certificates.when_ready)


#: opens the plain socket of a listener: ``(reactor, description, setting) -> endpoint``
#: (:func:`socket_endpoint`, or in a worker process a socket its supervisor opened)
SocketOpener = Callable[[Any, str, str], IStreamServerEndpoint]


def http_endpoint(
    reactor: Any,
    description: str,
    setting: str = "http_endpoint",
    open_socket: SocketOpener = socket_endpoint,
) -> IStreamServerEndpoint:
    """socket -> HTTP."""
    return open_socket(reactor, description, setting)


def https_endpoint(
    reactor: Any,
    description: str,
    certificates: CertificateMap,
    setting: str = "https_endpoint",
    open_socket: SocketOpener = socket_endpoint,
) -> IStreamServerEndpoint:
    """socket -> TLS (certificate per SNI name, ALPN h2 and http/1.1) -> HTTP."""
    return _tls(reactor, certificates, open_socket(reactor, description, setting))


def proxy_http_endpoint(
    reactor: Any,
    description: str,
    trusted: TrustedNetworks,
    header_timeout: float,
    setting: str = "proxy_http_endpoint",
    open_socket: SocketOpener = socket_endpoint,
) -> IStreamServerEndpoint:
    """socket -> PROXY v1/v2 (from a ``trusted`` source) -> HTTP."""
    inner = open_socket(reactor, description, setting)
    return TrustedProxyEndpoint(inner, trusted, header_timeout, reactor)


def proxy_https_endpoint(
    reactor: Any,
    description: str,
    certificates: CertificateMap,
    trusted: TrustedNetworks,
    header_timeout: float,
    setting: str = "proxy_https_endpoint",
    open_socket: SocketOpener = socket_endpoint,
) -> IStreamServerEndpoint:
    """socket -> PROXY v1/v2 (from a ``trusted`` source) -> TLS -> HTTP."""
    inner = open_socket(reactor, description, setting)
    proxied = TrustedProxyEndpoint(inner, trusted, header_timeout, reactor)
    return _tls(reactor, certificates, proxied)


def http_listener(
    reactor: Any, description: str, factory: IProtocolFactory, setting: str = "http_endpoint"
) -> StreamServerEndpointService:
    """Plain HTTP on ``description``, as a service."""
    return _service(http_endpoint(reactor, description, setting), factory)


def https_listener(
    reactor: Any,
    description: str,
    factory: IProtocolFactory,
    certificates: CertificateMap,
    setting: str = "https_endpoint",
) -> StreamServerEndpointService:
    """HTTPS on ``description``, as a service."""
    return _service(https_endpoint(reactor, description, certificates, setting), factory)


def proxy_http_listener(
    reactor: Any,
    description: str,
    factory: IProtocolFactory,
    trusted: TrustedNetworks,
    header_timeout: float,
    setting: str = "proxy_http_endpoint",
) -> StreamServerEndpointService:
    """HTTP behind a PROXY header on ``description``, as a service."""
    endpoint = proxy_http_endpoint(reactor, description, trusted, header_timeout, setting)
    return _service(endpoint, factory)


def proxy_https_listener(
    reactor: Any,
    description: str,
    factory: IProtocolFactory,
    certificates: CertificateMap,
    trusted: TrustedNetworks,
    header_timeout: float,
    setting: str = "proxy_https_endpoint",
) -> StreamServerEndpointService:
    """HTTPS behind a PROXY header on ``description``, as a service."""
    endpoint = proxy_https_endpoint(
        reactor, description, certificates, trusted, header_timeout, setting
    )
    return _service(endpoint, factory)


@frozen
class GatewayEndpoint:
    """One configured gateway listener: its name (the option's), description and stack."""

    name: str
    description: str
    endpoint: IStreamServerEndpoint


def gateway_endpoints(
    reactor: Any,
    config: Config,
    certificates: CertificateMap,
    open_socket: SocketOpener = socket_endpoint,
) -> list[GatewayEndpoint]:
    """The stacks of every gateway listener ``config`` enables (an endpoint of None = off).

    Each socket gets ``config.listen_backlog`` unless its description sets a backlog.
    """
    found = []
    backlog = config.listen_backlog
    if config.http_endpoint:
        description = config.http_endpoint
        inner = with_backlog(description, backlog)
        endpoint = http_endpoint(reactor, inner, open_socket=open_socket)
        found.append(GatewayEndpoint("http", description, endpoint))
    if config.https_endpoint:
        description = config.https_endpoint
        inner = with_backlog(description, backlog)
        endpoint = https_endpoint(reactor, inner, certificates, open_socket=open_socket)
        found.append(GatewayEndpoint("https", description, endpoint))
    if config.proxy_http_endpoint or config.proxy_https_endpoint:
        trusted = TrustedNetworks.parse(config.proxy_trusted_networks)
        timeout = config.proxy_header_timeout
        if config.proxy_http_endpoint:
            description = config.proxy_http_endpoint
            inner = with_backlog(description, backlog)
            endpoint = proxy_http_endpoint(
                reactor, inner, trusted, timeout, open_socket=open_socket
            )
            found.append(GatewayEndpoint("proxy-http", description, endpoint))
        if config.proxy_https_endpoint:
            description = config.proxy_https_endpoint
            inner = with_backlog(description, backlog)
            endpoint = proxy_https_endpoint(
                reactor, inner, certificates, trusted, timeout, open_socket=open_socket
            )
            found.append(GatewayEndpoint("proxy-https", description, endpoint))
    return found


def gateway_listeners(
    reactor: Any, config: Config, factory: IProtocolFactory, certificates: CertificateMap
) -> list[StreamServerEndpointService]:
    """Every gateway listener ``config`` enables, as services all serving ``factory``."""
    return [
        _service(found.endpoint, factory)
        for found in gateway_endpoints(reactor, config, certificates)
    ]

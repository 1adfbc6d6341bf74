# twisted.internet.ssl/endpoints are partly untyped; mypy strict would flag those calls
# mypy: disable-error-code="no-untyped-call"
"""Connections to upstreams: TLS settings and endpoints, built once per upstream and cached.

The forwarder and the WebSocket tunnel connect through :class:`UpstreamConnector` so that no
request pays for URI parsing, IDNA encoding, endpoint construction or a TLS context: all of it
happens the first time an :class:`~oauthproxy.gateway.routing.Upstream` is used.  HTTPS
upstreams are verified against the system trust store, or only the proxy's own CA bundle
(``upstream_ca_pem``); ``verify_upstream_tls=False`` is the one explicit way to skip checks.
"""

from __future__ import annotations

from typing import Any

from attrs import define, field
from OpenSSL import SSL
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    wrapClientTLS,
)
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator, IStreamClientEndpoint
from twisted.internet.ssl import (
    CertificateOptions,
    optionsForClientTLS,
)
from twisted.protocols.tls import TLSMemoryBIOProtocol
from zope.interface import implementer

from oauthproxy.errors import InvalidInput
from oauthproxy.gateway.routing import Upstream
from oauthproxy.tls_trust import only_authorities

#: upstreams kept; far above any real configuration, only a guard against churn
_MAX_CACHED_UPSTREAMS = 4096

UpstreamKey = tuple[str, str, int, bool, str | None]


class UnusableUpstreamTLS(InvalidInput):
    """The proxy's upstream TLS settings cannot be used (e.g. a broken CA bundle)."""

    code = "unusable_upstream_tls"


@implementer(IOpenSSLClientConnectionCreator)
class _UnverifiedTLS:
    """TLS to an upstream without certificate checks (only for ``verify_upstream_tls=False``)."""

    def __init__(self, host: str) -> None:
        self._options = CertificateOptions(verify=False)
        self._sni = None if _is_ip(host) else host.encode("idna")

    def clientConnectionForTLS(self, tlsProtocol: TLSMemoryBIOProtocol) -> SSL.Connection:
        """A client connection that still sends SNI so virtual-hosted upstreams work."""
        connection = self._options.clientConnectionForTLS(tlsProtocol)
        if self._sni is not None:
            connection.set_tlsext_host_name(self._sni)
        return connection


def _is_ip(host: str) -> bool:
    """Whether ``host`` is an IPv4 or IPv6 literal."""
    return bool(isIPAddress(host) or isIPv6Address(host))


def tls_creator(upstream: Upstream) -> IOpenSSLClientConnectionCreator:
    """The client TLS settings for an HTTPS upstream: verified unless explicitly disabled."""
    if not upstream.verify_tls:
        return _UnverifiedTLS(upstream.host)
    if upstream.ca_pem:
        try:
            roots = only_authorities(upstream.ca_pem.encode("ascii"))
        except (ValueError, UnicodeEncodeError) as e:
            raise UnusableUpstreamTLS(
                f"upstream_ca_pem for {upstream.host} does not load: {e}", field="upstream_ca_pem"
            ) from e
        return optionsForClientTLS(upstream.host, trustRoot=roots)
    return optionsForClientTLS(upstream.host)


@define
class UpstreamConnector:
    """Caches one endpoint (and TLS creator) per upstream and connect timeout."""

    reactor: Any  # IReactorTCP
    _endpoints: dict[tuple[UpstreamKey, float], IStreamClientEndpoint] = field(factory=dict)
    _creators: dict[UpstreamKey, IOpenSSLClientConnectionCreator] = field(factory=dict)

    def creator(self, upstream: Upstream) -> IOpenSSLClientConnectionCreator:
        """The cached TLS creator for an HTTPS upstream."""
        key = upstream.key
        creator = self._creators.get(key)
        if creator is None:
            if len(self._creators) > _MAX_CACHED_UPSTREAMS:
                self._creators.clear()
            creator = self._creators[key] = tls_creator(upstream)
        return creator

    def endpoint(self, upstream: Upstream, connect_timeout: float) -> IStreamClientEndpoint:
        """The cached endpoint for an upstream (built once: no per-request IDNA or parsing)."""
        key = (upstream.key, connect_timeout)
        ep = self._endpoints.get(key)
        if ep is None:
            if len(self._endpoints) > _MAX_CACHED_UPSTREAMS:
                self._endpoints.clear()
            timeout = max(connect_timeout, 0.1)
            host = upstream.host
            base: IStreamClientEndpoint
            if isIPAddress(host):
                base = TCP4ClientEndpoint(self.reactor, host, upstream.port, timeout=timeout)
            elif isIPv6Address(host):
                base = TCP6ClientEndpoint(self.reactor, host, upstream.port, timeout=timeout)
            else:
                base = HostnameEndpoint(self.reactor, host.encode("idna"), upstream.port, timeout)
            if upstream.scheme == "https":
                base = wrapClientTLS(self.creator(upstream), base)
            ep = self._endpoints[key] = base
        return ep

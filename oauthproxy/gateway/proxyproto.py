"""PROXY protocol (v1 and v2) listeners that honour headers only from trusted balancers.

A load balancer in front of the gateway prepends a PROXY header naming the
real client to every connection.  :class:`TrustedProxyEndpoint` wraps any
server endpoint so that, per connection:

1. a peer outside ``proxy_trusted_networks`` is dropped at once: anyone who
   could send a header could claim any client address (ATK-19);
2. the header must arrive completely before ``proxy_header_timeout`` on the
   injected clock, otherwise the connection is dropped (ATK-18).  It may come
   in pieces: bytes are buffered until the header is complete, which Twisted's
   own wrapper does not do (it decides from the first read);
3. the header is parsed by Twisted's ``twisted.protocols.haproxy`` parsers; an
   invalid one (bad signature, v1 line over 107 bytes, truncated v2 address
   block, impossible address) drops the connection, and no header means no
   connection: a PROXY listener never guesses (ATK-19);
4. only then is the wrapped protocol (TLS, then HTTP) connected, and its
   ``getPeer()``/``getHost()`` are the header's source and destination, so
   X-Forwarded-For, routing and logs see the real client.  A v2 ``LOCAL`` or
   v1 ``UNKNOWN`` header (health checks) leaves the balancer's own address.

Addresses are normalised with :mod:`ipaddress` (compressed IPv6, IPv4-mapped
IPv6 as IPv4).  Peers on UNIX sockets are trusted: file permissions guard them.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable
from typing import Any

from attrs import frozen
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IListeningPort,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamServerEndpoint,
    ITransport,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.protocols.haproxy._exceptions import InvalidProxyHeader
from twisted.protocols.haproxy._info import ProxyInfo
from twisted.protocols.haproxy._v1parser import V1Parser
from twisted.protocols.haproxy._v2parser import V2Parser
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from zope.interface import directlyProvides, implementer, providedBy

from oauthproxy.errors import ConfigError

#: the longest v1 header the specification allows, CRLF included
V1_MAX_LENGTH = 107
#: v2 headers longer than this are refused (addresses take <= 216 bytes; the rest is TLVs)
V2_MAX_LENGTH = 4096
_V1_PREFIX = V1Parser.PROXYSTR + b" "
_V2_PREFIX = V2Parser.PREFIX

_log = Logger()

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def ip_of(address: IAddress) -> IPAddress | None:
    """The IP of a TCP address, IPv4-mapped IPv6 as IPv4; None for non-IP addresses."""
    if not isinstance(address, IPv4Address | IPv6Address):
        return None
    try:
        ip = ipaddress.ip_address(address.host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def normalise_address(address: IAddress) -> IAddress:
    """``address`` with its host in canonical form (``::1``, not ``0:0:0:0:0:0:0:1``)."""
    ip = ip_of(address)
    if ip is None or not isinstance(address, IPv4Address | IPv6Address):
        return address
    if isinstance(ip, ipaddress.IPv4Address):
        return IPv4Address(address.type, str(ip), address.port)
    return IPv6Address(address.type, ip.compressed, address.port)


@frozen
class TrustedNetworks:
    """The source networks whose PROXY headers are believed."""

    networks: tuple[IPNetwork, ...]

    @classmethod
    def parse(cls, cidrs: Iterable[str]) -> TrustedNetworks:
        """Parse CIDR strings; :class:`ConfigError` on ``proxy_trusted_networks`` if one is bad."""
        networks = []
        for cidr in cidrs:
            try:
                networks.append(ipaddress.ip_network(cidr.strip(), strict=False))
            except ValueError as error:
                raise ConfigError(
                    f"not a network: {cidr!r} ({error})", field="proxy_trusted_networks"
                ) from error
        return cls(tuple(networks))

    def trusts(self, peer: IAddress) -> bool:
        """Whether a connection from ``peer`` may send a PROXY header."""
        if not isinstance(peer, IPv4Address | IPv6Address):
            return True  # UNIX sockets: only local processes with file permission connect
        ip = ip_of(peer)
        return ip is not None and any(ip in network for network in self.networks)


class _Incomplete(Exception):
    """More bytes are needed before the header can be parsed."""


def parse_header(buffer: bytes) -> tuple[ProxyInfo, bytes]:
    """Split ``buffer`` into a parsed PROXY header and the bytes after it.

    Raises :class:`_Incomplete` while ``buffer`` may still become a valid
    header, ``InvalidProxyHeader`` (or ``ValueError``) when it cannot.
    """
    if len(buffer) < len(_V2_PREFIX) and (
        _V2_PREFIX.startswith(buffer) or _V1_PREFIX.startswith(buffer[: len(_V1_PREFIX)])
    ):
        raise _Incomplete()
    if buffer.startswith(_V2_PREFIX):
        if len(buffer) < 16:
            raise _Incomplete()
        if buffer[12] & 0xF0 != 0x20:
            raise InvalidProxyHeader()
        (length,) = struct.unpack("!H", buffer[14:16])
        size = 16 + length
        if size > V2_MAX_LENGTH:
            raise InvalidProxyHeader()
        if len(buffer) < size:
            raise _Incomplete()
        return V2Parser.parse(buffer[:size]), buffer[size:]
    if buffer.startswith(_V1_PREFIX):
        end = buffer.find(V1Parser.NEWLINE)
        if end == -1:
            if len(buffer) >= V1_MAX_LENGTH:
                raise InvalidProxyHeader()
            raise _Incomplete()
        if end + 2 > V1_MAX_LENGTH:
            raise InvalidProxyHeader()
        info = V1Parser.parse(buffer[:end])
        _check_v1_addresses(buffer[:end], info)
        return info, buffer[end + 2 :]
    raise InvalidProxyHeader()


def _check_v1_addresses(line: bytes, info: ProxyInfo) -> None:
    """Twisted's v1 parser copies address text as is: insist on real IPs of the named family."""
    family = line.split(b" ")[1]
    for address in (info.source, info.destination):
        if address is None:
            continue
        assert isinstance(address, IPv4Address | IPv6Address)
        ip = ipaddress.ip_address(address.host)  # ValueError if it is no IP at all
        if ip.version != (4 if family == V1Parser.TCP4_PROTO else 6):
            raise InvalidProxyHeader()
        if not 0 <= address.port <= 65535:
            raise InvalidProxyHeader()


class TrustedProxyProtocol(ProtocolWrapper):
    """Reads one PROXY header from a trusted peer, then relays all else to the wrapped protocol."""

    factory: TrustedProxyFactory

    def __init__(self, factory: TrustedProxyFactory, wrappedProtocol: IProtocol) -> None:
        super().__init__(factory, wrappedProtocol)
        self._buffer = b""
        self._header_done = False
        self._refused = False
        self._deadline: IDelayedCall | None = None
        self._source: IAddress | None = None
        self._destination: IAddress | None = None

    def makeConnection(self, transport: ITransport) -> None:
        """Accept the socket, but connect the wrapped protocol only once the header is read."""
        directlyProvides(self, providedBy(transport))
        Protocol.makeConnection(self, transport)  # type: ignore[no-untyped-call]

    def connectionMade(self) -> None:
        """Drop untrusted peers; give trusted ones ``header_timeout`` seconds for the header."""
        self.factory.registerProtocol(self)  # type: ignore[no-untyped-call]
        assert self.transport is not None
        peer = self.transport.getPeer()
        if not self.factory.trusted.trusts(peer):
            _log.warn("refused a PROXY connection from untrusted {peer}", peer=str(peer))
            self._refuse()
            return
        self._deadline = self.factory.clock.callLater(
            self.factory.header_timeout, self._header_timed_out
        )

    def _header_timed_out(self) -> None:
        self._deadline = None
        _log.info("no complete PROXY header in time from {peer}", peer=str(self._socket_peer()))
        self._refuse()

    def _refuse(self) -> None:
        self._refused = True
        self._buffer = b""
        assert self.transport is not None
        self.transport.abortConnection()  # type: ignore[attr-defined]

    def _socket_peer(self) -> IAddress:
        assert self.transport is not None
        return self.transport.getPeer()

    def dataReceived(self, data: bytes) -> None:
        """Buffer until the header is complete, then connect and feed the wrapped protocol."""
        if self._header_done:
            self.wrappedProtocol.dataReceived(data)
            return
        if self._refused:
            return
        self._buffer += data
        try:
            info, remaining = parse_header(self._buffer)
        except _Incomplete:
            return
        except (InvalidProxyHeader, ValueError, IndexError, KeyError, struct.error):
            _log.info("invalid PROXY header from {peer}", peer=str(self._socket_peer()))
            self._refuse()
            return
        self._buffer = b""
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if info.source is not None and ip_of(info.source) is not None:
            self._source = normalise_address(info.source)
            if info.destination is not None:
                self._destination = normalise_address(info.destination)
        self._header_done = True
        self.wrappedProtocol.makeConnection(self)  # type: ignore[arg-type]  # we are its transport
        if remaining and self.connected:
            self.wrappedProtocol.dataReceived(remaining)

    def getPeer(self) -> IAddress:
        """The client named by the header, else the socket's peer (the balancer)."""
        if self._source is not None:
            return self._source
        return normalise_address(self._socket_peer())

    def getHost(self) -> IAddress:
        """The destination named by the header, else the socket's own address."""
        if self._destination is not None:
            return self._destination
        assert self.transport is not None
        return normalise_address(self.transport.getHost())

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Cancel the deadline; tell the wrapped protocol only if it was ever connected."""
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self.factory.unregisterProtocol(self)  # type: ignore[no-untyped-call]
        if self._header_done and self.wrappedProtocol is not None:
            self.wrappedProtocol.connectionLost(reason)
        self.wrappedProtocol = None  # type: ignore[assignment]


class TrustedProxyFactory(WrappingFactory[TrustedProxyProtocol]):
    """Wraps a factory so that its connections start with a trusted PROXY header."""

    protocol = TrustedProxyProtocol

    def __init__(
        self,
        wrappedFactory: IProtocolFactory,
        trusted: TrustedNetworks,
        header_timeout: float,
        clock: IReactorTime,
    ) -> None:
        super().__init__(wrappedFactory)  # type: ignore[no-untyped-call]
        self.trusted = trusted
        self.header_timeout = header_timeout
        self.clock = clock

    def logPrefix(self) -> str:
        """The wrapped factory's prefix, marked as PROXY."""
        wrapped: Any = self.wrappedFactory
        prefix = wrapped.logPrefix() if hasattr(wrapped, "logPrefix") else type(wrapped).__name__
        return f"{prefix} (PROXY)"


@implementer(IStreamServerEndpoint)
@frozen
class TrustedProxyEndpoint:
    """A server endpoint whose connections must begin with a PROXY header from a trusted peer."""

    wrapped: IStreamServerEndpoint
    trusted: TrustedNetworks
    header_timeout: float
    clock: IReactorTime

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        """Listen on the wrapped endpoint with ``protocolFactory`` behind the PROXY reader."""
        return self.wrapped.listen(
            TrustedProxyFactory(protocolFactory, self.trusted, self.header_timeout, self.clock)
        )

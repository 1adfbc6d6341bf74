"""Tests for :mod:`oauthproxy.gateway.proxyproto`: trust, deadline, parsing, addresses.

No sockets: connections are ``StringTransport``s and time is a ``Clock``.
"""

from __future__ import annotations

import contextlib
import socket
import struct

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.protocols.haproxy._exceptions import InvalidProxyHeader
from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.errors import ConfigError
from oauthproxy.gateway.proxyproto import (
    V1_MAX_LENGTH,
    TrustedNetworks,
    TrustedProxyFactory,
    TrustedProxyProtocol,
    _Incomplete,
    normalise_address,
    parse_header,
)

_V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def v2_header(source: str, destination: str, sport: int, dport: int) -> bytes:
    """A v2 PROXY TCP header (IPv4 or IPv6 by the source's form)."""
    if ":" in source:
        addresses = socket.inet_pton(socket.AF_INET6, source) + socket.inet_pton(
            socket.AF_INET6, destination
        )
        family = 0x21
    else:
        addresses = socket.inet_aton(source) + socket.inet_aton(destination)
        family = 0x11
    body = addresses + struct.pack("!HH", sport, dport)
    return _V2_SIGNATURE + bytes([0x21, family]) + struct.pack("!H", len(body)) + body


V2_LOCAL = _V2_SIGNATURE + bytes([0x20, 0x00]) + struct.pack("!H", 0)


class Recorder(Protocol):
    """The wrapped protocol: records what the PROXY layer lets through."""

    def __init__(self) -> None:
        self.received = b""
        self.made = False
        self.lost = False
        self.peer: IAddress | None = None

    def connectionMade(self) -> None:
        """Note the connection and the peer it reports."""
        self.made = True
        assert self.transport is not None
        self.peer = self.transport.getPeer()

    def dataReceived(self, data: bytes) -> None:
        """Keep the bytes."""
        self.received += data

    def connectionLost(self, reason: object = None) -> None:
        """Note the loss."""
        self.lost = True


class Connection:
    """One PROXY-wrapped connection from ``peer`` on a fake transport."""

    def __init__(self, peer: IAddress, timeout: float = 5.0) -> None:
        self.clock = Clock()
        self.recorder = Recorder()
        trusted = TrustedNetworks.parse(["127.0.0.0/8", "::1/128", "10.1.0.0/16"])
        factory = TrustedProxyFactory(
            Factory.forProtocol(lambda: self.recorder), trusted, timeout, self.clock
        )
        self.protocol = factory.buildProtocol(peer)
        assert isinstance(self.protocol, TrustedProxyProtocol)
        self.transport = StringTransport(peerAddress=peer)
        self.protocol.makeConnection(self.transport)

    @property
    def dropped(self) -> bool:
        """Whether the PROXY layer aborted the connection."""
        return bool(self.transport.disconnecting)


_BALANCER = IPv4Address("TCP", "127.0.0.1", 40000)


class TrustTests(SynchronousTestCase):
    """ATK-19: only trusted sources may send a PROXY header."""

    def test_untrusted_source_is_dropped_at_once(self) -> None:
        """A connection from outside the trusted networks is aborted before any byte is read."""
        connection = Connection(IPv4Address("TCP", "192.0.2.9", 1234))
        self.assertTrue(connection.dropped)
        connection.protocol.dataReceived(b"PROXY TCP4 1.2.3.4 127.0.0.1 5 80\r\nGET / HTTP/1.1\r\n")
        self.assertFalse(connection.recorder.made)
        self.assertEqual(connection.recorder.received, b"")

    def test_trusted_source_is_kept(self) -> None:
        """A connection from a trusted network waits for its header."""
        connection = Connection(IPv4Address("TCP", "10.1.2.3", 1234))
        self.assertFalse(connection.dropped)

    def test_ipv4_mapped_ipv6_peer_is_matched_as_ipv4(self) -> None:
        """``::ffff:127.0.0.1`` (dual-stack sockets) is trusted by ``127.0.0.0/8``."""
        connection = Connection(IPv6Address("TCP", "::ffff:127.0.0.1", 1234))
        self.assertFalse(connection.dropped)

    def test_unix_socket_peer_is_trusted(self) -> None:
        """A UNIX-socket peer has no IP; file permissions guard it, so it is trusted."""
        self.assertTrue(TrustedNetworks.parse([]).trusts(UNIXAddress(b"/run/lb.sock")))

    def test_bad_network_names_the_setting(self) -> None:
        """An invalid CIDR is a ConfigError on ``proxy_trusted_networks``."""
        error = self.assertRaises(ConfigError, TrustedNetworks.parse, ["10.0.0.0/33"])
        self.assertEqual(error.field, "proxy_trusted_networks")


class HeaderTests(SynchronousTestCase):
    """The header is read completely, then the wrapped protocol takes over."""

    def test_v1_header_sets_the_peer(self) -> None:
        """After a v1 header the wrapped protocol sees the client named in it."""
        connection = Connection(_BALANCER)
        connection.protocol.dataReceived(
            b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\nGET / HTTP/1.1\r\n"
        )
        self.assertEqual(connection.recorder.peer, IPv4Address("TCP", "203.0.113.7", 5555))
        self.assertEqual(connection.recorder.received, b"GET / HTTP/1.1\r\n")
        self.assertEqual(connection.protocol.getHost(), IPv4Address("TCP", "127.0.0.1", 80))

    def test_v2_header_sets_the_peer(self) -> None:
        """After a v2 header the wrapped protocol sees the client named in it."""
        connection = Connection(_BALANCER)
        connection.protocol.dataReceived(v2_header("203.0.113.8", "127.0.0.1", 6000, 443) + b"x")
        self.assertEqual(connection.recorder.peer, IPv4Address("TCP", "203.0.113.8", 6000))
        self.assertEqual(connection.recorder.received, b"x")

    def test_ipv6_source_is_normalised(self) -> None:
        """A v2 IPv6 source comes out compressed (``2001:db8::1``, not zero-padded)."""
        connection = Connection(_BALANCER)
        connection.protocol.dataReceived(v2_header("2001:db8::1", "::1", 7000, 443))
        self.assertEqual(connection.recorder.peer, IPv6Address("TCP", "2001:db8::1", 7000))

    def test_header_split_into_pieces_is_reassembled(self) -> None:
        """A header dribbled a few bytes at a time is buffered, not dropped."""
        connection = Connection(_BALANCER)
        data = v2_header("198.51.100.1", "127.0.0.1", 1, 2) + b"hello"
        for start in range(0, len(data), 3):
            connection.protocol.dataReceived(data[start : start + 3])
        self.assertFalse(connection.dropped)
        self.assertEqual(connection.recorder.peer, IPv4Address("TCP", "198.51.100.1", 1))
        self.assertEqual(connection.recorder.received, b"hello")

    def test_wrapped_protocol_connects_only_after_the_header(self) -> None:
        """Until the header is complete the HTTP layer has no connection at all."""
        connection = Connection(_BALANCER)
        connection.protocol.dataReceived(b"PROXY TCP4 203.0.113.7")
        self.assertFalse(connection.recorder.made)

    def test_local_header_keeps_the_balancer_address(self) -> None:
        """A v2 LOCAL header (health check) leaves the socket's peer in place."""
        connection = Connection(_BALANCER)
        connection.protocol.dataReceived(V2_LOCAL)
        self.assertEqual(connection.recorder.peer, _BALANCER)

    def test_missing_header_is_dropped(self) -> None:
        """Plain HTTP on a PROXY listener is refused: no guessing (ATK-19)."""
        connection = Connection(_BALANCER)
        connection.protocol.dataReceived(b"GET / HTTP/1.1\r\n")
        self.assertTrue(connection.dropped)
        self.assertFalse(connection.recorder.made)

    def test_overlong_v1_line_is_dropped(self) -> None:
        """A v1 line longer than 107 bytes is refused (ATK-19)."""
        connection = Connection(_BALANCER)
        connection.protocol.dataReceived(b"PROXY TCP4 " + b"1" * V1_MAX_LENGTH)
        self.assertTrue(connection.dropped)

    def test_oversized_v2_header_is_dropped_without_waiting_for_it(self) -> None:
        """A v2 header announcing more than 4 KiB is refused at once, not buffered (ATK-18)."""
        connection = Connection(_BALANCER)
        connection.protocol.dataReceived(_V2_SIGNATURE + bytes([0x21, 0x11]) + b"\xff\xff")
        self.assertTrue(connection.dropped)

    def test_bad_v2_version_is_dropped(self) -> None:
        """A v2 signature with a version other than 2 is refused."""
        connection = Connection(_BALANCER)
        connection.protocol.dataReceived(_V2_SIGNATURE + bytes([0x31, 0x11, 0, 12]) + b"\0" * 12)
        self.assertTrue(connection.dropped)

    def test_v1_address_that_is_not_an_ip_is_dropped(self) -> None:
        """Twisted's v1 parser keeps any text as an address: we refuse non-IPs."""
        connection = Connection(_BALANCER)
        connection.protocol.dataReceived(b"PROXY TCP4 evil.example 127.0.0.1 1 2\r\n")
        self.assertTrue(connection.dropped)

    def test_v1_family_mismatch_is_dropped(self) -> None:
        """A TCP4 line carrying IPv6 addresses is refused."""
        connection = Connection(_BALANCER)
        connection.protocol.dataReceived(b"PROXY TCP4 ::1 ::1 1 2\r\n")
        self.assertTrue(connection.dropped)

    def test_truncated_v2_address_block_is_dropped(self) -> None:
        """A v2 header whose length is too short for its addresses is refused."""
        connection = Connection(_BALANCER)
        connection.protocol.dataReceived(_V2_SIGNATURE + bytes([0x21, 0x11, 0, 4]) + b"\0" * 4)
        self.assertTrue(connection.dropped)


class DeadlineTests(SynchronousTestCase):
    """ATK-18: the header must arrive before the deadline."""

    def test_silent_connection_is_dropped_at_the_deadline(self) -> None:
        """No header within ``header_timeout`` seconds: the connection is aborted."""
        connection = Connection(_BALANCER, timeout=5.0)
        connection.clock.advance(4.9)
        self.assertFalse(connection.dropped)
        connection.clock.advance(0.2)
        self.assertTrue(connection.dropped)

    def test_partial_header_is_dropped_at_the_deadline(self) -> None:
        """A header that never completes is dropped when the deadline passes."""
        connection = Connection(_BALANCER, timeout=5.0)
        connection.protocol.dataReceived(b"PROXY TCP4 1.2.3.4")
        connection.clock.advance(5.1)
        self.assertTrue(connection.dropped)
        self.assertFalse(connection.recorder.made)

    def test_complete_header_cancels_the_deadline(self) -> None:
        """Once the header is read the deadline no longer applies."""
        connection = Connection(_BALANCER, timeout=5.0)
        connection.protocol.dataReceived(b"PROXY TCP4 1.2.3.4 127.0.0.1 1 2\r\n")
        connection.clock.advance(60)
        self.assertFalse(connection.dropped)
        self.assertEqual(connection.clock.getDelayedCalls(), [])

    def test_lost_connection_cancels_the_deadline(self) -> None:
        """A connection that goes away leaves no pending call, and no wrapped protocol is told."""
        connection = Connection(_BALANCER)
        connection.protocol.connectionLost(None)  # type: ignore[arg-type]
        self.assertEqual(connection.clock.getDelayedCalls(), [])
        self.assertFalse(connection.recorder.lost)


class ParserPropertyTests(SynchronousTestCase):
    """Properties of :func:`parse_header` (hypothesis)."""

    @given(st.binary(max_size=300))
    def test_arbitrary_bytes_never_crash_the_parser(self, data: bytes) -> None:
        """Any input is a header, incomplete, or invalid: never another exception."""
        with contextlib.suppress(_Incomplete, InvalidProxyHeader, ValueError):
            parse_header(data)

    @given(
        st.ip_addresses(v=4).map(str),
        st.integers(0, 65535),
        st.binary(max_size=50),
        st.integers(1, 40),
    )
    def test_v1_header_in_any_split_yields_the_same_source(
        self, source: str, port: int, rest: bytes, cut: int
    ) -> None:
        """However the header is cut, the parse after the last piece is the same."""
        header = f"PROXY TCP4 {source} 127.0.0.1 {port} 80\r\n".encode()
        data = header + rest
        cut = min(cut, len(header) - 1)
        self.assertRaises(_Incomplete, parse_header, data[:cut])
        info, remaining = parse_header(data)
        assert info.source is not None
        self.assertEqual(normalise_address(info.source), IPv4Address("TCP", source, port))
        self.assertEqual(remaining, rest)

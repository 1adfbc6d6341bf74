"""Tests for :mod:`oauthproxy.gateway.tunnel`: tunnel only after 101 (ATK-16).

No sockets: the client side is a real ``HTTPChannel`` from a ``Site`` on a
``StringTransport``; the upstream connection is taken from a
``MemoryReactorClock`` and given a ``StringTransport`` of its own.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web import http
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from twisted.web.test.requesthelper import DummyRequest

from oauthproxy.gateway.tunnel import Tunnel, open_tunnel
from oauthproxy.gateway.upgrade import (
    BadUpstreamResponse,
    body_framing,
    parse_response_head,
    request_head,
)

UPGRADE = (
    b"GET /chat?room=1 HTTP/1.1\r\nHost: app.example.test\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)
SWITCHING = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
)


class TunnelResource(Resource):
    """Opens a tunnel for every request, like the gateway's forwarder does."""

    isLeaf = True

    def __init__(self, reactor: MemoryReactorClock, url: str = "http://127.0.0.1:9000") -> None:
        super().__init__()
        self.reactor = reactor
        self.url = url
        self.tunnels: list[Tunnel] = []
        self.plain: list[bytes] = []

    def render_GET(self, request: Request) -> Any:
        """Tunnel upgrade requests; answer others plainly (the next request on the channel)."""
        if not request.requestHeaders.hasHeader(b"upgrade"):
            self.plain.append(request.uri)
            return b"plain"
        headers = Headers()
        for name, values in request.requestHeaders.getAllRawHeaders():
            headers.setRawHeaders(name, values)
        headers.addRawHeader(b"X-Forwarded-For", b"192.0.2.1")
        self.tunnels.append(
            open_tunnel(
                request, self.url + "/chat?room=1", headers, 5.0, self.reactor, idle_timeout=60
            )
        )
        return NOT_DONE_YET


class Harness:
    """A client connection through a Site to the tunnel, and the upstream it dials."""

    def __init__(self) -> None:
        self.reactor = MemoryReactorClock()
        self.resource = TunnelResource(self.reactor)
        site = Site(self.resource, timeout=None)
        self.channel = site.buildProtocol(IPv4Address("TCP", "192.0.2.1", 5000))
        self.client = StringTransport()
        self.channel.makeConnection(self.client)
        self.upstream = StringTransport()
        self.upstream_protocol: Any = None

    def send(self, data: bytes) -> None:
        """Bytes from the client."""
        self.channel.dataReceived(data)

    def connect_upstream(self) -> None:
        """Complete the pending upstream connection."""
        host, port, factory, _, _ = self.reactor.tcpClients[-1]
        self.upstream_protocol = factory.buildProtocol(IPv4Address("TCP", host, port))
        self.upstream_protocol.makeConnection(self.upstream)

    def answer(self, data: bytes) -> None:
        """Bytes from the upstream."""
        self.upstream_protocol.dataReceived(data)

    @property
    def tunnel(self) -> Tunnel:
        """The tunnel the request opened."""
        return self.resource.tunnels[-1]


class SwitchTests(SynchronousTestCase):
    """A 101 answer turns the connection into a byte tunnel."""

    def setUp(self) -> None:
        self.h = Harness()
        self.h.send(UPGRADE)
        self.h.connect_upstream()

    def test_request_head_is_replayed_upstream(self) -> None:
        """The upstream gets the GET with the caller's headers and the upgrade request."""
        head = self.h.upstream.value()
        self.assertTrue(head.startswith(b"GET /chat?room=1 HTTP/1.1\r\n"))
        self.assertIn(b"Host: app.example.test\r\n", head)
        self.assertIn(b"X-Forwarded-For: 192.0.2.1\r\n", head)
        self.assertIn(b"Sec-Websocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", head)
        self.assertIn(b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n", head)

    def test_101_head_is_relayed_raw(self) -> None:
        """The client receives the upstream's 101 head byte for byte (no chunking)."""
        self.h.answer(SWITCHING)
        self.assertEqual(self.h.client.value(), SWITCHING)
        self.assertEqual(self.h.tunnel.state, "open")

    def test_bytes_flow_both_ways_after_101(self) -> None:
        """After the switch, client bytes reach the upstream and vice versa, unchanged."""
        self.h.answer(SWITCHING + b"\x81\x02hi")
        self.h.upstream.clear()
        self.h.send(b"\x81\x85frame")
        self.assertEqual(self.h.upstream.value(), b"\x81\x85frame")
        self.assertEqual(self.h.client.value(), SWITCHING + b"\x81\x02hi")

    def test_client_bytes_sent_early_are_forwarded_after_101(self) -> None:
        """Bytes the client pipelined behind its request reach the upstream after the switch."""
        self.h.send(b"early")
        self.h.upstream.clear()
        self.h.answer(SWITCHING)
        self.assertEqual(self.h.upstream.value(), b"early")

    def test_slow_client_pauses_upstream_reads(self) -> None:
        """When the client's buffer is full, the upstream stops being read (back-pressure)."""
        self.h.answer(SWITCHING)
        self.h.client.producer.pauseProducing()  # what a transport with a full buffer does
        self.assertEqual(self.h.upstream.producerState, "paused")
        self.h.client.producer.resumeProducing()
        self.assertEqual(self.h.upstream.producerState, "producing")

    def test_slow_upstream_pauses_client_reads(self) -> None:
        """The client transport is registered as the producer feeding the upstream."""
        self.h.answer(SWITCHING)
        self.assertIs(self.h.upstream.producer, self.h.client)

    def test_idle_tunnel_is_closed(self) -> None:
        """A tunnel with no traffic for ``idle_timeout`` seconds is closed."""
        self.h.answer(SWITCHING)
        self.h.reactor.advance(59)
        self.h.send(b"x")
        self.h.reactor.advance(59)
        self.assertFalse(self.h.client.disconnecting)
        self.h.reactor.advance(2)
        self.assertTrue(self.h.client.disconnecting)
        self.assertTrue(self.h.upstream.disconnecting)

    def test_close_ends_an_open_tunnel(self) -> None:
        """``close()`` (used when a token expires) drops both sides and fires ``done``."""
        self.h.answer(SWITCHING)
        self.h.tunnel.close()
        self.assertTrue(self.h.client.disconnecting)
        self.assertTrue(self.h.upstream.disconnecting)
        self.successResultOf(self.h.tunnel.done)

    def test_upstream_hangup_closes_the_client(self) -> None:
        """When the upstream goes away the client connection is closed."""
        self.h.answer(SWITCHING)
        self.h.upstream_protocol.connectionLost(None)
        self.assertTrue(self.h.client.disconnecting)
        self.successResultOf(self.h.tunnel.done)

    def test_private_upgrade_hook_exists(self) -> None:
        """Regression guard: the private Twisted hook and buffer the tunnel relies on."""
        self.assertTrue(callable(getattr(http.HTTPChannel, "_protocolUpgradeForWebsockets", None)))
        self.assertIsInstance(http.HTTPChannel()._dataBuffer, list)


class NoSwitchTests(SynchronousTestCase):
    """ATK-16: any answer but 101 is an ordinary response; the connection stays HTTP."""

    def setUp(self) -> None:
        self.h = Harness()
        self.h.send(UPGRADE)
        self.h.connect_upstream()

    def test_200_is_relayed_as_a_response(self) -> None:
        """A 200 answer reaches the client as a normal response with its body."""
        self.h.answer(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Up: 1\r\n\r\nhello")
        response = self.h.client.value()
        self.assertTrue(response.startswith(b"HTTP/1.1 200 OK\r\n"))
        self.assertIn(b"X-Up: 1\r\n", response)
        self.assertTrue(response.endswith(b"hello"))
        self.assertEqual(self.h.tunnel.status_code, 200)

    def test_bytes_after_a_refused_upgrade_are_parsed_as_http(self) -> None:
        """What the client sends next is the next HTTP request, not tunnelled data."""
        self.h.send(b"GET /smuggled HTTP/1.1\r\nHost: app.example.test\r\n\r\n")
        self.h.answer(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        self.assertEqual(self.h.resource.plain, [b"/smuggled"])
        self.assertNotIn(b"smuggled", self.h.upstream.value())

    def test_chunked_answer_is_decoded_and_relayed(self) -> None:
        """A chunked upstream body is relayed with the client's own framing."""
        self.h.answer(b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nno!\r\n")
        self.h.answer(b"0\r\n\r\n")
        response = self.h.client.value()
        self.assertTrue(response.startswith(b"HTTP/1.1 403 Forbidden\r\n"))
        self.assertIn(b"no!", response)
        self.assertTrue(response.endswith(b"0\r\n\r\n"))

    def test_body_until_close_is_relayed(self) -> None:
        """An answer without length ends when the upstream closes."""
        self.h.answer(b"HTTP/1.1 200 OK\r\n\r\nall of it")
        self.h.upstream_protocol.connectionLost(None)
        self.assertIn(b"all of it", self.h.client.value())
        self.successResultOf(self.h.tunnel.done)

    def test_interim_answer_is_skipped(self) -> None:
        """A 100 Continue before the real answer does not count as the answer."""
        self.h.answer(b"HTTP/1.1 100 Continue\r\n\r\n" + SWITCHING)
        self.assertEqual(self.h.client.value(), SWITCHING)

    def test_upstream_hangup_before_answering_is_502(self) -> None:
        """An upstream that closes without a status line gives 502."""
        self.h.upstream_protocol.connectionLost(None)
        self.assertTrue(self.h.client.value().startswith(b"HTTP/1.1 502 "))

    def test_garbage_answer_is_502(self) -> None:
        """An upstream that does not speak HTTP gives 502."""
        self.h.answer(b"SSH-2.0-OpenSSH\r\n\r\n")
        self.assertTrue(self.h.client.value().startswith(b"HTTP/1.1 502 "))

    def test_no_answer_in_time_is_504(self) -> None:
        """No status line within the response timeout gives 504."""
        self.h.reactor.advance(31)
        self.assertTrue(self.h.client.value().startswith(b"HTTP/1.1 504 "))


class SetupTests(SynchronousTestCase):
    """Failures before the upstream answers."""

    def test_connect_failure_is_502(self) -> None:
        """An unreachable upstream gives 502."""
        h = Harness()
        h.send(UPGRADE)
        _, _, factory, _, _ = h.reactor.tcpClients[-1]
        factory.clientConnectionFailed(None, _refused())
        h.reactor.advance(1)
        self.assertTrue(h.client.value().startswith(b"HTTP/1.1 502 "))
        self.successResultOf(h.tunnel.done)

    def test_client_gone_while_connecting_cancels(self) -> None:
        """A client that hangs up before the upstream connects ends the attempt."""
        h = Harness()
        h.send(UPGRADE)
        h.channel.connectionLost(_refused())
        self.successResultOf(h.tunnel.done)

    def test_http2_stream_gets_400(self) -> None:
        """A request on a channel without the HTTP/1.1 upgrade hook (h2) is refused with 400."""
        request: Any = DummyRequest([b"chat"])
        request.channel = object()
        request.startedWriting = False
        request.clientproto = b"HTTP/1.1"
        request.requestHeaders.setRawHeaders(b"upgrade", [b"websocket"])
        tunnel = open_tunnel(request, "http://127.0.0.1:1/", Headers(), 1.0, MemoryReactorClock())
        self.assertEqual(request.responseCode, 400)
        self.assertIn(b"HTTP/2", b"".join(request.written))
        self.successResultOf(tunnel.done)


class UpgradeHeadTests(SynchronousTestCase):
    """The pure head handling in :mod:`oauthproxy.gateway.upgrade`."""

    def test_only_websocket_is_requested_upstream(self) -> None:
        """A client asking for ``websocket, h2c`` does not get h2c requested upstream (ATK-16)."""
        headers = Headers(
            {b"Upgrade": [b"websocket, h2c"], b"Connection": [b"Upgrade, HTTP2-Settings"]}
        )
        head = request_head(b"GET", b"/", b"up:80", headers)
        self.assertNotIn(b"h2c", head)
        self.assertNotIn(b"HTTP2-Settings", head)
        self.assertTrue(head.endswith(b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"))

    def test_host_falls_back_to_the_upstream_authority(self) -> None:
        """Without a Host header in the given headers the upstream's authority is sent."""
        self.assertIn(b"Host: up:80\r\n", request_head(b"GET", b"/", b"up:80", Headers()))

    def test_conflicting_lengths_are_refused(self) -> None:
        """Two different Content-Length values make the answer unusable (502)."""
        head = parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2")
        self.assertRaises(BadUpstreamResponse, body_framing, head, b"GET")

    def test_transfer_encoding_wins_over_content_length(self) -> None:
        """With both, the body is framed by Transfer-Encoding (RFC 9112 6.3)."""
        head = parse_response_head(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked"
        )
        self.assertEqual(body_framing(head, b"GET"), ("chunked", None))

    def test_parses_status_and_headers(self) -> None:
        """Status code, reason and repeated headers are kept in order."""
        head = parse_response_head(b"HTTP/1.1 101 Switching\r\nA: 1\r\nA: 2")
        self.assertEqual(
            (head.code, head.reason, head.values(b"a")), (101, b"Switching", [b"1", b"2"])
        )

    def test_rejects_bad_status_line(self) -> None:
        """A status line that is not HTTP/1.x is rejected."""
        self.assertRaises(BadUpstreamResponse, parse_response_head, b"HTTP/2 101 x")

    def test_rejects_whitespace_before_colon(self) -> None:
        """``Name : value`` is refused (a classic smuggling vector)."""
        self.assertRaises(BadUpstreamResponse, parse_response_head, b"HTTP/1.1 200 OK\r\nA : 1")


def _refused() -> Any:
    from twisted.internet.error import ConnectionRefusedError
    from twisted.python.failure import Failure

    return Failure(ConnectionRefusedError())

"""The daemon's drain over real twisted.web channels (no sockets).

These tests go through the same layers as a listener: the daemon's
:class:`~oauthproxy.daemon.TrackingFactory`, twisted.web's generic wrapper, the
:class:`~oauthproxy.serving.channel.StrictChannel` and a real ``Request``, on a
``StringTransport`` and a ``MemoryReactorClock``.  (The first drain was tested with
fake channels and passed while the real daemon drained nothing.)
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from oauthproxy.config import Config
from oauthproxy.daemon import Daemon, Listener, TrackingFactory
from oauthproxy.serving.channel import FIRST_REQUEST_GRACE
from oauthproxy.serving.drain import channel_of, drain
from oauthproxy.serving.site import StrictSite

API = "tcp:0:interface=127.0.0.1"


class Holding(Resource):
    """Answers ``/now`` at once; holds every other request until the test finishes it."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.held: list[Request] = []

    def render(self, request: Request) -> Any:
        """Answer or hold."""
        if request.path == b"/now":
            return b"done"
        self.held.append(request)
        return NOT_DONE_YET


class DrainTests(SynchronousTestCase):
    """SIGTERM's drain: idle connections close, busy ones finish first, then everything."""

    def setUp(self) -> None:
        """A daemon with one (already closed) listener serving a StrictSite."""
        self.reactor = MemoryReactorClock()
        config = Config(api_endpoint=API, drain_timeout=5.0, redis_url="redis://127.0.0.1")
        self.daemon = Daemon(config, self.reactor)
        self.resource = Holding()
        site = StrictSite(self.resource, config, self.reactor)
        self.factory = TrackingFactory(site)
        listener = Listener("http", API, object(), self.factory)  # type: ignore[arg-type]
        self.daemon.ports.append((listener, object(), self.factory))  # type: ignore[arg-type]

    def connect(self) -> tuple[Any, StringTransport]:
        """One accepted connection: the tracked wrapper and its transport."""
        connection = self.factory.buildProtocol(None)
        transport = StringTransport()
        connection.makeConnection(transport)
        return connection, transport

    def drain(self) -> defer.Deferred[None]:
        """Start the daemon's drain."""
        return defer.Deferred.fromCoroutine(self.daemon._drain())

    def test_idle_keep_alive_connection_is_closed_at_once(self) -> None:
        """After a finished request the kept-alive connection closes as soon as drain starts."""
        connection, transport = self.connect()
        connection.dataReceived(b"GET /now HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertIn(b"done", transport.value())
        self.assertFalse(transport.disconnecting)
        d = self.drain()
        self.assertTrue(transport.disconnecting)
        connection.connectionLost(Failure(ConnectionDone()))
        self.reactor.advance(0.1)
        self.successResultOf(d)

    def test_request_in_flight_finishes_and_says_connection_close(self) -> None:
        """A held request is left alone; its answer says ``Connection: close``, then it closes."""
        connection, transport = self.connect()
        connection.dataReceived(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
        [request] = self.resource.held
        d = self.drain()
        self.reactor.advance(1)
        self.assertFalse(transport.disconnecting)
        request.write(b"late")
        request.finish()
        self.assertIn(b"Connection: close", transport.value())
        self.assertIn(b"late", transport.value())
        self.assertTrue(transport.disconnecting)
        connection.connectionLost(Failure(ConnectionDone()))
        self.reactor.advance(0.1)
        self.successResultOf(d)

    def test_stream_in_flight_keeps_flowing(self) -> None:
        """A response already streaming keeps flowing while draining, and closes at its end."""
        connection, transport = self.connect()
        connection.dataReceived(b"GET /sse HTTP/1.1\r\nHost: a\r\n\r\n")
        [request] = self.resource.held
        request.write(b"first")
        d = self.drain()
        for _ in range(20):
            self.reactor.advance(0.1)
            request.write(b"more")
        self.assertFalse(transport.disconnecting)
        request.finish()
        self.assertTrue(transport.disconnecting)
        connection.connectionLost(Failure(ConnectionDone()))
        self.reactor.advance(0.1)
        self.successResultOf(d)

    def test_head_arriving_is_still_answered(self) -> None:
        """A request head half-received at SIGTERM is served (with ``Connection: close``)."""
        connection, transport = self.connect()
        connection.dataReceived(b"GET /now HTTP/1.1\r\nHo")
        d = self.drain()
        self.assertFalse(transport.disconnecting)
        connection.dataReceived(b"st: a\r\n\r\n")
        self.assertIn(b"done", transport.value())
        self.assertIn(b"Connection: close", transport.value())
        self.assertTrue(transport.disconnecting)
        connection.connectionLost(Failure(ConnectionDone()))
        self.reactor.advance(0.1)
        self.successResultOf(d)

    def test_new_connection_may_still_send_its_first_request(self) -> None:
        """A connection with no request yet (a balancer connects before relaying) is served."""
        connection, transport = self.connect()
        d = self.drain()
        self.reactor.advance(FIRST_REQUEST_GRACE / 2)
        self.assertFalse(transport.disconnecting)
        connection.dataReceived(b"GET /now HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertIn(b"Connection: close", transport.value())
        self.assertTrue(transport.disconnecting)
        connection.connectionLost(Failure(ConnectionDone()))
        self.reactor.advance(0.1)
        self.successResultOf(d)

    def test_new_connection_that_sends_nothing_is_closed_after_the_grace(self) -> None:
        """A silent new connection does not hold the drain up for long."""
        _, transport = self.connect()
        self.drain()
        self.reactor.advance(FIRST_REQUEST_GRACE + 0.01)
        self.assertTrue(transport.disconnecting)

    def test_connections_still_open_after_the_timeout_are_aborted(self) -> None:
        """After ``drain_timeout`` whatever is still open is aborted."""
        connection, transport = self.connect()
        connection.dataReceived(b"GET /never HTTP/1.1\r\nHost: a\r\n\r\n")
        d = self.drain()
        self.reactor.advance(4.9)
        self.assertFalse(transport.disconnecting)
        self.reactor.advance(0.2)
        self.successResultOf(d)
        self.assertTrue(transport.disconnected)

    def test_drain_looks_below_the_generic_wrapper(self) -> None:
        """The channel drained is twisted.web's inner channel, not its generic wrapper."""
        connection, _ = self.connect()
        connection.dataReceived(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
        inner = channel_of(connection.wrappedProtocol)
        self.assertEqual(len(inner.requests), 1)
        self.assertFalse(drain(connection.wrappedProtocol))

"""The gateway's TCP (serving/tcp.py) over real loopback connections."""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.task import Clock, deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from oauthproxy.serving import tcp
from oauthproxy.serving.tcp import tuned_reactor

reactor: Any = _reactor


class Collect(Protocol):
    """Keeps what arrives; ``done`` fires with it when the connection closes."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.done: Deferred[bytes] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        """Keep it."""
        self.received += data

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Hand over everything received."""
        self.done.callback(bytes(self.received))


class WriteThenClose(Protocol):
    """Writes ``chunks`` in one turn when connected, then closes."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def connectionMade(self) -> None:
        """All writes and the close in the same turn."""
        assert self.transport is not None
        for chunk in self.chunks:
            self.transport.write(chunk)
        self.transport.writeSequence([b"-", b"end"])
        self.transport.loseConnection()


class GatewayTcpTests(TestCase):
    """What a peer receives from transports with end-of-turn writes; accepting a burst."""

    async def serve(self, chunks: list[bytes]) -> bytes:
        """Listen through ``tuned_reactor(reactor)``, connect, collect until the server closes."""
        endpoint = TCP4ServerEndpoint(tuned_reactor(reactor), 0, interface="127.0.0.1")
        port = await endpoint.listen(Factory.forProtocol(lambda: WriteThenClose(chunks)))
        self.addCleanup(port.stopListening)
        self.assertIsInstance(port, tcp.Port)
        client = Collect()
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), client)
        return await client.done

    async def test_writes_of_a_turn_arrive_in_order_before_the_close(self) -> None:
        """Several writes and a close in one turn: all bytes, in order, then the close."""
        received = await self.serve([b"head", b"er|", b"body"])
        self.assertEqual(received, b"header|body-end")

    async def test_more_than_the_kernel_takes_at_once_arrives_whole(self) -> None:
        """A write bigger than the socket buffers waits for EPOLLOUT and still arrives."""
        big = bytes(range(256)) * (32 * 1024)  # 8 MiB
        received = await self.serve([big])
        self.assertEqual(received, big + b"-end")

    async def test_outgoing_connections_write_at_the_end_of_the_turn_too(self) -> None:
        """A connection made through ``tuned_reactor(reactor)`` is a tcp.Client and its
        writes arrive."""
        server = Collect()
        endpoint = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
        port = await endpoint.listen(Factory.forProtocol(lambda: server))
        self.addCleanup(port.stopListening)
        client = Protocol()
        await connectProtocol(
            TCP4ClientEndpoint(tuned_reactor(reactor), "127.0.0.1", port.getHost().port), client
        )
        assert client.transport is not None
        self.assertIsInstance(client.transport, tcp.Client)
        client.transport.write(b"hello ")
        client.transport.write(b"upstream")
        client.transport.loseConnection()
        self.assertEqual(await server.done, b"hello upstream")

    async def test_a_burst_of_connections_is_accepted_in_slices(self) -> None:
        """With 150 connections waiting, one turn accepts MAX_ACCEPTS of them (stock
        Twisted: 100, growing); the rest follow in later turns."""
        accepted: list[Protocol] = []

        def build() -> Protocol:
            accepted.append(Protocol())
            return accepted[-1]

        endpoint = TCP4ServerEndpoint(tuned_reactor(reactor), 0, interface="127.0.0.1", backlog=512)
        port = await endpoint.listen(Factory.forProtocol(build))
        self.addCleanup(port.stopListening)
        waiting = []
        for _ in range(150):  # connected in the kernel's backlog, not accepted yet
            client = socket.create_connection(("127.0.0.1", port.getHost().port))
            self.addCleanup(client.close)
            waiting.append(client)
        port.doRead()
        self.assertEqual(len(accepted), tcp.MAX_ACCEPTS)
        for _ in range(100):
            if len(accepted) == 150:
                break
            await deferLater(reactor, 0.01, lambda: None)
        self.assertEqual(len(accepted), 150)
        for protocol in accepted:
            assert protocol.transport is not None
            protocol.transport.loseConnection()

    def test_a_reactor_without_epoll_writers_is_used_as_it_is(self) -> None:
        """Test reactors (Clock, MemoryReactor) pass through unchanged."""
        clock = Clock()
        self.assertIs(tuned_reactor(clock), clock)

"""End-of-turn TCP writes (serving/writes.py) over real loopback connections."""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from oauthproxy.serving import writes
from oauthproxy.serving.writes import coalescing

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


class EndOfTurnWritesTests(TestCase):
    """What a peer receives from transports with end-of-turn writes."""

    async def serve(self, chunks: list[bytes]) -> bytes:
        """Listen through ``coalescing(reactor)``, connect, collect until the server closes."""
        endpoint = TCP4ServerEndpoint(coalescing(reactor), 0, interface="127.0.0.1")
        port = await endpoint.listen(Factory.forProtocol(lambda: WriteThenClose(chunks)))
        self.addCleanup(port.stopListening)
        self.assertIsInstance(port, writes.Port)
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
        """A connection made through ``coalescing(reactor)`` is a writes.Client and its
        writes arrive."""
        server = Collect()
        endpoint = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
        port = await endpoint.listen(Factory.forProtocol(lambda: server))
        self.addCleanup(port.stopListening)
        client = Protocol()
        await connectProtocol(
            TCP4ClientEndpoint(coalescing(reactor), "127.0.0.1", port.getHost().port), client
        )
        assert client.transport is not None
        self.assertIsInstance(client.transport, writes.Client)
        client.transport.write(b"hello ")
        client.transport.write(b"upstream")
        client.transport.loseConnection()
        self.assertEqual(await server.done, b"hello upstream")

    def test_a_reactor_without_epoll_writers_is_used_as_it_is(self) -> None:
        """Test reactors (Clock, MemoryReactor) pass through unchanged."""
        clock = Clock()
        self.assertIs(coalescing(clock), clock)

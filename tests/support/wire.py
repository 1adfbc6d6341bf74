"""A raw HTTP/1.1 client for wire-level tests against a real daemon.

:class:`WireClient` holds one TCP connection and sends bytes exactly as given; it
parses answers just enough (status line, headers, ``Content-Length`` or chunked body)
to take several responses off one kept-alive connection in order, and it tells a
clean answer from a dropped connection, which a pooled HTTP client would hide by
retrying on a new connection.  :func:`exchange` sends bytes and returns everything
received until the server closes (or ``timeout``), for answers that close.
"""

from __future__ import annotations

from typing import Any

from attrs import define, field
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

reactor: Any = _reactor


@define
class Answer:
    """One parsed HTTP/1.1 response."""

    status: int
    headers: dict[bytes, list[bytes]]
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        """The first value of header ``name`` (lower case), or None."""
        values = self.headers.get(name.lower())
        return values[0] if values else None


class ConnectionDropped(Exception):
    """The server closed (or reset) the connection before a whole answer arrived."""


@define(eq=False)
class _Protocol(Protocol):
    """Buffers what arrives; wakes the reader on every chunk and on close."""

    buffer: bytearray = field(factory=bytearray)
    closed: bool = False
    reason: Failure | None = None
    waiting: Deferred[None] | None = None

    def dataReceived(self, data: bytes) -> None:
        """Keep the bytes and wake the reader."""
        self.buffer += data
        self._wake()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Note the close and wake the reader."""
        self.closed = True
        self.reason = reason
        self._wake()

    def _wake(self) -> None:
        waiting, self.waiting = self.waiting, None
        if waiting is not None:
            waiting.callback(None)


@define(eq=False)
class WireClient:
    """One raw connection to ``127.0.0.1:port``; see the module docstring."""

    protocol: _Protocol
    timeout: float = 10.0

    @classmethod
    async def connect(cls, test: TestCase, port: int, timeout: float = 10.0) -> WireClient:
        """A connected client, aborted at the end of ``test`` if still open."""
        protocol = _Protocol()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5)
        await connectProtocol(endpoint, protocol)
        client = cls(protocol, timeout)
        test.addCleanup(client.abort)
        return client

    @property
    def closed(self) -> bool:
        """Whether the server closed the connection."""
        return self.protocol.closed

    def send(self, data: bytes) -> None:
        """Write ``data`` as is."""
        transport = self.protocol.transport
        assert transport is not None
        transport.write(data)

    def abort(self) -> None:
        """Drop the connection (cleanup)."""
        transport: Any = self.protocol.transport
        if transport is not None and not self.protocol.closed:
            transport.abortConnection()

    async def _more(self) -> None:
        """Wait for more bytes; ConnectionDropped if the server closed first."""
        if self.protocol.closed:
            raise ConnectionDropped(bytes(self.protocol.buffer[:200]))
        waiting: Deferred[None] = Deferred()
        self.protocol.waiting = waiting
        waiting.addTimeout(self.timeout, reactor)
        await waiting

    async def _line(self) -> bytes:
        while b"\r\n" not in self.protocol.buffer:
            await self._more()
        index = self.protocol.buffer.index(b"\r\n")
        line = bytes(self.protocol.buffer[:index])
        del self.protocol.buffer[: index + 2]
        return line

    async def _exactly(self, size: int) -> bytes:
        while len(self.protocol.buffer) < size:
            await self._more()
        data = bytes(self.protocol.buffer[:size])
        del self.protocol.buffer[:size]
        return data

    async def read_answer(self, head_only: bool = False) -> Answer:
        """The next response on the connection (skipping ``1xx`` interim answers).

        ``head_only``: stop after the head (read the body later with :meth:`read_body`).
        """
        while True:
            status_line = await self._line()
            parts = status_line.split(b" ", 2)
            status = int(parts[1])
            headers: dict[bytes, list[bytes]] = {}
            while line := await self._line():
                name, _, value = line.partition(b":")
                headers.setdefault(name.strip().lower(), []).append(value.strip())
            if status >= 200:
                break
        answer = Answer(status, headers, b"")
        if not head_only and status not in (204, 304):
            answer.body = await self.read_body(answer)
        return answer

    async def read_body(self, head: Answer) -> bytes:
        """The body of the response whose head is ``head``."""
        if b"chunked" in b",".join(head.headers.get(b"transfer-encoding", [])).lower():
            body = bytearray()
            while size := int((await self._line()).split(b";")[0], 16):
                body += await self._exactly(size)
                await self._line()
            while await self._line():
                pass  # trailers
            return bytes(body)
        if b"content-length" in head.headers:
            return await self._exactly(int(head.headers[b"content-length"][0]))
        return await self.until_closed()  # delimited by close

    async def _more_or_close(self) -> None:
        if self.protocol.closed:
            return
        waiting: Deferred[None] = Deferred()
        self.protocol.waiting = waiting
        waiting.addTimeout(self.timeout, reactor)
        await waiting

    async def request(self, data: bytes) -> Answer:
        """Send one request and read its answer."""
        self.send(data)
        return await self.read_answer()

    async def until_closed(self) -> bytes:
        """Everything still to come until the server closes (bounded by ``timeout``)."""
        while not self.protocol.closed:
            await self._more_or_close()
        data = bytes(self.protocol.buffer)
        self.protocol.buffer.clear()
        return data


def get(host: str, path: str = "/", headers: dict[str, str] | None = None) -> bytes:
    """A ``GET`` request's bytes (keep-alive)."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def exchange(test: TestCase, port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send ``data``; every byte received until the server closes (TimeoutError after)."""
    client = await WireClient.connect(test, port, timeout)
    client.send(data)
    return await client.until_closed()

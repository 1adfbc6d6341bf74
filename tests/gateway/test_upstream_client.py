"""The upstream HTTP/1.1 client against real loopback servers, well-behaved and odd."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.task import Clock, deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH

from oauthproxy.gateway.exchange import upstream_error
from oauthproxy.gateway.upstream_client import (
    MAX_HEAD_BYTES,
    UpstreamConnection,
    UpstreamProtocolError,
)
from oauthproxy.gateway.upstream_pool import UpstreamPool

KEY = ("http", "127.0.0.1", 0, True, None)


class _Server(Protocol):
    """Records what arrives; ``script`` answers each complete request head."""

    def __init__(self, owner: _Upstream) -> None:
        self.owner = owner
        self.buffer = b""

    def connectionMade(self) -> None:
        """Count the connection."""
        self.owner.connections.append(self)

    def dataReceived(self, data: bytes) -> None:
        """Keep everything; answer once a head is complete (bodies are not parsed)."""
        self.owner.received += data
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            self.owner.script(self, head)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Count the loss."""
        self.owner.lost += 1


class _Upstream(Factory):
    """A loopback server whose answers a test scripts."""

    noisy = False

    def __init__(self, script: Callable[[_Server, bytes], None]) -> None:
        self.script = script
        self.received = b""
        self.connections: list[_Server] = []
        self.lost = 0
        self.port: Any = None

    def buildProtocol(self, addr: Any) -> _Server:  # type: ignore[override]
        """A server connection."""
        return _Server(self)


def answer(data: bytes, close: bool = False) -> Callable[[_Server, bytes], None]:
    """A script that writes ``data`` to every request (and closes if asked)."""

    def script(server: _Server, _head: bytes) -> None:
        assert server.transport is not None
        server.transport.write(data)
        if close:
            server.transport.loseConnection()

    return script


class _Handler:
    """Records what the connection reports; ``ended`` fires at the end or failure."""

    def __init__(self) -> None:
        self.head: tuple[int, bytes, list[tuple[bytes, bytes]], int | None] | None = None
        self.body = b""
        self.end: Failure | str | None = "pending"
        self.failure: Failure | None = None
        self.retryable: bool | None = None
        self.ended: Deferred[None] = Deferred()

    def response_head(
        self,
        connection: UpstreamConnection,
        code: int,
        phrase: bytes,
        headers: list[tuple[bytes, bytes]],
        length: int | None,
    ) -> None:
        """Keep the head."""
        self.head = (code, phrase, headers, length)

    def response_body(self, data: bytes) -> None:
        """Keep the body."""
        self.body += data

    def response_end(self, failure: Failure | None) -> None:
        """The end."""
        self.end = failure
        self.ended.callback(None)

    def response_failed(self, connection: UpstreamConnection, failure: Failure) -> None:
        """No head."""
        self.failure = failure
        self.retryable = connection.retryable
        self.ended.callback(None)


class _Body:
    """A request body producer the test feeds by hand (never finishes unless told)."""

    def __init__(self, length: int | object = UNKNOWN_LENGTH) -> None:
        self.length = length
        self.consumer: Any = None
        self.done: Deferred[None] = Deferred()
        self.stopped = False

    def startProducing(self, consumer: Any) -> Deferred[None]:
        """Keep the consumer."""
        self.consumer = consumer
        return self.done

    def pauseProducing(self) -> None:
        """Nothing to pause."""

    def resumeProducing(self) -> None:
        """Nothing to resume."""

    def stopProducing(self) -> None:
        """Note the stop."""
        self.stopped = True


def headers(host: bytes = b"up.test") -> Headers:
    """Request headers with a Host."""
    h = Headers()
    h.setRawHeaders(b"host", [host])
    return h


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello"


class UpstreamClientTests(TestCase):
    """Requests and responses over real loopback connections."""

    async def start(self, script: Callable[[_Server, bytes], None]) -> tuple[_Upstream, Any]:
        """A scripted upstream and a pool (both closed in cleanup); returns (upstream, pool)."""
        upstream = _Upstream(script)
        endpoint = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
        upstream.port = await endpoint.listen(upstream)
        self.addCleanup(upstream.port.stopListening)
        pool = UpstreamPool(reactor, max_idle_per_upstream=4, idle_timeout=60)
        self.addCleanup(pool.close)
        self.pool, self.upstream = pool, upstream
        return upstream, pool

    async def connect(self) -> UpstreamConnection:
        """A new connection to the upstream."""
        port = self.upstream.port.getHost().port
        connection: UpstreamConnection = await self.pool.connect(
            KEY, TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        )
        self.addCleanup(connection.abort)
        return connection

    async def exchange(
        self,
        connection: UpstreamConnection,
        method: bytes = b"GET",
        body: Any = None,
        target: bytes = b"/x",
    ) -> _Handler:
        """Send one request and wait for its end (bounded)."""
        handler = _Handler()
        connection.send(method, target, headers(), body, handler)
        await handler.ended.addTimeout(5, reactor)
        return handler

    async def settle(self) -> None:
        """Let the reactor turn a few times (closes and releases happen)."""
        for _ in range(5):
            await deferLater(reactor, 0.01, lambda: None)

    async def test_length_delimited_answer_and_reuse(self) -> None:
        """Head, body and the end arrive; the connection goes back to the pool and works again."""
        upstream, pool = await self.start(answer(OK))
        connection = await self.connect()
        first = await self.exchange(connection)
        self.assertEqual(first.head, (200, b"OK", [(b"Content-Length", b"5"), (b"X-A", b"1")], 5))
        self.assertEqual((first.body, first.end), (b"hello", None))
        self.assertIs(pool.take(KEY), connection)
        second = await self.exchange(connection)
        self.assertEqual(second.body, b"hello")
        self.assertEqual(len(upstream.connections), 1)

    async def test_request_head_is_laid_out_as_twisted_does(self) -> None:
        """Request line, the length line, then the headers in order; a bodiless POST says 0."""
        upstream, _ = await self.start(answer(OK))
        connection = await self.connect()
        h = Headers()
        h.setRawHeaders(b"host", [b"up.test"])
        h.setRawHeaders(b"x-b", [b"1", b"2"])
        handler = _Handler()
        connection.send(b"POST", b"/p?q=1", h, None, handler)
        await handler.ended
        self.assertEqual(
            upstream.received,
            b"POST /p?q=1 HTTP/1.1\r\nContent-Length: 0\r\n"
            b"Host: up.test\r\nX-B: 1\r\nX-B: 2\r\n\r\n",
        )

    async def test_chunked_request_body_is_framed(self) -> None:
        """A body of unknown length goes out chunked and ends with the last chunk."""
        upstream, pool = await self.start(lambda s, h: None)
        connection = await self.connect()
        body = _Body()
        handler = _Handler()
        connection.send(b"PUT", b"/u", headers(), body, handler)
        body.consumer.write(b"abc")
        body.consumer.write(b"")
        body.done.callback(None)
        await self.settle()
        self.assertTrue(
            upstream.received.endswith(b"\r\n\r\n3\r\nabc\r\n0\r\n\r\n"), upstream.received
        )
        assert upstream.connections[0].transport is not None
        upstream.connections[0].transport.write(OK)
        await handler.ended
        self.assertIs(pool.take(KEY), connection)

    async def test_body_longer_than_its_length_fails_the_request(self) -> None:
        """A producer writing past its Content-Length gives the connection up."""
        await self.start(lambda s, h: None)
        connection = await self.connect()
        body = _Body(length=2)
        handler = _Handler()
        connection.send(b"PUT", b"/u", headers(), body, handler)
        body.consumer.write(b"abc")
        await handler.ended.addTimeout(5, reactor)
        assert handler.failure is not None
        self.assertTrue(handler.failure.check(UpstreamProtocolError))

    async def test_chunked_answer_is_decoded(self) -> None:
        """Chunks arrive decoded; there is no length; the connection is reused."""
        _, pool = await self.start(
            answer(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
            )
        )
        connection = await self.connect()
        got = await self.exchange(connection)
        assert got.head is not None
        self.assertIsNone(got.head[3])
        self.assertEqual((got.body, got.end), (b"abcde", None))
        self.assertIs(pool.take(KEY), connection)

    async def test_a_bare_lf_head_is_read(self) -> None:
        """A head ending its lines in a bare LF, as CGI scripts write it, is read like a
        CRLF one (RFC 9112 section 2.2; twisted.web's client did too)."""
        _, pool = await self.start(answer(b"HTTP/1.1 200 OK\nX-A: 1\nContent-Length: 5\n\nhello"))
        connection = await self.connect()
        got = await self.exchange(connection)
        self.assertEqual(got.head, (200, b"OK", [(b"X-A", b"1"), (b"Content-Length", b"5")], 5))
        self.assertEqual((got.body, got.end), (b"hello", None))
        self.assertIs(pool.take(KEY), connection)

    async def test_a_bare_cr_in_a_head_is_still_refused(self) -> None:
        """Only a missing CR is forgiven: a CR not followed by LF is a protocol error."""
        await self.start(answer(b"HTTP/1.1 200 OK\r\nX-A: 1\rX-B: 2\r\nContent-Length: 0\r\n\r\n"))
        connection = await self.connect()
        got = await self.exchange(connection)
        assert got.failure is not None
        self.assertTrue(got.failure.check(UpstreamProtocolError))

    async def test_chunk_size_lines_still_need_crlf(self) -> None:
        """The body's framing stays strict (as twisted.web's was): a chunk size line
        ending in a bare LF cuts the answer short."""
        await self.start(
            answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n")
        )
        connection = await self.connect()
        got = await self.exchange(connection)
        assert isinstance(got.end, Failure)
        self.assertTrue(got.end.check(UpstreamProtocolError))

    async def test_close_delimited_answer_ends_cleanly_and_is_not_reused(self) -> None:
        """No length, no chunks: the body runs to the close, which is its end."""
        _, pool = await self.start(
            answer(b"HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\nall of it", close=True)
        )
        connection = await self.connect()
        got = await self.exchange(connection)
        self.assertEqual((got.body, got.end), (b"all of it", None))
        await self.settle()
        self.assertIsNone(pool.take(KEY))

    async def test_bad_chunked_framing_cuts_the_answer_short(self) -> None:
        """A chunk size that is not hex ends the response with a protocol error."""
        await self.start(
            answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n")
        )
        connection = await self.connect()
        got = await self.exchange(connection)
        self.assertEqual(got.body, b"abc")
        assert isinstance(got.end, Failure)
        self.assertTrue(got.end.check(UpstreamProtocolError))
        self.assertTrue(upstream_error(got.end).startswith("upstream broke HTTP"))

    async def test_upstream_dying_mid_body_cuts_the_answer_short(self) -> None:
        """Fewer bytes than Content-Length, then the close: the end carries the loss."""
        await self.start(answer(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", close=True))
        connection = await self.connect()
        got = await self.exchange(connection)
        self.assertEqual(got.body, b"short")
        assert isinstance(got.end, Failure)
        self.assertEqual(upstream_error(got.end), "upstream reset the connection")

    async def test_slow_upstream_head_in_single_bytes(self) -> None:
        """A head and body dribbled a byte at a time parse the same."""

        def script(server: _Server, _head: bytes) -> None:
            for i in range(len(OK)):
                reactor.callLater(0.001 * i, server.transport.write, OK[i : i + 1])  # type: ignore[union-attr]

        _, pool = await self.start(script)
        connection = await self.connect()
        got = await self.exchange(connection)
        self.assertEqual((got.head and got.head[0], got.body, got.end), (200, b"hello", None))
        self.assertIs(pool.take(KEY), connection)

    async def test_early_answer_stops_the_body_and_drops_the_connection(self) -> None:
        """An answer before the body is sent is delivered; the body stops; no reuse."""
        upstream, pool = await self.start(
            answer(b"HTTP/1.1 413 Too Big\r\nContent-Length: 0\r\n\r\n")
        )
        connection = await self.connect()
        body = _Body(length=1000)
        got = await self.exchange(connection, b"POST", body)
        self.assertEqual((got.head and got.head[0], got.end), (413, None))
        self.assertTrue(body.stopped)
        await self.settle()
        self.assertIsNone(pool.take(KEY))
        self.assertEqual(upstream.lost, 1)

    async def test_interim_answers_are_skipped(self) -> None:
        """100 and 103 heads are not reported; the final answer is."""
        _, pool = await self.start(
            answer(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n" + OK)
        )
        connection = await self.connect()
        got = await self.exchange(connection)
        assert got.head is not None
        self.assertEqual((got.head[0], got.head[2][-1], got.body), (200, (b"X-A", b"1"), b"hello"))
        self.assertIs(pool.take(KEY), connection)

    async def test_switching_protocols_is_a_protocol_error(self) -> None:
        """A 101 outside the WebSocket tunnel fails the request."""
        await self.start(answer(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n"))
        connection = await self.connect()
        got = await self.exchange(connection)
        assert got.failure is not None
        self.assertTrue(got.failure.check(UpstreamProtocolError))

    async def test_head_and_not_modified_answers_have_no_body(self) -> None:
        """HEAD's Content-Length describes a body that is not sent; 304 has none either."""
        _, pool = await self.start(answer(b"HTTP/1.1 200 OK\r\nContent-Length: 12345\r\n\r\n"))
        connection = await self.connect()
        got = await self.exchange(connection, b"HEAD")
        self.assertEqual((got.head and got.head[3], got.body, got.end), (12345, b"", None))
        self.assertIs(pool.take(KEY), connection)
        self.upstream.script = answer(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n")
        got = await self.exchange(connection)
        self.assertEqual((got.head and got.head[0], got.body, got.end), (304, b"", None))
        self.assertIs(pool.take(KEY), connection)

    async def test_oversized_response_head_fails(self) -> None:
        """A head over MAX_HEAD_BYTES is refused."""
        big = b"X-Big: " + b"a" * (MAX_HEAD_BYTES // 4) + b"\r\n"
        await self.start(answer(b"HTTP/1.1 200 OK\r\n" + big * 5 + b"\r\n"))
        connection = await self.connect()
        got = await self.exchange(connection)
        assert got.failure is not None
        self.assertTrue(got.failure.check(UpstreamProtocolError))

    async def test_endless_header_line_fails_without_waiting_for_its_end(self) -> None:
        """A header value that never ends is refused once the head passes the limit."""
        await self.start(answer(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (MAX_HEAD_BYTES + 10)))
        connection = await self.connect()
        got = await self.exchange(connection)
        assert got.failure is not None
        self.assertIn("response head over", str(got.failure.value))

    async def test_extra_bytes_after_an_answer_prevent_reuse(self) -> None:
        """Bytes beyond the response's end make the connection unusable."""
        await self.start(answer(OK + b"garbage"))
        connection = await self.connect()
        got = await self.exchange(connection)
        self.assertEqual(got.body, b"hello")
        await self.settle()
        self.assertIsNone(self.pool.take(KEY))

    async def test_connection_close_answer_is_not_reused(self) -> None:
        """``Connection: close`` from the upstream: the connection is closed after the answer."""
        _, pool = await self.start(
            answer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        )
        connection = await self.connect()
        got = await self.exchange(connection)
        self.assertEqual(got.body, b"ok")
        self.assertIsNone(pool.take(KEY))

    async def test_stale_reused_connection_is_retryable_only_when_safe(self) -> None:
        """Dropped by the upstream: a reused GET may retry; a POST, a body or a first use not."""
        upstream, _ = await self.start(answer(OK))
        drop = lambda s, h: s.transport.abortConnection()  # noqa: E731
        cases = [(b"GET", None, True), (b"POST", None, False), (b"GET", _Body(length=3), False)]
        for method, body, retryable in cases:
            upstream.script = answer(OK)
            connection = await self.connect()
            await self.exchange(connection)
            upstream.script = drop
            got = await self.exchange(connection, method, body)
            self.assertEqual(got.retryable, retryable, method)
        first_use = await self.exchange(await self.connect())
        self.assertFalse(first_use.retryable)

    async def test_cancel_before_the_head_is_not_retryable(self) -> None:
        """A cancelled request (timeout, client gone) fails with CancelledError, no retry."""
        await self.start(answer(OK))
        connection = await self.connect()
        await self.exchange(connection)
        self.upstream.script = lambda s, h: None
        handler = _Handler()
        connection.send(b"GET", b"/", headers(), None, handler)
        connection.cancel()
        await handler.ended
        self.assertFalse(handler.retryable)
        assert handler.failure is not None
        self.assertEqual(upstream_error(handler.failure), "upstream connect timed out")

    async def test_invalid_target_fails_without_writing(self) -> None:
        """A target with a space is refused before anything is written."""
        upstream, _ = await self.start(answer(OK))
        connection = await self.connect()
        got = await self.exchange(connection, target=b"/a b")
        self.assertIsNotNone(got.failure)
        self.assertEqual(upstream.received, b"")

    async def test_paused_reading_resumes_on_release(self) -> None:
        """A connection paused by a slow client is read again once back in the pool."""
        _, pool = await self.start(answer(OK))
        connection = await self.connect()
        handler = _Handler()
        original = handler.response_body

        def body(data: bytes) -> None:
            original(data)
            connection.pauseProducing()

        handler.response_body = body  # type: ignore[method-assign]
        connection.send(b"GET", b"/", headers(), None, handler)
        await handler.ended
        self.assertIs(pool.take(KEY), connection)
        got = await self.exchange(connection)
        self.assertEqual(got.body, b"hello")


class PoolTests(TestCase):
    """Idle connections: the cap, the idle timeout, closing."""

    async def test_idle_cap_and_timeout_and_close(self) -> None:
        """Past the cap a released connection is closed; idle ones expire; close empties."""
        upstream = _Upstream(answer(OK))
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(upstream)
        self.addCleanup(port.stopListening)
        clock = Clock()
        pool = UpstreamPool(clock, max_idle_per_upstream=1, idle_timeout=10)
        self.addCleanup(pool.close)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
        a = await pool.connect(KEY, endpoint)
        b = await pool.connect(KEY, endpoint)
        pool.release(a)
        pool.release(b)  # over the cap: closed
        self.assertEqual(pool.idle_count(KEY), 1)
        for _ in range(50):
            if upstream.lost:
                break
            await deferLater(reactor, 0.01, lambda: None)
        self.assertEqual(upstream.lost, 1)
        clock.advance(5)
        self.assertEqual(pool.idle_count(KEY), 1)
        clock.advance(10)
        self.assertEqual(pool.idle_count(KEY), 0)
        c = await pool.connect(KEY, endpoint)
        pool.release(c)
        await pool.close().addTimeout(5, reactor)
        self.assertFalse(c.connected)
        self.assertEqual(clock.getDelayedCalls(), [])
        d = await pool.connect(KEY, endpoint)
        pool.release(d)  # after close: closed, not kept
        self.assertEqual(pool.idle_count(KEY), 0)
